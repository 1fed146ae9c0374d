"""The scoring job of a run as SageMaker Processing runs it: its name and the Poll step (mmhealth.scoring.job
starts it and commits its predictions).

Apart from mmhealth.scoring.job, which reads the newest model and commits predictions with Iceberg: the
Scoring Poll function ships the core set only (functions/Makefile).
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

from mmhealth import polling, storage
from mmhealth.contracts import JobHandle, ScoringRun

_RUNNING = {"InProgress", "Stopping"}


def job_name(run_id: str) -> str:
    """`mmpipe-score-<20 hex of sha256(run)>`: within SageMaker's name rules (<= 63, [A-Za-z0-9-])."""
    return f"mmpipe-score-{hashlib.sha256(run_id.encode()).hexdigest()[:20]}"


def job_status(client: Any, job: JobHandle) -> tuple[Literal["IN_PROGRESS", "COMPLETED", "FAILED"], str]:
    described = client.describe_processing_job(ProcessingJobName=job.job_id)
    status = described["ProcessingJobStatus"]
    if status in _RUNNING:
        return "IN_PROGRESS", ""
    if status == "Completed":
        return "COMPLETED", ""
    reason = described.get("ExitMessage") or described.get("FailureReason") or "no reason given"
    return "FAILED", f"scoring job {job.job_id} {status}: {reason}"


def poll(run: ScoringRun) -> ScoringRun:
    """PollScoring: one look at the job; raises BackendJobFailed (the run fails, with the job's reason)."""
    assert run.job is not None
    job = run.job
    return polling.poll_job(run, "scoring", lambda: job_status(storage.client("sagemaker"), job))
