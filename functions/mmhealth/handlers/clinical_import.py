"""Clinical Import: validate a chunk of FHIR R4 files (NDJSON or Bundles), stage the flattened tables,
start a HealthLake import of the valid resources when enabled."""

from mmhealth.clinical import importer
from mmhealth.handlers.modality_handlers import import_handler

lambda_handler = import_handler(importer.convert_clinical, importer.start_backend_import)
