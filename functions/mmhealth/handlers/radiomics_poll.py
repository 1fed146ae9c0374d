"""Radiomics Poll: one look at the run's radiomics job; the state machine waits, with backoff, between looks."""

from mmhealth.contracts import RadiomicsRun
from mmhealth.handlers.job_handlers import poll_handler
from mmhealth.imaging import radiomics_job

lambda_handler = poll_handler(radiomics_job.poll, RadiomicsRun)
