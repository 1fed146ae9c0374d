"""Genomic Poll: one look at the chunk's HealthOmics import job; the state machine waits between looks."""

from mmhealth.genomic import importer
from mmhealth.handlers.modality_handlers import poll_handler

lambda_handler = poll_handler(importer.poll_backend_import)
