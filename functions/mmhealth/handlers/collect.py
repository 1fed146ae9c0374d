"""Collect: wait until the wave's delivery is complete, then close the wave (first state of every run)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from mmhealth import runs, waves
from mmhealth.errors import ManifestError
from mmhealth.observability import logger, metrics, tracer
from mmhealth.settings import settings


@logger.inject_lambda_context(correlation_id_path="run_id")
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        run_id, delivery, wave = event["run_id"], event["delivery"], int(event["wave"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ManifestError(f"execution input needs run_id, delivery and wave: {exc}") from exc
    cfg = settings()
    answer = waves.collect(run_id, delivery, wave, runs.resolve_config(cfg, event.get("config")), cfg)
    logger.info(
        "wave closed" if answer["closed"] else "wave still collecting",
        extra={k: answer[k] for k in ("wave", "objects", "missing", "wait_seconds")}
        | {"why": answer["reason"]},
    )
    return answer
