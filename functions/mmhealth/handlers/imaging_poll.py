"""Imaging Poll: one look at the chunk's HealthImaging import job; the state machine waits between looks."""

from mmhealth.handlers.modality_handlers import poll_handler
from mmhealth.imaging import importer

lambda_handler = poll_handler(importer.poll_backend_import)
