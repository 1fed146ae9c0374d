"""Clinical modality: per-file FHIR flattening and row ownership.

Every `clinical.<resource>` row is owned by its resource id: of all the versions of a resource (repeated in
several files of a run, a corrected Observation re-delivered, an overwritten file) the lake keeps the newest
by lakehouse.versions' rule and records the others in `ops.superseded`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import BaseModel, ConfigDict

from mmhealth import polling, quarantine, storage
from mmhealth.clinical import fhir, healthlake
from mmhealth.contracts import ChunkRef, ChunkStatus, ManifestFile, S3Object
from mmhealth.errors import InvalidInputError, PipelineError
from mmhealth.identity import linkage
from mmhealth.lakehouse import layout
from mmhealth.lakehouse.clinical_tables import CLINICAL_TABLES
from mmhealth.lakehouse.schemas import Lineage, delivered_at_micros
from mmhealth.lakehouse.versions import OwnedByKey
from mmhealth.modality import Converted, LineProblem, OwnedBy
from mmhealth.observability import job_failed, logger
from mmhealth.settings import settings


def convert_clinical(file: ManifestFile, path: Path, run_id: str) -> Converted:
    """A FHIR file (convert_fhir) or a linkage file that travels with the clinical data."""
    if file.kind == "linkage":
        lineage = Lineage(
            file.object.key, file.object.object_id, run_id, delivered_at_micros(file.object.delivered_at)
        )
        return linkage.read_linkage(path, lineage)
    return convert_fhir(file, path, run_id)


def convert_fhir(file: ManifestFile, path: Path, run_id: str) -> Converted:
    """NDJSON or a Bundle -> rows per clinical table; bad lines/entries come back as problems."""
    result = fhir.flatten_fhir(
        path,
        source_key=file.object.key,
        object_id=file.object.object_id,
        run_id=run_id,
        delivered_at=delivered_at_micros(file.object.delivered_at),
    )
    problems = [LineProblem(reason=p.reason, detail=p.detail, line=p.line) for p in result.problems]
    logger.info(
        "fhir file flattened",
        extra={
            "key": file.object.key,
            "resources": dict(result.accepted),
            "kept_raw": dict(result.other_types),  # valid types without a table: clinical.other_resource
            "problems": dict(result.problem_counts),
        },
    )
    omitted = sum(result.problem_counts.values()) - len(result.problems)
    if omitted > 0:  # flatten_fhir lists the first problems only; the rest become one counted record
        detail = f"{omitted} more rejected lines, by reason: {dict(result.problem_counts)}"
        problems.append(LineProblem(reason="more-problems", detail=detail))
    return Converted(tables=result.tables, problems=problems)


# One row (set) per resource id, whichever files and runs it came in: the version rule keeps the newest.
resources_of = OwnedByKey("resource_id")
OWNERS: dict[str, OwnedBy] = {
    **dict.fromkeys(CLINICAL_TABLES, resources_of),
    linkage.TABLE: OwnedByKey("source"),  # one row per linked source, the newest
}


def healthlake_prefix(ref: ChunkRef) -> str:
    """Where a chunk's HealthLake input NDJSON, its origins and the job's output live in the lake bucket."""
    return layout.healthlake_prefix(ref.run_id, ref.chunk_id)


class StagedOrigins(BaseModel):
    """Where each line of a chunk's staged NDJSON came from: lines[i] = (index in `files`, source line).

    Kept beside (not under) the import's input folder, which HealthLake imports whole, so a resource
    HealthLake rejects is quarantined against the delivered file it came from, not the staged copy.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    files: list[S3Object]
    lines: list[tuple[int, int | None]]

    def source_of(self, staged_line: int | None) -> tuple[S3Object, int | None] | None:
        """The delivered object and line of a 1-based staged line; None when it is out of range."""
        if staged_line is None or not 1 <= staged_line <= len(self.lines):
            return None
        index, line = self.lines[staged_line - 1]
        return self.files[index], line


def start_backend_import(
    status: ChunkStatus, staged: list[ManifestFile], execution_started_at: datetime | None = None
) -> ChunkStatus:
    """With ClinicalBackend=healthlake, import the chunk's valid resources into the HealthLake data store.

    The resources the lakehouse import accepted (Bundle entries unpacked, their `urn:uuid:` references
    made `Type/id`) are staged as one NDJSON file, their origins beside it, then one StartFHIRImportJob
    starts. Its ClientToken comes from run + chunk, so a retried Import gets the job its first attempt
    started instead of a second one. Rejected lines were quarantined by the import and are not sent.
    """
    del execution_started_at  # the ClientToken makes the start idempotent; no need to look for earlier jobs
    config = status.config
    if config.clinical_backend != "healthlake" or not staged:
        return status
    cfg = settings()
    if not (cfg.healthlake_datastore_id and cfg.healthlake_role_arn and cfg.healthlake_kms_key_id):
        raise PipelineError(
            "ClinicalBackend=healthlake needs HEALTHLAKE_DATASTORE_ID, HEALTHLAKE_ROLE_ARN and "
            "HEALTHLAKE_KMS_KEY_ID"
        )
    ref = status.chunk
    prefix = healthlake_prefix(ref)
    lines: list[tuple[int, int | None]] = []
    count = healthlake.stage_ndjson(
        storage.client("s3"),
        cfg.lake_bucket,
        f"{prefix}input/resources.ndjson",
        _valid_resources(staged, ref.run_id, lines),
    )
    if count == 0:
        logger.info("nothing to import into HealthLake", extra={"chunk_id": ref.chunk_id})
        return status
    origins = StagedOrigins(files=[f.object for f in staged], lines=lines)
    storage.write_json(cfg.lake_bucket, f"{prefix}origins.json", origins.model_dump(mode="json"))
    job = healthlake.start_fhir_import(
        storage.client("healthlake"),
        datastore_id=cfg.healthlake_datastore_id,
        input_s3_uri=f"s3://{cfg.lake_bucket}/{prefix}input/",
        output_s3_uri=f"s3://{cfg.lake_bucket}/{prefix}output/",
        kms_key_id=cfg.healthlake_kms_key_id,
        role_arn=cfg.healthlake_role_arn,
        job_name=healthlake.import_job_name(ref.run_id, ref.chunk_id),
        client_token=healthlake.import_client_token(ref.run_id, ref.chunk_id),
    )
    logger.info("backend job started", extra={"job_id": job.job_id, "resources": count})
    return status.model_copy(
        update={"status": "IN_PROGRESS", "job": job, "wait_seconds": config.poll_seconds}
    )


