"""Training Catalog: the job's metrics, report and model card next to the run; features.metrics committed."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from mmhealth.contracts import TrainingRun
from mmhealth.observability import logger, metrics, tracer
from mmhealth.training import catalog


@logger.inject_lambda_context(correlation_id_path="run_id")
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return catalog.catalog(TrainingRun.model_validate(event)).model_dump()
