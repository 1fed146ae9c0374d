"""The bounded, backing-off poll loop shared by every backend job (Health services, SageMaker, Batch).

The state machine owns the loop (Wait -> Poll -> Choice); this module decides the next wait and when to
give up, so the execution history stays small whatever the job's duration.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal, TypeVar

from mmhealth.contracts import PolledJob
from mmhealth.errors import BackendJobFailed, PipelineError
from mmhealth.observability import job_failed, logger

P = TypeVar("P", bound=PolledJob)


class PollTimeout(PipelineError):
    """The backend job was still running after the configured number of polls (not retried)."""


def next_poll(status: P) -> P:
    """One more attempt with a longer wait; raises PollTimeout once attempts are exhausted."""
    cfg = status.config
    attempt = status.attempt + 1
    if attempt >= cfg.poll_max_attempts:
        job = f"{status.job.backend} job {status.job.job_id}" if status.job else "backend job"
        raise PollTimeout(
            f"{status.subject}: {job} still running after {attempt} polls; "
            "check the job in its service console, or raise poll_max_attempts"
        )
    wait = min(
        cfg.poll_max_seconds, math.ceil(max(status.wait_seconds, cfg.poll_seconds) * cfg.poll_backoff_rate)
    )
    return status.model_copy(update={"attempt": attempt, "wait_seconds": wait})


JobState = Literal["IN_PROGRESS", "COMPLETED", "FAILED"]


def poll_job(run: P, job: str, look: Callable[[], tuple[JobState, str]]) -> P:
    """One look at a run's job (`look` returns its state and, when failed, the service's reason): the next
    poll while it runs, COMPLETED when done; a failed job counts JobsFailed{job} and raises BackendJobFailed."""
    assert run.job is not None
    state, reason = look()
    logger.info(f"{job} job polled", extra={"job_id": run.job.job_id, "state": state, "attempt": run.attempt})
    if state == "IN_PROGRESS":
        return next_poll(run)
    if state == "FAILED":
        job_failed(job)
        raise BackendJobFailed(reason)
    return run.model_copy(update={"status": "COMPLETED"})
