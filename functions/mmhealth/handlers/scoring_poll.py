"""Scoring Poll: one look at the run's scoring job; the state machine waits, with backoff, between looks."""

from mmhealth.contracts import ScoringRun
from mmhealth.handlers.job_handlers import poll_handler
from mmhealth.scoring import processing_job

lambda_handler = poll_handler(processing_job.poll, ScoringRun)
