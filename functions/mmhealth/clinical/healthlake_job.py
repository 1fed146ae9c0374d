"""A chunk's HealthLake import (ClinicalBackend=healthlake) as the pipeline follows it: where its files are
staged, where each staged resource came from, and the Poll step (the Import starts the job).

Apart from mmhealth.clinical.importer, which flattens FHIR into Arrow tables: the Clinical Poll function
ships without Arrow (functions/Makefile).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from mmhealth import polling, quarantine, storage
from mmhealth.clinical import healthlake
from mmhealth.contracts import ChunkRef, ChunkStatus, S3Object
from mmhealth.errors import PipelineError
from mmhealth.lakehouse import layout
from mmhealth.observability import job_failed, logger
from mmhealth.settings import settings


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
