"""Scoring Start: the newest model applied to the run's dataset snapshot (or why not), as a Processing job."""

from mmhealth.handlers.job_handlers import run_job_start_handler
from mmhealth.scoring import job

lambda_handler = run_job_start_handler(job.start)
