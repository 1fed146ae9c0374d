"""Imaging Poll: one look at the chunk's HealthImaging import job; the state machine waits between looks."""

from mmhealth.handlers.job_handlers import poll_handler
from mmhealth.imaging import healthimaging_job

lambda_handler = poll_handler(healthimaging_job.poll_backend_import)
