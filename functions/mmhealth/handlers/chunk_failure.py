"""Chunk failure (reached from a Catch): quarantine the chunk's files with the cause; the run goes on."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from mmhealth import chunks
from mmhealth.contracts import ChunkRef, RunConfig
from mmhealth.observability import logger, metrics, tracer
from mmhealth.runs import short_cause


@logger.inject_lambda_context(correlation_id_path="chunk.run_id")
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    ref = ChunkRef.model_validate(event["chunk"])
    error = event.get("error") or {}
    stage = "poll" if "status" in event else "import"
    name = str(error.get("Error") or "ChunkFailed")
    cause = short_cause(str(error.get("Cause") or ""))
    logger.error("chunk failed; quarantining its files", extra={"chunk_id": ref.chunk_id, "error": name})
    status = chunks.discard_chunk(ref, stage, name, cause)
    return status.model_copy(
        update={"config": RunConfig.model_validate(event.get("config") or {})}
    ).model_dump()
