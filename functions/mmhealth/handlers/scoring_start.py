"""Scoring Start: the newest model applied to the run's dataset snapshot (or why not), as a Processing job."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from mmhealth.contracts import RunConfig
from mmhealth.observability import logger, metrics, tracer
from mmhealth.scoring import job


@logger.inject_lambda_context(correlation_id_path="run_id")
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    config = RunConfig.model_validate(event.get("config") or {})
    return job.start(event["run_id"], config, event.get("features")).model_dump()
