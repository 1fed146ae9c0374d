"""Features: rebuild features.clinical and features.labels when the run changed clinical data."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from mmhealth import featurize
from mmhealth.observability import logger, metrics, tracer


@logger.inject_lambda_context(correlation_id_path="run_id")
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return featurize.rebuild_features(event["run_id"], event.get("modalities") or [])
