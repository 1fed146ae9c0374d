"""Imaging modality: per-file DICOM indexing, the per-series summary, and row ownership.

`imaging.instances` rows are owned by their SOP Instance UID: an instance delivered again replaces its row.
`imaging.series` rows are owned by their Series Instance UID and are rebuilt at catalog time from every
committed instance of the series (this run's and earlier runs'), so a series whose files straddle two
trigger batches - two runs - is judged whole once its last file is in.

An inconsistent series (mixed geometry, a missing slice, duplicate positions) gets no series row; its
instances stay indexed. Whether it is broken or still arriving cannot be told from the files (DICOM has
no "series complete" signal), so - as PACS do with a "stable series" age - it is pending until it has been
stable for `series_stable_seconds`; the next imaging catalog after that quarantines its files with the
reason, unless more instances made it whole. Only series with a row go on to the radiomics job.

Optional AWS HealthImaging backend (ImagingBackend=healthimaging): the import copies the chunk's files
whose instances the data store lacks (SearchImageSets + GetImageSetMetadata, so a re-delivery imports
nothing and creates no duplicate image set) under healthimaging/<run>/<chunk>/input/ and starts one
StartDICOMImportJob (ClientToken from run + chunk); the poll step reads the job's output, quarantines the
files HealthImaging rejected against the delivered objects, and records series -> image set ids in
healthimaging/<run>/<chunk>/image_sets.json, which the catalog step writes into imaging.series.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict
from pyiceberg.expressions import And, BooleanExpression, In

from mmhealth import modality, storage
from mmhealth.contracts import (
    CatalogResult,
    ChunkRef,
    ChunkStatus,
    ManifestFile,
    RunConfig,
    S3Object,
    TableCommit,
)
from mmhealth.errors import PipelineError, TransientError
from mmhealth.imaging import dicom, healthimaging, series
from mmhealth.imaging.healthimaging_job import healthimaging_prefix
from mmhealth.lakehouse import layout
from mmhealth.lakehouse.catalog import read_table, replace_rows, snapshot_id
from mmhealth.lakehouse.imaging_tables import IMAGING_INSTANCES
from mmhealth.lakehouse.layout import RunPaths
from mmhealth.lakehouse.parquet import read_parquet
from mmhealth.modality import Converted, FileGroupProblem, OwnedBy
from mmhealth.observability import MetricUnit, logger, metrics, timed
from mmhealth.settings import settings

INSTANCES = "imaging.instances"
SERIES = "imaging.series"


def convert_dicom(file: ManifestFile, path: Path, run_id: str) -> Converted:
    """One DICOM file -> one imaging.instances row (the header only; pixels are left to the radiomics job)."""
    row = dicom.read_instance(
        path, source_key=file.object.key, object_id=file.object.object_id, run_id=run_id
    )
    return Converted({INSTANCES: row})


def _values_in(rows: pa.Table, column: str) -> BooleanExpression:
    # pyiceberg's predicates are pydantic models whose __new__ mypy cannot see through.
    return In(column, sorted(pc.unique(rows[column]).to_pylist()))  # type: ignore[call-arg, arg-type]


def instances_of(rows: pa.Table) -> BooleanExpression:
    """The rows' SOP instances, within their series' partitions (so only those partitions are read)."""
    return And(_values_in(rows, "series_uid"), _values_in(rows, "sop_uid"))


def series_of(rows: pa.Table) -> BooleanExpression:
    return _values_in(rows, "series_uid")


OWNERS: dict[str, OwnedBy] = {INSTANCES: instances_of, SERIES: series_of}


@timed("CatalogSeconds", modality="imaging")
def catalog_imaging(run_id: str, quarantined: int, config: RunConfig) -> CatalogResult:
    """Imaging Catalog: commit this run's instances, then judge every series it touched (and every pending
    one) on all of its committed instances; commit the consistent ones' imaging.series rows.

    An inconsistent series is quarantined once it has been stable (no new instance) for
    `config.series_stable_seconds`; until then it is pending (`imaging/pending/<series>.json` keeps its
    files of every run), because the rest of the series may still be on its way in another run.
    """
    lake = settings().lake_bucket
    commits = []
    touched: set[str] = set()
    staged = modality.read_staged(run_id, "imaging", [INSTANCES]).get(INSTANCES)
    if staged is not None:
        instances = series.latest_instances(staged, run_id=run_id)  # one row per SOP instance
        commits += modality.commit_tables(
            run_id, "imaging", {INSTANCES: OWNERS[INSTANCES]}, {INSTANCES: instances}
        )
        touched = set(instances["series_uid"].to_pylist())
    pending = {
        uid: PendingSeries.model_validate(storage.read_json(lake, key)) for uid, key in _pending_keys(lake)
    }
    judged = sorted(touched | set(pending))
    if not judged:
        return CatalogResult(run_id=run_id, modality="imaging", commits=commits, quarantined=quarantined)
    summary, series_commit = _judge_series(judged, run_id, config)
    commits.append(series_commit)
    metrics.add_dimensioned_metric(
        "RowsCommitted", MetricUnit.Count, series_commit.rows_added, modality="imaging"
    )
    problems = {p.series_uid: p for p in summary.problems}
    files = {f.object.object_id: f.object for f in modality.run_files(run_id, "imaging")}
    now = datetime.now(UTC)
    still_pending = 0
    for uid in judged:
        marker, problem = pending.get(uid), problems.get(uid)
        key = f"{PENDING_PREFIX}{uid}.json"
        if problem is None:
            if marker is not None:
                storage.delete_keys(lake, [key])  # complete now
            continue
        objects = {o.object_id: o for o in (marker.files if marker else [])}
        objects.update({o: files[o] for o in problem.object_ids if o in files})
        first_seen = marker.first_seen if marker else now
        if (now - first_seen).total_seconds() >= config.series_stable_seconds:
            group = FileGroupProblem(tuple(objects), problem.reason, problem.detail)
            quarantined += modality.quarantine_objects(run_id, "imaging", list(objects.values()), group)
            if marker is not None:
                storage.delete_keys(lake, [key])
        else:
            update = PendingSeries(first_seen=first_seen, files=list(objects.values()), reason=problem.reason)
            storage.write_json(lake, key, update.model_dump(mode="json"))
            still_pending += 1
    logger.info(
        "imaging series judged",
        extra={
            "series": len(judged),
            "consistent": summary.series.num_rows,
            "pending": still_pending,
            "run_id": run_id,
        },
    )
    return CatalogResult(
        run_id=run_id, modality="imaging", commits=commits, quarantined=quarantined, pending=still_pending
    )


PENDING_PREFIX = layout.IMAGING_PENDING


class PendingSeries(BaseModel):
    """An inconsistent series not yet stable: when it was first seen so, and its files so far."""

    model_config = ConfigDict(extra="forbid")

    first_seen: datetime
    files: list[S3Object]
    reason: str


def _pending_keys(lake: str) -> list[tuple[str, str]]:
    keys = storage.list_keys(lake, PENDING_PREFIX)
    return [(PurePosixPath(k).stem, k) for k in keys if k.endswith(".json")]


def _judge_series(
    series_uids: list[str], run_id: str, config: RunConfig
) -> tuple[series.SeriesSummary, TableCommit]:
    """Summarise the series on one snapshot of imaging.instances and commit their imaging.series rows
    (consistent ones written, inconsistent ones' rows removed); again while another run committed instances
    meanwhile.

    Runs sharing a series judge it concurrently. Whichever commits its series rows last has checked,
    after its commit, that no instance of those series was committed since its snapshot - so the last word
    on a series always describes every instance committed before it, and a judgement made on fewer
    instances (a prefix of a series still arriving, which may look consistent) never outlives a later one.
    (Instances other runs committed for other series do not force another round.)
    """
    judged = _values(series_uids)
    for _ in range(SERIES_JUDGE_ATTEMPTS):
        snapshot = snapshot_id(INSTANCES)
        rows = read_table(INSTANCES, row_filter=judged, at_snapshot=snapshot)
        summary = series.summarise_series(rows if rows is not None else _empty_instances(), run_id=run_id)
        consistent = (
            _with_image_sets(run_id, summary.series)
            if config.imaging_backend == "healthimaging"
            else summary.series
        )
        commit = replace_rows(
            SERIES, consistent, run_id, lambda _rows: judged, commit_key=f"{run_id}@{snapshot}"
        )
        logger.info("table committed", extra=commit.model_dump())
        latest = snapshot_id(INSTANCES)
        if latest == snapshot or _files_of(
            read_table(INSTANCES, row_filter=judged, at_snapshot=latest)
        ) == _files_of(rows):
            # Nothing committed since our snapshot touches these series: the judgement stands.
            return dataclasses.replace(summary, series=consistent), commit
    raise TransientError("imaging.instances kept changing while its series were judged; retry")


def _files_of(rows: pa.Table | None) -> set[tuple[str, str]]:
    """(sop_uid, object_id) of instance rows: which files a judgement saw."""
    if rows is None:
        return set()
    return set(zip(rows["sop_uid"].to_pylist(), rows["object_id"].to_pylist(), strict=True))


SERIES_JUDGE_ATTEMPTS = 8


def _values(series_uids: list[str]) -> BooleanExpression:
    return In("series_uid", series_uids)  # type: ignore[call-arg, arg-type]


def _empty_instances() -> pa.Table:
    return IMAGING_INSTANCES.empty_table()


# ------------------------------------------------------------------------------- HealthImaging backend


def start_backend_import(
    status: ChunkStatus, staged: list[ManifestFile], execution_started_at: datetime | None = None
) -> ChunkStatus:
    """With ImagingBackend=healthimaging, import the chunk's instances the data store does not hold yet."""
    del execution_started_at  # the ClientToken makes the start idempotent
    if status.config.imaging_backend != "healthimaging" or not staged:
        return status
    cfg = settings()
    if not (cfg.healthimaging_datastore_id and cfg.healthimaging_role_arn):
        raise PipelineError(
            "ImagingBackend=healthimaging needs HEALTHIMAGING_DATASTORE_ID and HEALTHIMAGING_ROLE_ARN"
        )
    ref, lake, datastore = status.chunk, cfg.lake_bucket, cfg.healthimaging_datastore_id
    rows = _staged_instances(ref, staged)
    client = storage.client("medical-imaging")
    known = healthimaging.series_already_imported(
        client, datastore_id=datastore, series_uids=sorted(set(rows["series_uid"].to_pylist()))
    )
    in_store = healthimaging.instances_in_store(
        client, datastore_id=datastore, image_set_ids=[i for ids in known.values() for i in ids]
    )
    prefix = healthimaging_prefix(ref)
    origins: dict[str, dict[str, str]] = {}
    by_object = {f.object.object_id: f.object for f in staged}
    for row in rows.to_pylist():
        if row["sop_uid"] in in_store.get(row["series_uid"], frozenset()):
            continue  # already in the data store: importing it again would only add a version
        obj = by_object[row["object_id"]]
        key = f"{prefix}input/{obj.object_id}.dcm"
        storage.client("s3").copy_object(
            Bucket=lake, Key=key, CopySource={"Bucket": obj.bucket, "Key": obj.key}
        )
        origins[key] = {"series_uid": row["series_uid"], **obj.model_dump(include={"bucket", "key", "etag"})}
    storage.write_json(lake, f"{prefix}origins.json", {"known": known, "files": origins})
    if not origins:
        logger.info("every instance is already in HealthImaging", extra={"chunk_id": ref.chunk_id})
        storage.write_json(lake, f"{prefix}image_sets.json", known)
        return status
    job = healthimaging.start_dicom_import(
        client,
        datastore_id=datastore,
        input_s3_uri=f"s3://{lake}/{prefix}input/",
        output_s3_uri=f"s3://{lake}/{prefix}output/",
        role_arn=cfg.healthimaging_role_arn,
        job_name=healthimaging.import_job_name(ref.run_id, ref.chunk_id),
        client_token=healthimaging.import_client_token(ref.run_id, ref.chunk_id),
    )
    logger.info("backend job started", extra={"job_id": job.job_id, "files": len(origins)})
    return status.model_copy(
        update={"status": "IN_PROGRESS", "job": job, "wait_seconds": status.config.poll_seconds}
    )


def _staged_instances(ref: ChunkRef, staged: list[ManifestFile]) -> pa.Table:
    lake, paths = settings().lake_bucket, RunPaths(ref.run_id)
    rows = read_parquet(lake, paths.staged_part("imaging", INSTANCES, ref.chunk_id))
    ids = pa.array([f.object.object_id for f in staged], pa.string())
    return rows.filter(pc.is_in(rows["object_id"], value_set=ids)).select(
        ["series_uid", "sop_uid", "object_id"]
    )


def _with_image_sets(run_id: str, rows: pa.Table) -> pa.Table:
    """Fill imaging.series.image_set_id: this run's HealthImaging records first (primary set first), else
    the id the series' current row already has (a series re-judged by a later run keeps its image set)."""
    if rows.num_rows == 0:
        return rows
    lake = settings().lake_bucket
    found: dict[str, str] = {}
    for key in storage.list_keys(lake, layout.healthimaging_prefix(run_id)):
        if key.endswith("/image_sets.json"):
            for uid, ids in storage.read_json(lake, key).items():
                if ids:
                    found.setdefault(uid, ids[0])
    uids = rows["series_uid"].to_pylist()
    current = read_table(SERIES, columns=["series_uid", "image_set_id"], row_filter=In("series_uid", uids))  # type: ignore[call-arg, arg-type]
    if current is not None:
        for uid, image_set in zip(
            current["series_uid"].to_pylist(), current["image_set_id"].to_pylist(), strict=True
        ):
            if image_set:
                found.setdefault(uid, image_set)
    if not found:
        return rows
    column = rows.schema.get_field_index("image_set_id")
    return rows.set_column(
        column, rows.schema.field(column), pa.array([found.get(u) for u in uids], pa.string())
    )
