"""A series whose files straddle several runs: imaging.series and features.radiomics follow its latest
judgement, whatever order the runs commit in.

Handlers on moto: the sample 6-slice series is delivered in three runs (a prefix of three slices, then two
more with the fourth still missing, then the fourth). A prefix looks like a consistent series; the next run
must take that row back when it finds the gap, and a radiomics result computed on an older version of the
series must never be committed over the current one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from pydicom import dcmread

from mmhealth import storage
from mmhealth.contracts import CatalogResult, ChunkRef, JobHandle, RadiomicsRun, RunConfig, RunManifest
from mmhealth.handlers import imaging_catalog, imaging_import, radiomics_catalog
from mmhealth.imaging import radiomics, radiomics_job
from mmhealth.lakehouse.catalog import read_table
from mmhealth.lakehouse.layout import RunPaths
from tests.conftest import REPO, FakeLambdaContext

SERIES_DIR = REPO / "tests" / "data" / "delivery" / "imaging" / "mr-brain"
# The sample series' files in slice order (InstanceNumber follows the position along the normal).
SLICES = sorted(
    SERIES_DIR.glob("*.dcm"), key=lambda p: int(dcmread(p, stop_before_pixels=True).InstanceNumber)
)
SERIES_UID = str(dcmread(SLICES[0], stop_before_pixels=True).SeriesInstanceUID)
CONFIG = RunConfig(poll_seconds=1, series_stable_seconds=0)
CONTEXT = FakeLambdaContext()


def deliver(aws: SimpleNamespace, run_id: str, files: list[Path]) -> dict[str, Any]:
    """Upload `files`, write the run's manifest and chunk as the trigger does, import and catalog them."""
    objects = []
    for path in files:
        key = f"incoming/d1/mr-brain/{path.name}"
        aws.s3.put_object(Bucket=aws.landing, Key=key, Body=path.read_bytes())
        etag = aws.s3.head_object(Bucket=aws.landing, Key=key)["ETag"].strip('"')
        objects.append({"object": {"bucket": aws.landing, "key": key, "etag": etag}, "kind": "imaging"})
    paths = RunPaths(run_id)
    ref = ChunkRef(
        run_id=run_id,
        modality="imaging",
        chunk_id="imaging-0000",
        key=paths.chunk("imaging", 0),
        files=len(files),
    )
    storage.write_json(aws.lake, ref.key, {"chunk_id": ref.chunk_id, "modality": "imaging", "files": objects})
    manifest = RunManifest(
        run_id=run_id, created_at=datetime.now(UTC).isoformat(), landing_bucket=aws.landing,
        lake_bucket=aws.lake, deliveries=["d1"], chunks=[ref],
    )  # fmt: skip
    storage.write_json(aws.lake, paths.manifest, manifest.model_dump())
    event = {
        "chunk": ref.model_dump(),
        "config": CONFIG.model_dump(),
        "execution_started_at": manifest.created_at,
    }
    imported = imaging_import.lambda_handler(event, CONTEXT)
    catalog = {"run_id": run_id, "modality": "imaging", "config": CONFIG.model_dump(), "chunks": [imported]}
    return imaging_catalog.lambda_handler(catalog, CONTEXT)


def series_rows() -> list[dict[str, Any]]:
    table = read_table("imaging.series", columns=["series_uid", "slice_count", "instances_digest", "run_id"])
    return table.to_pylist() if table is not None else []


def radiomics_result(run_id: str, digest: str | None) -> RadiomicsRun:
    """What a finished job of `run_id` leaves: its series.json and one ok result for the sample series."""
    prefix = radiomics.prefix(run_id)
    storage.write_json(settings_lake(), f"{prefix}series.json", {SERIES_UID: digest})
    result = {
        "series_uid": SERIES_UID, "patient_id": "pt-0001", "study_uid": "1.2.3", "study_date": "2017-03-01",
        "status": "ok", "model_version": "segmenter-v1", "params_version": "radiomics-v1", "device": "cpu",
        "regions": [{"label": 2, "name": "hippocampus", "voxels": 40, "volume_mm3": 40.0,
                     "features": {"original_shape_VoxelVolume": 40.0}}],
    }  # fmt: skip
    storage.write_json(settings_lake(), f"{prefix}output/features/{SERIES_UID}.json", result)
    job = JobHandle(backend="sagemaker", job_id=radiomics_job.job_name(run_id))
    catalog = CatalogResult(run_id=run_id, modality="imaging", commits=[], quarantined=0)
    return RadiomicsRun(run_id=run_id, status="COMPLETED", config=CONFIG, catalog=catalog, job=job, series=1)


