"""Clinical Poll: one look at the chunk's HealthLake import job; the state machine waits between looks."""

from mmhealth.clinical import importer
from mmhealth.handlers.modality_handlers import poll_handler

lambda_handler = poll_handler(importer.poll_backend_import)
