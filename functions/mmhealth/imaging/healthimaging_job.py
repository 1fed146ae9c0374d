"""A chunk's HealthImaging import (ImagingBackend=healthimaging) as the pipeline follows it: where its files
are staged, and the Poll step (the Import starts the job; see mmhealth.imaging.importer).

Apart from mmhealth.imaging.importer, which reads DICOM with pydicom and Arrow: the Imaging Poll function
ships without them (functions/Makefile).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mmhealth import polling, quarantine, storage
from mmhealth.contracts import ChunkRef, ChunkStatus, S3Object
from mmhealth.errors import PipelineError
from mmhealth.imaging import healthimaging
from mmhealth.lakehouse import layout
from mmhealth.observability import job_failed, logger
from mmhealth.settings import settings


def healthimaging_prefix(ref: ChunkRef) -> str:
    return layout.healthimaging_prefix(ref.run_id, ref.chunk_id)


def poll_backend_import(status: ChunkStatus) -> ChunkStatus:
    """One look at the chunk's HealthImaging import; once ended, rejected files are quarantined and the
    series' image set ids recorded for the catalog step."""
    assert status.job is not None
    cfg = settings()
    if not cfg.healthimaging_datastore_id:
        raise PipelineError("a HealthImaging job is being polled but HEALTHIMAGING_DATASTORE_ID is not set")
    datastore, lake, prefix = (
        cfg.healthimaging_datastore_id,
        cfg.lake_bucket,
        healthimaging_prefix(status.chunk),
    )
    state, messages = healthimaging.job_status(
        storage.client("medical-imaging"), datastore_id=datastore, job_id=status.job.job_id
    )
    logger.info(
        "backend job polled", extra={"job_id": status.job.job_id, "state": state, "attempt": status.attempt}
    )
    if state == "IN_PROGRESS":
        return polling.next_poll(status)
    origins: dict[str, Any] = storage.read_json(lake, f"{prefix}origins.json")
    files: dict[str, dict[str, str]] = origins["files"]
    outcome = healthimaging.import_outcome(
        storage.client("s3"), f"s3://{lake}/{prefix}output/", status.job.job_id, datastore_id=datastore
    )
    for n, failure in enumerate(outcome.failures):
        origin = files.get(failure.input_file or "")
        obj = _object(origin) if origin else _object({"bucket": lake, "key": f"{prefix}input/", "etag": "-"})
        quarantine.record(
            lake, status.chunk.run_id, obj, modality="imaging", stage="poll",
            reason="healthimaging-rejected", detail=failure.detail, n=n,
        )  # fmt: skip
    image_sets = {k: list(v) for k, v in origins["known"].items()}
    for uid, ids in outcome.image_sets_by_series({k: v["series_uid"] for k, v in files.items()}).items():
        image_sets[uid] = [*ids, *(i for i in image_sets.get(uid, []) if i not in ids)]
    storage.write_json(lake, f"{prefix}image_sets.json", image_sets)
    if outcome.non_primary:
        logger.warning("HealthImaging made non-primary image sets", extra={"image_sets": outcome.non_primary})
    if state == "FAILED" and not outcome.failures:
        obj = _object({"bucket": lake, "key": f"{prefix}input/", "etag": "-"})
        detail = "; ".join(messages) or "job FAILED without details"
        quarantine.record(
            lake, status.chunk.run_id, obj, modality="imaging", stage="poll",
            reason="healthimaging-import-failed", detail=detail, n=len(outcome.failures),
        )  # fmt: skip
    quarantined = status.quarantined + len(outcome.failures) + int(state == "FAILED" and not outcome.failures)
    if state == "FAILED":
        job_failed("healthimaging")
    return status.model_copy(update={"status": state, "quarantined": quarantined})


def _object(origin: Mapping[str, str]) -> S3Object:
    return S3Object(bucket=origin["bucket"], key=origin["key"], etag=origin["etag"])
