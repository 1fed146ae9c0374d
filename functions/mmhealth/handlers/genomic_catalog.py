"""Genomic Catalog: commit the run's staged variants and ClinVar rows to Iceberg (one commit per table)."""

from mmhealth.genomic.tables import OWNERS
from mmhealth.handlers.modality_handlers import catalog_handler

lambda_handler = catalog_handler("genomic", OWNERS)