def _valid_resources(
    staged: list[ManifestFile], run_id: str, origins: list[tuple[int, int | None]]
) -> Iterator[dict[str, Any]]:
    """The accepted resources of every staged file, read again one file at a time; origins are appended."""
    with tempfile.TemporaryDirectory(prefix="mmpipe-") as tmp:
        for index, file in enumerate(staged):
            if file.kind != "clinical":  # a linkage file has no resources
                continue
            local = Path(tmp) / PurePosixPath(file.object.key).name
            storage.download_object(file.object, local)
            try:
                result = fhir.flatten_fhir(
                    local,
                    source_key=file.object.key,
                    object_id=file.object.object_id,
                    run_id=run_id,
                    keep_resources=True,
                )
            except InvalidInputError as exc:  # the object changed since the import read it
                raise PipelineError(f"{file.object.key} can no longer be read: {exc}") from exc
            finally:
                local.unlink(missing_ok=True)
            for line, resource in result.resources:
                origins.append((index, line))
                yield resource


def poll_backend_import(status: ChunkStatus) -> ChunkStatus:
    """One look at the chunk's HealthLake import; once it has ended, every rejected resource is quarantined.

    A job can end COMPLETED and still have rejected resources (its FAILURE files), so the outcome is read
    after every terminal status. Each rejection is recorded against the delivered file and line it came
    from. The lakehouse rows of the chunk stay: HealthLake is an optional copy.
    """
    assert status.job is not None
    cfg = settings()
    if not cfg.healthlake_datastore_id:
        raise PipelineError("a HealthLake job is being polled but HEALTHLAKE_DATASTORE_ID is not set")
    state, messages = healthlake.job_status(
        storage.client("healthlake"), datastore_id=cfg.healthlake_datastore_id, job_id=status.job.job_id
    )
    logger.info(
        "backend job polled", extra={"job_id": status.job.job_id, "state": state, "attempt": status.attempt}
    )
    if state == "IN_PROGRESS":
        return polling.next_poll(status)
    prefix = healthlake_prefix(status.chunk)
    outcome = healthlake.import_outcome(
        storage.client("s3"),
        f"s3://{cfg.lake_bucket}/{prefix}output/",
        status.job.job_id,
        datastore_id=cfg.healthlake_datastore_id,
    )
    origins = StagedOrigins.model_validate(storage.read_json(cfg.lake_bucket, f"{prefix}origins.json"))
    staged = S3Object(bucket=cfg.lake_bucket, key=f"{prefix}input/resources.ndjson", etag="-")
    for n, failure in enumerate(outcome.failures):
        obj, line = origins.source_of(failure.input_line) or (staged, failure.input_line)
        quarantine.record(
            cfg.lake_bucket, status.chunk.run_id, obj, modality="clinical", stage="poll",
            reason="healthlake-rejected", detail=failure.detail, line=line, n=n,
        )  # fmt: skip
    unexplained = outcome.failed - len(outcome.failures) + outcome.unreported_failures
    job_level = bool(unexplained) or (state == "FAILED" and not outcome.failures)
    if job_level:  # what no FAILURE line explains gets one record against the staged file
        detail = "; ".join(messages) or f"job {state} without details"
        if unexplained:
            detail = f"{unexplained} rejected resources not listed one by one; {detail}"
        quarantine.record(
            cfg.lake_bucket, status.chunk.run_id, staged, modality="clinical", stage="poll",
            reason="healthlake-import-failed", detail=detail, n=len(outcome.failures),
        )  # fmt: skip
    quarantined = status.quarantined + len(outcome.failures) + int(job_level)
    logger.info(
        "backend job ended",
        extra={
            "job_id": status.job.job_id,
            "state": state,
            "imported": outcome.succeeded,
            "rejected": outcome.failed,
            "unreported": outcome.unreported_failures,
        },
    )
    if state == "FAILED":
        job_failed("healthlake")
    return status.model_copy(update={"status": state, "quarantined": quarantined})
