"""The model registry: `features.models`, one row per trained model, written by CatalogTraining.

    register(run)       # CatalogTraining, once the job's outputs are next to the run
    newest()            # the scoring step: the model to apply (None before the first training)

A model is the training job's model.tar.gz (every predictor and the model card). Its id is the training job
name; a replayed CatalogTraining writes the same row again (the run owns its rows).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from mmhealth.contracts import TableCommit, TrainingRun
from mmhealth.lakehouse.catalog import read_table, replace_rows
from mmhealth.lakehouse.schemas import FEATURES_MODELS

MODELS = "features.models"


def register(run: TrainingRun, trained_at: datetime | None = None) -> TableCommit:
    """Record the run's model (its job, snapshot and artifacts); the run's earlier row, if any, is replaced."""
    from pyiceberg.expressions import EqualTo

    if run.job is None or run.model_uri is None:
        raise ValueError(f"run {run.run_id} trained no model")
    row = {
        "model_id": run.job.job_id,
        "run_id": run.run_id,
        "dataset_id": run.dataset_id or "",
        "model_uri": run.model_uri,
        "metrics_uri": run.metrics_uri,
        "report_uri": run.report_uri,
        "trained_at": trained_at or datetime.now(UTC),
    }
    rows = pa.Table.from_pylist([row], schema=FEATURES_MODELS)
    return replace_rows(MODELS, rows, run.run_id, lambda _r: EqualTo("run_id", run.run_id))  # type: ignore[call-arg, arg-type]


def newest() -> dict[str, Any] | None:
    """The most recently trained model's row, or None when no model was ever trained."""
    table = read_table(MODELS)
    if table is None or table.num_rows == 0:
        return None
    index = pc.index(table["trained_at"], pc.max(table["trained_at"])).as_py()
    row: dict[str, Any] = table.slice(index, 1).to_pylist()[0]
    return row
