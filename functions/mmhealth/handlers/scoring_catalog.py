"""Scoring Catalog: the job's predictions committed to features.predictions, the (snapshot, model) marked."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from mmhealth.contracts import ScoringRun
from mmhealth.observability import logger, metrics, tracer
from mmhealth.scoring import job


@logger.inject_lambda_context(correlation_id_path="run_id")
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return job.catalog(ScoringRun.model_validate(event)).model_dump()
