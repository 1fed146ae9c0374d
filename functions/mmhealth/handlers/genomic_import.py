"""Genomic Import: validate a chunk of VCFs, stage them as Parquet, start a HealthOmics import if enabled."""

from mmhealth.genomic import importer
from mmhealth.handlers.modality_handlers import import_handler

lambda_handler = import_handler(importer.convert_vcf, importer.start_backend_import)
