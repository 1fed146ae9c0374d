"""Finalize: commit the run's quarantine records to ops.quarantine and write the run summary."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from mmhealth import finalize
from mmhealth.observability import logger, metrics, tracer
from mmhealth.settings import settings


@logger.inject_lambda_context(correlation_id_path="run_id")
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    summary = finalize.finalize(
        event["run_id"],
        event.get("modalities") or [],
        int(event.get("unknown", 0)),
        {k: int(v) for k, v in (event.get("files") or {}).items()},
        settings(),
        event.get("features"),
        event.get("training"),
        event.get("delivery"),
        event.get("scoring"),
    )
    logger.info("run finalized", extra={"status": summary["status"], "quarantined": summary["quarantined"]})
    return summary
