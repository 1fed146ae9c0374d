"""Prepare: validate the run manifest and resolve the run config (first state of the pipeline)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from mmhealth import runs
from mmhealth.observability import logger, metrics, tracer
from mmhealth.settings import settings


@logger.inject_lambda_context(correlation_id_path="run_id")
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    prepared = runs.prepare(event, settings())
    logger.info(
        "run prepared",
        extra={m: prepared[m]["files"] for m in ("genomic", "clinical", "imaging")}
        | {"unknown": prepared["unknown"]},
    )
    return prepared
