"""The handlers every backend job shares: Poll (one look at a job) and the Start of a run-level job.

Apart from mmhealth.handlers.modality_handlers (Import, Catalog), which bring Arrow and pyiceberg through
mmhealth.modality: a Poll function ships the core set only (functions/Makefile), so nothing here may import
them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from aws_lambda_powertools.utilities.typing import LambdaContext

from mmhealth.contracts import ChunkStatus, PolledJob, RunConfig
from mmhealth.observability import logger, metrics, tracer

Handler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]
P = TypeVar("P", bound=PolledJob)


def poll_handler(look: Callable[[P], P], model: type[P] = ChunkStatus) -> Handler:  # type: ignore[assignment]
    """Poll: one look at a backend job (the state machine waits, with backoff, between looks)."""

    @logger.inject_lambda_context(correlation_id_path="chunk.run_id" if model is ChunkStatus else "run_id")
    @tracer.capture_lambda_handler
    @metrics.log_metrics
    def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        status = model.model_validate(event)
        if status.job is None:
            raise ValueError(f"{status.subject}: Poll reached without a backend job")
        return look(status).model_dump()

    return lambda_handler


def run_job_start_handler(start: Callable[[str, RunConfig, dict[str, Any] | None], PolledJob]) -> Handler:
    """Start of a run-level job (training, scoring): the run id, its config and the Features outcome in."""

    @logger.inject_lambda_context(correlation_id_path="run_id")
    @tracer.capture_lambda_handler
    @metrics.log_metrics
    def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        config = RunConfig.model_validate(event.get("config") or {})
        return start(event["run_id"], config, event.get("features")).model_dump()

    return lambda_handler
