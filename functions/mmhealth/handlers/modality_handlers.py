"""The Import and Catalog handlers every modality shares, built from the modality's own pieces (the Poll
handler is mmhealth.handlers.job_handlers).

A modality's handler module is then one line (`lambda_handler = catalog_handler("clinical", OWNERS)`),
and the decorators, event parsing and output shape cannot drift between modalities.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from mmhealth import modality
from mmhealth.contracts import ChunkRef, ChunkStatus, ManifestFile, Modality, RunConfig
from mmhealth.handlers.job_handlers import Handler
from mmhealth.observability import logger, metrics, tracer

# Optionally starts an operational-backend import for the staged files (the Poll loop then follows it).
BackendStarter = Callable[[ChunkStatus, list[ManifestFile], datetime | None], ChunkStatus]


def import_handler(convert: modality.FileConverter, start_backend: BackendStarter | None = None) -> Handler:
    """Import: validate and stage one chunk of files; start the backend import when there is one."""

    @logger.inject_lambda_context(correlation_id_path="chunk.run_id")
    @tracer.capture_lambda_handler
    @metrics.log_metrics
    def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        ref = ChunkRef.model_validate(event["chunk"])
        config = RunConfig.model_validate(event.get("config") or {})
        status, staged = modality.import_chunk(ref, config, convert)
        if start_backend is not None:
            started = event.get("execution_started_at")
            started_at = datetime.fromisoformat(started.replace("Z", "+00:00")) if started else None
            status = start_backend(status, staged, started_at)
        return status.model_dump()

    return lambda_handler


def catalog_handler(name: Modality, owners: Mapping[str, modality.OwnedBy]) -> Handler:
    """Catalog: commit every staged part of the run for this modality, one commit per table."""

    @logger.inject_lambda_context(correlation_id_path="run_id")
    @tracer.capture_lambda_handler
    @metrics.log_metrics
    def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        quarantined = sum(int(c.get("quarantined", 0)) for c in event.get("chunks", []))
        return modality.catalog_run(event["run_id"], name, owners, quarantined).model_dump()

    return lambda_handler
