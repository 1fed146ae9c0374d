"""Genomic Poll: one look at the chunk's HealthOmics import job; the state machine waits between looks."""

from mmhealth.genomic import healthomics_job
from mmhealth.handlers.job_handlers import poll_handler

lambda_handler = poll_handler(healthomics_job.poll_backend_import)
