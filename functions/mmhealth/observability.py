"""The one place that owns Logger, Tracer and Metrics (Powertools), shared by every handler.

Logs are structured JSON with the run id as correlation id. They carry identifiers and counts only:
object keys, run ids, sample ids, row counts, reason codes; never names, addresses, notes or genotypes.

Metrics (namespace `mmpipe`, dimension `service` = mmpipe-<stage>, set by the template) come in two kinds:
- invocation metrics, `metrics.add_metric`: Powertools' shared metric set, dimension `service` only;
- dimensioned metrics, `metrics.add_dimensioned_metric(..., modality="genomic")`: per modality or per job.
  Powertools' dimensions belong to the shared set, so a `modality` added there would land on every other
  metric of the invocation (and the trigger sees several modalities at once). Each dimension set is kept
  apart instead and published as its own EMF document when `@metrics.log_metrics` flushes, also when the
  handler raises (a failed job's JobsFailed is recorded just before the poll raises).
Dimension values are a modality or a job kind; never a patient id, a file name or a run id.
docs/runbook.md (Metrics) lists every metric; the dashboard and alarms in template.yaml use them.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

logger = Logger()
tracer = Tracer()

DimensionSet = tuple[tuple[str, str], ...]


class PipelineMetrics(Metrics):
    """Powertools Metrics plus metrics published under their own dimensions (see the module docstring)."""

    def __init__(self, namespace: str) -> None:
        super().__init__(namespace=namespace)
        self._lock = threading.Lock()
        # dimension set -> metric name -> (unit, values); counts are summed, so a chunk with thousands of
        # quarantined lines is one value, not thousands
        self._dimensioned: dict[DimensionSet, dict[str, tuple[MetricUnit, list[float]]]] = {}

    def add_dimensioned_metric(self, name: str, unit: MetricUnit, value: float, **dimensions: str) -> None:
        """Record a metric under exactly these dimensions (plus `service`); published by the next flush."""
        key = tuple(sorted(dimensions.items()))
        with self._lock:
            named = self._dimensioned.setdefault(key, {})
            _, values = named.setdefault(name, (unit, []))
            if unit == MetricUnit.Count and values:
                values[0] += value
            else:
                values.append(float(value))

    def dimensioned_metrics(self) -> dict[DimensionSet, dict[str, tuple[MetricUnit, list[float]]]]:
        """What the next flush publishes (a copy)."""
        with self._lock:
            return {
                k: {n: (u, list(v)) for n, (u, v) in named.items()} for k, named in self._dimensioned.items()
            }

    def flush_dimensioned_metrics(self) -> None:
        """One EMF document per dimension set, then forget them (also when metrics are disabled)."""
        with self._lock:
            pending, self._dimensioned = self._dimensioned, {}
        for dimensions, named in pending.items():
            emf = EphemeralMetrics(namespace=self.namespace, service=self.service)
            for dimension, dimension_value in dimensions:
                emf.add_dimension(name=dimension, value=dimension_value)
            for name, (unit, values) in named.items():
                for value in values:
                    emf.add_metric(name=name, unit=unit, value=value)
            emf.flush_metrics()  # prints nothing when POWERTOOLS_METRICS_DISABLED (the local runtime)

    def clear_metrics(self) -> None:
        super().clear_metrics()
        with self._lock:
            self._dimensioned = {}

    def flush_metrics(self, raise_on_empty_metrics: bool = False) -> None:
        super().flush_metrics(raise_on_empty_metrics=raise_on_empty_metrics)
        self.flush_dimensioned_metrics()

    def log_metrics(
        self,
        lambda_handler: Callable[..., Any] | None = None,
        capture_cold_start_metric: bool = False,
        raise_on_empty_metrics: bool = False,
        default_dimensions: dict[str, str] | None = None,
        **kwargs: dict[str, Any],
    ) -> Callable[..., Any]:
        """Powertools' decorator; the dimensioned metrics are flushed after the handler, even if it raised."""
        if lambda_handler is None:  # used as @metrics.log_metrics(...)
            options: dict[str, Any] = dict(kwargs)
            return functools.partial(
                self.log_metrics,
                capture_cold_start_metric=capture_cold_start_metric,
                raise_on_empty_metrics=raise_on_empty_metrics,
                default_dimensions=default_dimensions,
                **options,
            )
        handler = lambda_handler

        @functools.wraps(handler)
        def flushing(*args: Any, **kw: Any) -> Any:
            try:
                return handler(*args, **kw)
            finally:
                self.flush_dimensioned_metrics()

        return super().log_metrics(
            flushing,
            capture_cold_start_metric=capture_cold_start_metric,
            raise_on_empty_metrics=raise_on_empty_metrics,
            default_dimensions=default_dimensions,
            **kwargs,
        )


# The namespace is fixed when this module is imported. The template sets POWERTOOLS_METRICS_NAMESPACE for
# every function; a process that imports the package before that variable is set (the local runtime's CLI)
# would otherwise get no namespace and fail every metrics flush with SchemaValidationError.
metrics = PipelineMetrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "mmpipe")


@contextmanager
def timed(name: str, **dimensions: str) -> Iterator[None]:
    """Record the block's wall time in seconds as a dimensioned metric, when it completes."""
    started = time.monotonic()
    yield
    metrics.add_dimensioned_metric(
        name, MetricUnit.Seconds, round(time.monotonic() - started, 3), **dimensions
    )


def job_failed(job: str) -> None:
    """JobsFailed{job}: a backend job (radiomics, training, a Health-service import) ended FAILED."""
    metrics.add_dimensioned_metric("JobsFailed", MetricUnit.Count, 1, job=job)


__all__ = ["MetricUnit", "job_failed", "logger", "metrics", "timed", "tracer"]
