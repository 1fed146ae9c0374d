"""The Poll step of a chunk's HealthOmics variant import (GenomicBackend=healthomics; the Import starts it).

Apart from mmhealth.genomic.importer, which reads VCFs with htslib and Arrow: the Genomic Poll function ships
without them (functions/Makefile).
"""

from __future__ import annotations

from mmhealth import polling, storage
from mmhealth.chunks import discard_chunk
from mmhealth.contracts import ChunkStatus
from mmhealth.genomic import healthomics
from mmhealth.observability import job_failed, logger


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
        failed = discard_chunk(status.chunk, "poll", "healthomics-import-failed", detail)
        job_failed("healthomics")
        return failed.model_copy(update={"config": status.config, "job": status.job})
    return polling.next_poll(status)
