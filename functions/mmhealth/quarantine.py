"""Quarantine: a rejected file (or line) becomes a JSON record next to the run, then a row of ops.quarantine.

Records are written where the problem is found (classify, import, poll, or a Catch), always under the
run's prefix with a deterministic key, so a retried step overwrites instead of duplicating. The original
object in the landing bucket is never touched.
"""

from __future__ import annotations

from mmhealth import storage
from mmhealth.contracts import QuarantineRecord, S3Object, Stage
from mmhealth.errors import InvalidInputError
from mmhealth.lakehouse.layout import RunPaths
from mmhealth.observability import MetricUnit, logger, metrics


def record(
    lake_bucket: str,
    run_id: str,
    obj: S3Object,
    *,
    modality: str,
    stage: Stage,
    reason: str,
    detail: str,
    line: int | None = None,
    n: int = 0,
) -> QuarantineRecord:
    """Write one quarantine record (n distinguishes several records of one file, e.g. bad lines)."""
    rec = QuarantineRecord(
        run_id=run_id,
        object_id=obj.object_id,
        bucket=obj.bucket,
        key=obj.key,
        etag=obj.etag,
        modality=modality,
        stage=stage,
        reason=reason,
        detail=detail[:2000],
        line=line,
    )
    storage.write_json(lake_bucket, RunPaths(run_id).quarantine(stage, obj.object_id, n), rec.model_dump())
    logger.warning(
        "file quarantined",
        extra={
            "key": obj.key,
            "object_id": obj.object_id,
            "modality": modality,
            "stage": stage,
            "reason": reason,
        },
    )
    metrics.add_dimensioned_metric("FilesQuarantined", MetricUnit.Count, 1, modality=modality)
    return rec


def record_invalid(
    lake_bucket: str, run_id: str, obj: S3Object, modality: str, exc: InvalidInputError
) -> QuarantineRecord:
    return record(
        lake_bucket,
        run_id,
        obj,
        modality=modality,
        stage="import",
        reason=exc.reason,
        detail=exc.detail,
        line=exc.line,
    )


def load_run_records(lake_bucket: str, run_id: str) -> list[QuarantineRecord]:
    keys = sorted(storage.list_keys(lake_bucket, RunPaths(run_id).quarantine_prefix))
    return [QuarantineRecord.model_validate(storage.read_json(lake_bucket, k)) for k in keys]
