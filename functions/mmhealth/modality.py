"""The shape every modality shares: import a chunk -> staged Parquet parts -> one catalog commit per run.

A modality supplies only what differs: how one file becomes table rows (a `FileConverter`), and which
existing rows a new batch replaces (`owned_by` per table). Staging, quarantine, idempotency and the
commit are here, once.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pyarrow as pa
from pyiceberg.expressions import BooleanExpression

from mmhealth import quarantine, storage, superseded
from mmhealth.chunks import load_chunk
from mmhealth.contracts import (
    CatalogResult,
    ChunkRef,
    ChunkStatus,
    ManifestFile,
    Modality,
    RunConfig,
    RunManifest,
    S3Object,
    TableCommit,
)
from mmhealth.errors import InvalidInputError, SupersededObject
from mmhealth.lakehouse.catalog import replace_rows
from mmhealth.lakehouse.layout import RunPaths
from mmhealth.lakehouse.parquet import read_parquet, write_parquet
from mmhealth.observability import MetricUnit, logger, metrics, timed, tracer
from mmhealth.settings import settings


@dataclass(frozen=True)
class LineProblem:
    """A rejected part of an otherwise ingested file (a bad NDJSON line, a bad Bundle entry)."""

    reason: str
    detail: str
    line: int | None = None


@dataclass(frozen=True)
class Converted:
    """What one file became: rows per table ("clinical.observation" -> Arrow), and what was left out."""

    tables: Mapping[str, pa.Table]
    problems: Sequence[LineProblem] = ()


# One file on local disk -> Converted. Raises InvalidInputError when the whole file is unusable.
FileConverter = Callable[[ManifestFile, Path, str], Converted]
OwnedBy = Callable[[pa.Table], BooleanExpression]


@tracer.capture_method
def import_chunk(
    ref: ChunkRef, config: RunConfig, convert: FileConverter
) -> tuple[ChunkStatus, list[ManifestFile]]:
    """Convert every file of the chunk into staged parts; bad files are quarantined, the rest go on.

    Returns the chunk status and the files that were staged. One Parquet part per table per chunk (not per
    file: thousands of small DICOM rows would otherwise be thousands of S3 objects to write and read back).
    Errors other than InvalidInputError (S3 throttling, a crash) propagate: the state machine retries the
    chunk, and staged part keys are deterministic, so a retry overwrites rather than duplicates.
    """
    started = time.monotonic()
    lake = settings().lake_bucket
    paths = RunPaths(ref.run_id)
    chunk = load_chunk(ref)
    rows = parts = 0
    staged: list[ManifestFile] = []
    quarantined = overwritten = 0
    tables: dict[str, list[pa.Table]] = {}
    with tempfile.TemporaryDirectory(prefix="mmpipe-") as tmp:
        for file in chunk.files:
            local = Path(tmp) / PurePosixPath(file.object.key).name
            try:
                storage.download_object(file.object, local)
            except SupersededObject:
                superseded.record_object(lake, ref.run_id, file.object)
                overwritten += 1
                continue
            try:
                converted = convert(file, local, ref.run_id)
            except InvalidInputError as exc:
                quarantine.record_invalid(lake, ref.run_id, file.object, ref.modality, exc)
                quarantined += 1
                continue
            finally:
                local.unlink(missing_ok=True)
            for n, problem in enumerate(converted.problems):
                quarantine.record(
                    lake, ref.run_id, file.object, modality=ref.modality, stage="import",
                    reason=problem.reason, detail=problem.detail, line=problem.line, n=n,
                )  # fmt: skip
            quarantined += len(converted.problems)
            for name, table in converted.tables.items():
                tables.setdefault(name, []).append(table)
                rows += table.num_rows
            staged.append(file)
    for name, pieces in tables.items():
        part = pa.concat_tables(pieces, promote_options="default")
        write_parquet(lake, paths.staged_part(ref.modality, name, ref.chunk_id), part)
        parts += 1
    # Per modality (docs/runbook.md, Metrics); FilesQuarantined is counted where each record is written.
    metrics.add_dimensioned_metric("FilesIngested", MetricUnit.Count, len(staged), modality=ref.modality)
    metrics.add_dimensioned_metric("RowsStaged", MetricUnit.Count, rows, modality=ref.modality)
    seconds = round(time.monotonic() - started, 3)
    metrics.add_dimensioned_metric("ImportSeconds", MetricUnit.Seconds, seconds, modality=ref.modality)
    logger.info(
        "chunk imported",
        extra={
            "chunk_id": ref.chunk_id,
            "files": len(chunk.files),
            "staged": len(staged),
            "rows": rows,
            "quarantined": quarantined,
            "superseded": overwritten,
        },
    )
    status = ChunkStatus(
        chunk=ref, status="COMPLETED", parts=parts, rows=rows, quarantined=quarantined, config=config
    )
    return status, staged


@dataclass(frozen=True)
class FileGroupProblem:
    """Files that are fine one by one but wrong together (an inconsistent DICOM series)."""

    object_ids: tuple[str, ...]
    reason: str
    detail: str


def read_staged(run_id: str, modality: Modality, names: Iterable[str]) -> dict[str, pa.Table]:
    """Every staged part of this run, per table (tables without parts are absent)."""
    lake = settings().lake_bucket
    paths = RunPaths(run_id)
    staged: dict[str, pa.Table] = {}
    for name in names:
        keys = sorted(storage.list_keys(lake, paths.staging_prefix(modality, name)))
        if keys:
            staged[name] = pa.concat_tables([read_parquet(lake, k) for k in keys], promote_options="default")
    return staged


def commit_tables(
    run_id: str, modality: Modality, owners: Mapping[str, OwnedBy], tables: Mapping[str, pa.Table]
) -> list[TableCommit]:
    """One atomic, run-tagged commit per non-empty table, in `owners` order."""
    commits: list[TableCommit] = []
    for name, owned_by in owners.items():
        rows = tables.get(name)
        if rows is None or rows.num_rows == 0:
            continue
        commit = replace_rows(name, rows, run_id, owned_by)
        commits.append(commit)
        metrics.add_dimensioned_metric(
            "RowsCommitted", MetricUnit.Count, commit.rows_added, modality=modality
        )
        logger.info("table committed", extra=commit.model_dump())
    return commits


@tracer.capture_method
def catalog_run(
    run_id: str, modality: Modality, owners: Mapping[str, OwnedBy], quarantined: int
) -> CatalogResult:
    """Commit every staged part of this run and modality: one atomic, run-tagged commit per table."""
    with timed("CatalogSeconds", modality=modality):
        commits = commit_tables(run_id, modality, owners, read_staged(run_id, modality, owners))
    return CatalogResult(run_id=run_id, modality=modality, commits=commits, quarantined=quarantined)


def quarantine_groups(run_id: str, modality: Modality, problems: Sequence[FileGroupProblem]) -> int:
    """One quarantine record per file of this run in every group; returns how many files that was."""
    if not problems:
        return 0
    files = {f.object.object_id: f.object for f in run_files(run_id, modality)}
    return sum(
        quarantine_objects(run_id, modality, [files[o] for o in group.object_ids if o in files], group)
        for group in problems
    )


def quarantine_objects(
    run_id: str, modality: Modality, objects: Sequence[S3Object], problem: FileGroupProblem
) -> int:
    """One catalog-stage quarantine record per object, with the group's reason; returns the count."""
    lake = settings().lake_bucket
    for obj in objects:
        quarantine.record(
            lake,
            run_id,
            obj,
            modality=modality,
            stage="catalog",
            reason=problem.reason,
            detail=problem.detail,
        )
    return len(objects)


def run_files(run_id: str, modality: Modality) -> list[ManifestFile]:
    """Every file of the run's chunks of one modality (from the run manifest and its chunk files)."""
    lake = settings().lake_bucket
    manifest = RunManifest.model_validate(storage.read_json(lake, RunPaths(run_id).manifest))
    return [f for ref in manifest.chunks if ref.modality == modality for f in load_chunk(ref).files]
