"""Genomic Catalog: commit the run's staged variants and ClinVar rows to Iceberg (one commit per table)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from mmhealth import modality
from mmhealth.genomic import importer
from mmhealth.observability import logger, metrics, tracer


@logger.inject_lambda_context(correlation_id_path="run_id")
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    quarantined = sum(int(c.get("quarantined", 0)) for c in event.get("chunks", []))
    result = modality.catalog_run(event["run_id"], "genomic", importer.OWNERS, quarantined)
    return result.model_dump()
