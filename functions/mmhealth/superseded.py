"""Delivered objects overwritten before their run could read them (the landing side of the version rule).

The import reads every object at the version its event announced (storage.download_object). When that
version is gone - the key was overwritten, unversioned, inside the trigger's batching window - the newer
bytes arrive as their own event and are ingested once by it; the older version is recorded here and
committed to `ops.superseded` (table "landing") by Finalize, never read under the newer bytes.
"""

from __future__ import annotations

from typing import Any

from mmhealth import storage
from mmhealth.contracts import S3Object, utc_now
from mmhealth.lakehouse.layout import RunPaths

LANDING = "landing"


def record_object(lake_bucket: str, run_id: str, obj: S3Object) -> None:
    """Write the supersession record of one delivered object version."""
    record = {
        "run_id": run_id,
        "table": LANDING,
        "key": obj.key,
        "rule": "overwritten before it was read (its newer version is ingested by its own event)",
        "superseded_object_id": obj.object_id,
        "superseded_source_key": obj.key,
        "superseded_position": None,
        "superseded_run_id": run_id,
        "kept_object_id": None,
        "kept_source_key": obj.key,
        "kept_position": None,
        "kept_run_id": None,
        "recorded_at": utc_now(),
    }
    storage.write_json(lake_bucket, RunPaths(run_id).superseded(obj.object_id), record)


def load_run_records(lake_bucket: str, run_id: str) -> list[dict[str, Any]]:
    """The run's object supersession records (rows of ops.superseded, committed by Finalize)."""
    keys = sorted(storage.list_keys(lake_bucket, RunPaths(run_id).superseded_prefix))
    return [storage.read_json(lake_bucket, k) for k in keys]
