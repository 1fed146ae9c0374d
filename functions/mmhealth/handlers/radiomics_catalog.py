"""Radiomics Catalog: commit features.radiomics from the job's output; quarantine the series it could not do."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from mmhealth.contracts import RadiomicsRun
from mmhealth.imaging import radiomics
from mmhealth.observability import logger, metrics, tracer


@logger.inject_lambda_context(correlation_id_path="run_id")
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return radiomics.catalog(RadiomicsRun.model_validate(event)).model_dump()
