"""Imaging Catalog: commit this run's imaging.instances, judge every series it touched, commit imaging.series."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from mmhealth.contracts import RunConfig
from mmhealth.imaging import importer
from mmhealth.observability import logger, metrics, tracer


@logger.inject_lambda_context(correlation_id_path="run_id")
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    quarantined = sum(int(c.get("quarantined", 0)) for c in event.get("chunks", []))
    config = RunConfig.model_validate(event.get("config") or {})
    return importer.catalog_imaging(event["run_id"], quarantined, config).model_dump()
