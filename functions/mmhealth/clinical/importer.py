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

from mmhealth import storage
from mmhealth.clinical import fhir, healthlake
from mmhealth.clinical.healthlake_job import StagedOrigins, healthlake_prefix
from mmhealth.contracts import ChunkStatus, ManifestFile
from mmhealth.errors import InvalidInputError, PipelineError
from mmhealth.identity import linkage
from mmhealth.lakehouse.clinical_tables import CLINICAL_TABLES
from mmhealth.lakehouse.schemas import Lineage, delivered_at_micros
from mmhealth.lakehouse.versions import OwnedByKey
from mmhealth.modality import Converted, LineProblem, OwnedBy
from mmhealth.observability import logger
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
