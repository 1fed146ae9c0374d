"""The one place that owns Logger, Tracer and Metrics (Powertools), shared by every handler.

Logs are structured JSON with the run id as correlation id. They carry identifiers and counts only:
object keys, run ids, sample ids, row counts, reason codes; never names, addresses, notes or genotypes.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

logger = Logger()
tracer = Tracer()
metrics = Metrics()

__all__ = ["MetricUnit", "logger", "metrics", "tracer"]
