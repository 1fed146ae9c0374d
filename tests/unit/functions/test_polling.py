"""The bounded, backing-off poll loop."""

from __future__ import annotations

import pytest

from mmhealth.contracts import ChunkRef, ChunkStatus, JobHandle, RunConfig
from mmhealth.polling import PollTimeout, next_poll


def _status(**config: object) -> ChunkStatus:
    ref = ChunkRef(run_id="r", modality="genomic", chunk_id="genomic-0000", key="k", files=1)
    return ChunkStatus(
        chunk=ref,
        status="IN_PROGRESS",
        job=JobHandle(backend="healthomics", job_id="job-1"),
        wait_seconds=10,
        config=RunConfig.model_validate({"poll_seconds": 10, **config}),
    )


def test_waits_grow_by_the_backoff_rate_up_to_the_cap() -> None:
    status = _status(poll_backoff_rate=2.0, poll_max_seconds=50, poll_max_attempts=10)
    waits = []
    for _ in range(4):
        status = next_poll(status)
        waits.append(status.wait_seconds)
    assert waits == [20, 40, 50, 50]
    assert status.attempt == 4


def test_gives_up_after_the_configured_attempts_naming_the_job() -> None:
    status = _status(poll_max_attempts=3)
    status = next_poll(next_poll(status))
    with pytest.raises(PollTimeout, match="healthomics job job-1 still running after 3 polls"):
        next_poll(status)
