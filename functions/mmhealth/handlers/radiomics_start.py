"""Radiomics Start: one manifest per consistent series of the run, then the MONAI + pyradiomics job."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from mmhealth.contracts import CatalogResult, RunConfig
from mmhealth.imaging import radiomics
from mmhealth.observability import logger, metrics, tracer


@logger.inject_lambda_context(correlation_id_path="run_id")
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    config = RunConfig.model_validate(event.get("config") or {})
    catalog = CatalogResult.model_validate(event["catalog"])
    return radiomics.start(event["run_id"], config, catalog).model_dump()
