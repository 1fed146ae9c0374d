"""Features: rebuild the features.* tables when the run changed data, then the training dataset snapshot."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from mmhealth import featurize
from mmhealth.observability import logger, metrics, tracer
from mmhealth.training import dataset


@logger.inject_lambda_context(correlation_id_path="run_id")
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = featurize.rebuild_features(event["run_id"], event.get("modalities") or [])
    if not result.get("skipped"):
        snapshot = dataset.build_snapshot(event["run_id"])
        result["dataset"] = snapshot.model_dump() if snapshot is not None else None
    return result
