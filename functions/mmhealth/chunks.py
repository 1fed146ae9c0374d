"""A chunk of a run's files (Prepare writes them): read one back, or give one up after its retries.

Apart from mmhealth.modality, which imports and commits with Arrow and pyiceberg: the Chunk Failure and Poll
functions discard chunks and ship without them (functions/Makefile).
"""

from __future__ import annotations

from pathlib import PurePosixPath

from mmhealth import quarantine, storage
from mmhealth.contracts import Chunk, ChunkRef, ChunkStatus
from mmhealth.lakehouse.layout import RunPaths
from mmhealth.settings import settings


def load_chunk(ref: ChunkRef) -> Chunk:
    return Chunk.model_validate(storage.read_json(settings().lake_bucket, ref.key))


def discard_chunk(ref: ChunkRef, stage: str, error: str, cause: str) -> ChunkStatus:
    """A chunk failed beyond retries: quarantine all its files with the cause and drop their staged parts."""
    lake = settings().lake_bucket
    chunk = load_chunk(ref)
    staged_prefix = RunPaths(ref.run_id).staging_prefix(ref.modality)
    doomed = [
        k for k in storage.list_keys(lake, staged_prefix) if PurePosixPath(k).stem == f"part-{ref.chunk_id}"
    ]
    storage.delete_keys(lake, doomed)
    for file in chunk.files:
        quarantine.record(
            lake,
            ref.run_id,
            file.object,
            modality=ref.modality,
            stage="poll" if stage == "poll" else "import",
            reason=error,
            detail=cause,
        )
    return ChunkStatus(chunk=ref, status="FAILED", quarantined=len(chunk.files))
