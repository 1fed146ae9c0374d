"""Finalize: commit the run's quarantine and supersession records to ops.*, write and return the run summary.

Apart from mmhealth.runs (Prepare), because it commits to Iceberg: the functions that only prepare a run or
follow one of its jobs ship without pyiceberg and Arrow (functions/Makefile).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa
from pyiceberg.expressions import BooleanExpression, EqualTo

from mmhealth import quarantine, storage, superseded
from mmhealth.contracts import QuarantineRecord, utc_now
from mmhealth.lakehouse.catalog import record_superseded, replace_rows
from mmhealth.lakehouse.layout import RunPaths
from mmhealth.lakehouse.schemas import OPS_QUARANTINE, OPS_SUPERSEDED
from mmhealth.runs import short_cause
from mmhealth.settings import Settings


def finalize(
    run_id: str,
    branches: list[dict[str, Any]],
    unknown: int,
    files: dict[str, int],
    cfg: Settings,
    features: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
    delivery: dict[str, Any] | None = None,
    scoring: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Commit the run's quarantine records to ops.quarantine, write and return the run summary.

    `files` is Prepare's count per modality: a modality with files but no branch in the state machine
    is reported as not ingested rather than silently dropped.
    """
    records = quarantine.load_run_records(cfg.lake_bucket, run_id)
    if records:
        replace_rows("ops.quarantine", quarantine_rows(records), run_id, _rows_of_run(run_id))
    overwritten = pa.Table.from_pylist(
        superseded.load_run_records(cfg.lake_bucket, run_id), schema=OPS_SUPERSEDED
    )
    record_superseded(overwritten, run_id, f"{run_id}#superseded#{superseded.LANDING}")
    modalities: dict[str, Any] = {}
    failures: list[str] = []
    for branch in branches:
        name = branch.get("modality", "?")
        if branch.get("skipped"):
            modalities[name] = {"status": "skipped"}
        elif branch.get("failed"):
            error = branch.get("error") or {}
            cause = short_cause(error.get("Cause", ""))
            modalities[name] = {"status": "failed", "error": error.get("Error"), "cause": cause}
            failures.append(f"{name}: {error.get('Error')}: {cause}")
        else:
            modalities[name] = {
                "status": "ingested",
                "tables": {c["table"]: c["rows_added"] for c in branch.get("commits", [])},
                "quarantined": branch.get("quarantined", 0),
            }
    for name, count in files.items():
        if count and name not in modalities:
            modalities[name] = {
                "status": "not-ingested",
                "files": count,
                "cause": "no branch for this modality yet",
            }
    for name, entry in modalities.items():
        entry.setdefault("files", files.get(name, 0))
    features = _step_outcome("features", features, failures)
    training = _step_outcome("training", training, failures)
    scoring = _step_outcome("scoring", scoring, failures)
    summary = {
        "run_id": run_id,
        "delivery": delivery,
        "status": "FAILED" if failures else "SUCCEEDED",
        "finished_at": utc_now(),
        "modalities": modalities,
        "features": features,
        "training": _training_summary(training),
        "scoring": _scoring_summary(scoring),
        "quarantined": len(records),
        "superseded_objects": overwritten.num_rows,
        "unknown_files": unknown,
        "cause": "; ".join(failures) if failures else None,
    }
    storage.write_json(cfg.lake_bucket, RunPaths(run_id).summary, summary)
    return summary


def _step_outcome(step: str, outcome: dict[str, Any] | None, failures: list[str]) -> dict[str, Any]:
    """A run-level step's {"result": ...}, or the error its Catch put there (recorded as a failure)."""
    outcome = outcome or {}
    if "Error" in outcome:
        cause = short_cause(str(outcome.get("Cause", "")))
        failures.append(f"{step}: {outcome['Error']}: {cause}")
        return {"status": "failed", "error": outcome["Error"], "cause": cause}
    result: dict[str, Any] = outcome.get("result") or {"skipped": True}
    return result


def _training_summary(training: dict[str, Any]) -> dict[str, Any]:
    """What a reader of the run needs of its training: the artifacts and the headline metrics."""
    if training.get("status") == "failed" or training.get("skipped") is True:
        return training
    keys = ("skipped", "dataset_id", "model_uri", "report_uri", "metrics_uri", "headline")
    summary = {k: training[k] for k in keys if training.get(k) is not None}
    if training.get("job"):
        summary["job"] = training["job"].get("job_id")
    return summary


def _scoring_summary(scoring: dict[str, Any]) -> dict[str, Any]:
    """What a reader of the run needs of its scoring: which model on which snapshot, rows per outcome."""
    if scoring.get("status") == "failed" or scoring.get("skipped") is True:
        return scoring
    keys = ("skipped", "model_id", "dataset_id", "rows", "outcomes", "endpoint")
    summary = {k: scoring[k] for k in keys if scoring.get(k) not in (None, {})}
    if scoring.get("job"):
        summary["job"] = scoring["job"].get("job_id")
    return summary


def _rows_of_run(run_id: str) -> Callable[[Any], BooleanExpression]:
    # pyiceberg's predicates are pydantic models whose __new__ mypy cannot see through.
    return lambda _rows: EqualTo("run_id", run_id)  # type: ignore[call-arg, arg-type]


def quarantine_rows(records: list[QuarantineRecord]) -> pa.Table:
    return pa.Table.from_pylist([r.model_dump() for r in records], schema=OPS_QUARANTINE)
