"""Genomic modality: per-file conversion and the start of the optional HealthOmics import.

Which rows a file replaces is mmhealth.genomic.tables; the HealthOmics Poll step is
mmhealth.genomic.healthomics_job.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from mmhealth import storage
from mmhealth.contracts import ChunkStatus, ManifestFile
from mmhealth.errors import PipelineError
from mmhealth.genomic import healthomics, vcf
from mmhealth.genomic.tables import CLINVAR, SAMPLES, VARIANTS
from mmhealth.lakehouse.schemas import delivered_at_micros
from mmhealth.modality import Converted
from mmhealth.settings import settings


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