def settings_lake() -> str:
    from mmhealth.settings import settings

    return settings().lake_bucket


def radiomics_rows() -> list[tuple[str, str | None, str]]:
    table = read_table("features.radiomics", columns=["series_uid", "instances_digest", "run_id"])
    rows = table.to_pylist() if table is not None else []
    return sorted((r["series_uid"], r["instances_digest"], r["run_id"]) for r in rows)


def test_a_prefix_row_is_taken_back_when_the_gap_shows_and_restored_when_the_series_is_whole(
    aws: SimpleNamespace,
) -> None:
    # Given the first three slices in one run: on their own they are a consistent (shorter) series
    deliver(aws, "d1-run-a", SLICES[:3])
    [prefix] = series_rows()
    assert prefix["slice_count"] == 3

    # When a second run brings slices 5 and 6 while slice 4 is still missing
    second = deliver(aws, "d1-run-b", SLICES[4:])

    # Then the series has no row any more, and its files of that run are quarantined for the gap
    assert series_rows() == []
    assert second["quarantined"] == 2

    # When the missing slice arrives in a third run
    deliver(aws, "d1-run-c", SLICES[3:4])

    # Then the series is whole again, with a new digest (other files than the prefix had)
    [whole] = series_rows()
    assert (whole["slice_count"], whole["run_id"]) == (6, "d1-run-c")
    assert whole["instances_digest"] != prefix["instances_digest"]


def test_a_redelivery_of_the_same_files_keeps_the_digest(aws: SimpleNamespace) -> None:
    deliver(aws, "d1-run-a", SLICES)
    [first] = series_rows()
    deliver(aws, "d1-run-b", SLICES)
    [again] = series_rows()
    assert again["instances_digest"] == first["instances_digest"]
    assert again["run_id"] == "d1-run-b"


def test_radiomics_of_an_older_version_is_not_committed_and_outdated_rows_are_removed(
    aws: SimpleNamespace,
) -> None:
    # Given a series first seen as a three-slice prefix, then whole
    deliver(aws, "d1-run-a", SLICES[:3])
    [prefix] = series_rows()
    deliver(aws, "d1-run-b", SLICES[3:])
    [whole] = series_rows()

    # When the whole series' radiomics is committed, then the prefix's job (slower) finishes
    radiomics_catalog.lambda_handler(
        radiomics_result("d1-run-b", whole["instances_digest"]).model_dump(), CONTEXT
    )
    late = radiomics_catalog.lambda_handler(
        radiomics_result("d1-run-a", prefix["instances_digest"]).model_dump(), CONTEXT
    )

    # Then features.radiomics keeps the result computed on the whole series
    assert radiomics_rows() == [(SERIES_UID, whole["instances_digest"], "d1-run-b")]
    assert "features.radiomics" not in {c["table"] for c in late["commits"]}


def test_radiomics_rows_of_a_series_without_a_row_are_removed_by_the_next_radiomics_catalog(
    aws: SimpleNamespace,
) -> None:
    # Given radiomics committed for a three-slice prefix
    deliver(aws, "d1-run-a", SLICES[:3])
    [prefix] = series_rows()
    radiomics_catalog.lambda_handler(
        radiomics_result("d1-run-a", prefix["instances_digest"]).model_dump(), CONTEXT
    )
    assert len(radiomics_rows()) == 1

    # When a later run finds the series has a gap (its row is taken back) and runs its radiomics catalog
    deliver(aws, "d1-run-b", SLICES[4:])
    assert series_rows() == []
    idle = RadiomicsRun(
        run_id="d1-run-b", status="COMPLETED", config=CONFIG,
        catalog=CatalogResult(run_id="d1-run-b", modality="imaging", commits=[], quarantined=0),
    )  # fmt: skip
    radiomics_catalog.lambda_handler(idle.model_dump(), CONTEXT)

    # Then no radiomics row describes a series that imaging.series does not hold
    assert radiomics_rows() == []
