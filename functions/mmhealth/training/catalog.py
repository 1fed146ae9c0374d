"""CatalogTraining: the training job's outputs next to the run, features.metrics committed, the model
registered (features.models). The job itself - its contract, start and poll - is mmhealth.training.job.
"""

from __future__ import annotations

import io
import json
import tarfile
from typing import Any

import pyarrow as pa
from pyiceberg.expressions import EqualTo

from mmhealth import storage
from mmhealth.contracts import TableCommit, TrainingRun
from mmhealth.lakehouse import layout
from mmhealth.lakehouse.catalog import replace_rows
from mmhealth.lakehouse.schemas import FEATURES_METRICS
from mmhealth.observability import logger
from mmhealth.settings import settings
from mmhealth.training import models
from mmhealth.training.job import REPORT_FILES, prefix

METRICS = "features.metrics"


def catalog(run: TrainingRun) -> TrainingRun:
    """CatalogTraining: unpack the job's outputs next to the run, commit features.metrics, mark the dataset
    trained, register the model (features.models); returns the run with the artifacts' URIs and the
    headline metrics."""
    if run.job is None:
        return run
    lake = settings().lake_bucket
    base = f"{prefix(run.run_id)}{run.job.job_id}/output/"
    reports = f"{prefix(run.run_id)}report/"
    with tarfile.open(fileobj=io.BytesIO(_get(lake, f"{base}output.tar.gz")), mode="r:gz") as archive:
        for member in archive.getmembers():
            name = member.name.removeprefix("./")
            extracted = archive.extractfile(member) if member.isfile() else None
            if extracted is not None and name in REPORT_FILES:
                storage.client("s3").put_object(
                    Bucket=lake, Key=f"{reports}{name}", Body=extracted.read(), **_content_type(name)
                )
    metrics = json.loads(_get(lake, f"{reports}metrics.json"))
    commit = commit_metrics(run.run_id, run.dataset_id or "", metrics)
    storage.write_json(
        lake,
        f"{layout.dataset_prefix(run.dataset_id or '')}trained.json",
        {"run_id": run.run_id, "job": run.job.job_id, "model": f"s3://{lake}/{base}model.tar.gz"},
    )
    catalogued = run.model_copy(
        update={
            "model_uri": f"s3://{lake}/{base}model.tar.gz",
            "report_uri": f"s3://{lake}/{reports}report.html",
            "metrics_uri": f"s3://{lake}/{reports}metrics.json",
            "headline": headline_metrics(metrics),
        }
    )
    models.register(catalogued)
    logger.info("training catalogued", extra={"job": run.job.job_id, "metric_rows": commit.rows_added})
    return catalogued


def _get(bucket: str, key: str) -> bytes:
    body: bytes = storage.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    return body


def _content_type(name: str) -> dict[str, str]:
    types = {".html": "text/html; charset=utf-8", ".json": "application/json", ".csv": "text/csv"}
    suffix = name[name.rfind(".") :]
    return {"ContentType": types[suffix]} if suffix in types else {}


# ---------------------------------------------------------------------------------------- features.metrics


def metric_rows(run_id: str, dataset_id: str, metrics: dict[str, Any]) -> pa.Table:
    """metrics.json -> one features.metrics row per outcome x modality set x metric; the label-shuffle
    control's rows have modality_set "control"."""
    rows = []
    sets = {o: dict(by_set) for o, by_set in metrics.get("metrics", {}).items()}
    for outcome, control in metrics.get("control", {}).items():
        sets.setdefault(outcome, {})["control"] = control
    for outcome, by_set in sets.items():
        counts = metrics.get("counts", {}).get(outcome, {})
        for modality_set, by_metric in by_set.items():
            for metric, estimate in by_metric.items():
                rows.append(
                    {
                        "run_id": run_id,
                        "dataset_id": dataset_id,
                        "outcome": outcome,
                        "modality_set": modality_set,
                        "metric": metric,
                        "value": estimate.get("value"),
                        "ci_low": estimate.get("ci_low"),
                        "ci_high": estimate.get("ci_high"),
                        "n_train": counts.get("n_train"),
                        "n_test": counts.get("n_test"),
                    }
                )
    return pa.Table.from_pylist(rows, schema=FEATURES_METRICS)


def commit_metrics(run_id: str, dataset_id: str, metrics: dict[str, Any]) -> TableCommit:
    """features.metrics keeps every trained model's metrics; a run's rows are owned by its run id."""
    rows = metric_rows(run_id, dataset_id, metrics)
    return replace_rows(METRICS, rows, run_id, lambda _r: EqualTo("run_id", run_id))  # type: ignore[call-arg, arg-type]


def headline_metrics(metrics: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """Per outcome: ROC AUC and F1 of the all-modalities model (Notify and the run's output)."""
    full = (metrics.get("reference_sets") or {}).get("full", "clinical+genomic+imaging")
    headline = {}
    for outcome, by_set in metrics.get("metrics", {}).items():
        values = by_set.get(full) or {}
        headline[outcome] = {
            "roc_auc": (values.get("roc_auc") or {}).get("value"),
            "f1": (values.get("f1") or {}).get("value"),
        }
    return headline
