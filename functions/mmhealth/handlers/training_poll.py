"""Training Poll: one look at the run's training job; the state machine waits, with backoff, between looks."""

from mmhealth.contracts import TrainingRun
from mmhealth.handlers.job_handlers import poll_handler
from mmhealth.training import job

lambda_handler = poll_handler(job.poll, TrainingRun)
