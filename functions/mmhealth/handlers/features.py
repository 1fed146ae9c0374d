"""Features: rebuild the features.* tables and the training dataset snapshot (mmhealth.training.stage)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from mmhealth.observability import logger, metrics, tracer
from mmhealth.training import stage


@logger.inject_lambda_context(correlation_id_path="run_id")
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return stage.features_step(event["run_id"], event.get("modalities") or [])
