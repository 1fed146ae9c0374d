"""Clinical modality: per-file FHIR flattening and row ownership.

Every `clinical.<resource>` row is owned by its resource id: a resource delivered again (a corrected
Observation, the same NDJSON re-sent) replaces its previous row instead of adding one.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.expressions import BooleanExpression, In

from mmhealth import polling, quarantine, storage
from mmhealth.clinical import fhir, healthlake
from mmhealth.clinical.schemas import CLINICAL_TABLES
from mmhealth.contracts import ChunkRef, ChunkStatus, ManifestFile, S3Object
from mmhealth.errors import PipelineError
from mmhealth.modality import Converted, LineProblem, OwnedBy
from mmhealth.observability import logger
from mmhealth.settings import settings


def convert_fhir(file: ManifestFile, path: Path, run_id: str) -> Converted:
    """NDJSON or a Bundle -> rows per clinical table; bad lines/entries come back as problems."""
    result = fhir.flatten_fhir(
        path, source_key=file.object.key, object_id=file.object.object_id, run_id=run_id
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


def resources_of(rows: pa.Table) -> BooleanExpression:
    # pyiceberg's predicates are pydantic models whose __new__ mypy cannot see through.
    return In("resource_id", sorted(pc.unique(rows["resource_id"]).to_pylist()))  # type: ignore[call-arg, arg-type]


OWNERS: dict[str, OwnedBy] = dict.fromkeys(CLINICAL_TABLES, resources_of)


def healthlake_prefix(ref: ChunkRef) -> str:
    """Where a chunk's HealthLake input NDJSON and job output live in the lake bucket."""
    return f"healthlake/{ref.run_id}/{ref.chunk_id}/"


def poll_backend_import(status: ChunkStatus) -> ChunkStatus:
    """One look at the chunk's HealthLake import; once it has ended, every rejected resource is quarantined.

    A job can end COMPLETED and still have rejected resources (its FAILURE files), so the outcome is read
    after every terminal status. The lakehouse rows of the chunk stay: HealthLake is an optional copy.
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
    output = f"s3://{cfg.lake_bucket}/{healthlake_prefix(status.chunk)}output/"
    outcome = healthlake.import_outcome(
        storage.client("s3"), output, status.job.job_id, datastore_id=cfg.healthlake_datastore_id
    )
    staged = S3Object(bucket=cfg.lake_bucket, key=f"{healthlake_prefix(status.chunk)}input/", etag="-")
    for n, failure in enumerate(outcome.failures):
        quarantine.record(
            cfg.lake_bucket, status.chunk.run_id, staged, modality="clinical", stage="poll",
            reason="healthlake-rejected", detail=failure.detail, line=failure.input_line, n=n,
        )  # fmt: skip
    if state == "FAILED" and not outcome.failures:
        quarantine.record(
            cfg.lake_bucket, status.chunk.run_id, staged, modality="clinical", stage="poll",
            reason="healthlake-import-failed", detail="; ".join(messages) or "job FAILED without details",
        )  # fmt: skip
    quarantined = status.quarantined + max(len(outcome.failures), 1 if state == "FAILED" else 0)
    return status.model_copy(update={"status": state, "quarantined": quarantined})
