"""Genomic Poll: one look at the chunk's HealthOmics import job; the state machine waits between looks."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from mmhealth import modality, polling, storage
from mmhealth.contracts import ChunkStatus
from mmhealth.genomic import healthomics
from mmhealth.observability import logger, metrics, tracer


@logger.inject_lambda_context(correlation_id_path="chunk.run_id")
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    status = ChunkStatus.model_validate(event)
    assert status.job is not None, "poll reached without a backend job"
    state, failures = healthomics.job_status(storage.client("omics"), status.job.job_id)
    logger.info(
        "backend job polled", extra={"job_id": status.job.job_id, "state": state, "attempt": status.attempt}
    )
    if state == "COMPLETED":
        return status.model_copy(update={"status": "COMPLETED"}).model_dump()
    if state == "FAILED":
        failed = modality.discard_chunk(
            status.chunk,
            "poll",
            "healthomics-import-failed",
            "; ".join(failures) or "job FAILED without details",
        )
        return failed.model_copy(update={"config": status.config, "job": status.job}).model_dump()
    return polling.next_poll(status).model_dump()
