"""The one place that owns Logger, Tracer and Metrics (Powertools), shared by every handler.

Logs are structured JSON with the run id as correlation id. They carry identifiers and counts only:
object keys, run ids, sample ids, row counts, reason codes; never names, addresses, notes or genotypes.
"""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

logger = Logger()
tracer = Tracer()
# The namespace is fixed when this module is imported. The template sets POWERTOOLS_METRICS_NAMESPACE for
# every function; a process that imports the package before that variable is set (the local runtime's CLI)
# would otherwise get no namespace and fail every metrics flush with SchemaValidationError.
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "mmpipe")

__all__ = ["MetricUnit", "logger", "metrics", "tracer"]
