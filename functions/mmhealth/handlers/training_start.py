"""Training Start: the AutoGluon training job on the run's own dataset snapshot (or why none)."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from mmhealth.contracts import RunConfig
from mmhealth.observability import logger, metrics, tracer
from mmhealth.training import job


@logger.inject_lambda_context(correlation_id_path="run_id")
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    config = RunConfig.model_validate(event.get("config") or {})
    return job.start(event["run_id"], config, event.get("features")).model_dump()
