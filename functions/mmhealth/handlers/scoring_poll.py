"""Scoring Poll: one look at the run's scoring job; the state machine waits, with backoff, between looks."""

from mmhealth.contracts import ScoringRun
from mmhealth.handlers.modality_handlers import poll_handler
from mmhealth.scoring import job

lambda_handler = poll_handler(job.poll, ScoringRun)
