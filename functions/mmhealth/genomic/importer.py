"""Genomic modality: per-file conversion, the optional HealthOmics backend, and row ownership.

`genomic.variants` rows are owned by their sample: a newly delivered callset for a sample replaces that
sample's previous rows (so re-delivering a VCF never doubles them). `genomic.samples` records every sample
column of every genotype VCF, so a sample that carries no ALT allele (no variant row) is still known to have
been genotyped; it is owned by sample too. `genomic.clinvar` is a release: a new annotation VCF replaces
the table (the version rule picks the newest of two delivered together).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from mmhealth import modality, polling, storage
from mmhealth.contracts import ChunkStatus, ManifestFile
from mmhealth.errors import PipelineError
from mmhealth.genomic import healthomics, vcf
from mmhealth.lakehouse.schemas import delivered_at_micros
from mmhealth.lakehouse.versions import OwnedByKey
from mmhealth.modality import Converted, OwnedBy
from mmhealth.observability import job_failed, logger
from mmhealth.settings import settings

VARIANTS = "genomic.variants"
SAMPLES = "genomic.samples"
CLINVAR = "genomic.clinvar"


def convert_vcf(file: ManifestFile, path: Path, run_id: str) -> Converted:
    """A genotype VCF -> genomic.variants and genomic.samples rows; an annotation VCF -> genomic.clinvar
    rows (all or nothing)."""
    key, object_id = file.object.key, file.object.object_id
    delivered_at = delivered_at_micros(file.object.delivered_at)
    if file.kind == "annotation":
        clinvar = vcf.read_clinvar(
            path, source_key=key, object_id=object_id, run_id=run_id, delivered_at=delivered_at
        )
        return Converted({CLINVAR: clinvar})
    callset = vcf.read_callset(
        path, source_key=key, object_id=object_id, run_id=run_id, delivered_at=delivered_at
    )
    return Converted({VARIANTS: callset.variants, SAMPLES: callset.samples})


# A sample's callset is one version: two VCFs of one sample (in one run or across runs) keep the newer.
samples_of = OwnedByKey("sample_id")
# A ClinVar release is one version of the whole table: the newest annotation file replaces it.
OWNERS: dict[str, OwnedBy] = {
    VARIANTS: samples_of,
    SAMPLES: samples_of,
    CLINVAR: OwnedByKey("annotation_set"),
}


def start_backend_import(
    status: ChunkStatus, staged: list[ManifestFile], execution_started_at: datetime | None = None
) -> ChunkStatus:
    """With GenomicBackend=healthomics, start one variant-store import for the chunk's genotype VCFs.

    A retried import adopts the job its earlier attempt started; only jobs created since the execution
    started qualify, so a later re-delivery of the same keys never adopts an earlier run's import.
    """
    config = status.config
    sources = [f"s3://{f.object.bucket}/{f.object.key}" for f in staged if f.kind == "genomic"]
    if config.genomic_backend != "healthomics" or not sources:
        return status
    cfg = settings()
    if not (cfg.healthomics_variant_store and cfg.healthomics_role_arn):
        raise PipelineError(
            "GenomicBackend=healthomics needs HEALTHOMICS_VARIANT_STORE and HEALTHOMICS_ROLE_ARN"
        )
    job = healthomics.start_variant_import(
        storage.client("omics"),
        store_name=cfg.healthomics_variant_store,
        role_arn=cfg.healthomics_role_arn,
        source_uris=sources,
        run_id=f"{status.chunk.run_id}/{status.chunk.chunk_id}",
        not_before=execution_started_at,
    )
    return status.model_copy(
        update={"status": "IN_PROGRESS", "job": job, "wait_seconds": config.poll_seconds}
    )


def poll_backend_import(status: ChunkStatus) -> ChunkStatus:
    """One look at the chunk's HealthOmics import: done, failed (files quarantined), or poll again later."""
    assert status.job is not None
    state, failures = healthomics.job_status(storage.client("omics"), status.job.job_id)
    logger.info(
        "backend job polled", extra={"job_id": status.job.job_id, "state": state, "attempt": status.attempt}
    )
    if state == "COMPLETED":
        return status.model_copy(update={"status": "COMPLETED"})
    if state == "FAILED":
        detail = "; ".join(failures) or "job FAILED without details"
        failed = modality.discard_chunk(status.chunk, "poll", "healthomics-import-failed", detail)
        job_failed("healthomics")
        return failed.model_copy(update={"config": status.config, "job": status.job})
    return polling.next_poll(status)
