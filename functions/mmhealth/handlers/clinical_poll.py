"""Clinical Poll: one look at the chunk's HealthLake import job; the state machine waits between looks."""

from mmhealth.clinical import healthlake_job
from mmhealth.handlers.job_handlers import poll_handler

lambda_handler = poll_handler(healthlake_job.poll_backend_import)
