"""Clinical Catalog: commit the run's staged clinical tables to Iceberg (one commit per table)."""

from mmhealth.clinical import importer
from mmhealth.handlers.modality_handlers import catalog_handler

lambda_handler = catalog_handler("clinical", importer.OWNERS)
