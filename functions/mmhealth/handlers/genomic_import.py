"""Genomic Import: validate a chunk of VCFs, stage them as Parquet, start a HealthOmics import if enabled."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from mmhealth import modality
from mmhealth.contracts import ChunkRef, RunConfig
from mmhealth.genomic import importer
from mmhealth.observability import logger, metrics, tracer


@logger.inject_lambda_context(correlation_id_path="chunk.run_id")
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    ref = ChunkRef.model_validate(event["chunk"])
    config = RunConfig.model_validate(event.get("config") or {})
    status, staged = modality.import_chunk(ref, config, importer.convert_vcf)
    started = event.get("execution_started_at")
    execution_started_at = datetime.fromisoformat(started.replace("Z", "+00:00")) if started else None
    return importer.start_backend_import(status, staged, execution_started_at).model_dump()
