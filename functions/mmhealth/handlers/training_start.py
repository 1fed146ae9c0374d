"""Training Start: the AutoGluon training job on the run's own dataset snapshot (or why none)."""

from mmhealth.handlers.job_handlers import run_job_start_handler
from mmhealth.training import job

lambda_handler = run_job_start_handler(job.start)
