"""Imaging Import: validate a chunk of DICOM files (headers only), stage imaging.instances rows, start a
HealthImaging import of the instances the data store lacks when enabled."""

from mmhealth.handlers.modality_handlers import import_handler
from mmhealth.imaging import importer

lambda_handler = import_handler(importer.convert_dicom, importer.start_backend_import)
