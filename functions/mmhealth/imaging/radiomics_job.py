"""The radiomics job of a run on its backend (SageMaker Processing or AWS Batch): start or adopt it, and the
Poll step; the job's contract is in mmhealth.imaging.radiomics.

Apart from mmhealth.imaging.radiomics, whose manifests and catalog read and commit Iceberg tables: the
Radiomics Poll function ships the core set only (functions/Makefile).
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

from botocore.exceptions import ClientError

from mmhealth import polling, storage
from mmhealth.contracts import JobHandle, RadiomicsRun
from mmhealth.errors import BackendJobFailed
from mmhealth.lakehouse import layout
from mmhealth.observability import logger
from mmhealth.settings import Settings

BACKENDS = ("sagemaker", "batch")
MANIFESTS = "/opt/ml/processing/input/manifests"
OUTPUT = "/opt/ml/processing/output"


def job_name(run_id: str) -> str:
    """`mmpipe-radiomics-<20 hex of sha256(run)>`: within both services' name rules (<= 63, [A-Za-z0-9-])."""
    return f"mmpipe-radiomics-{hashlib.sha256(run_id.encode()).hexdigest()[:20]}"


def start_job(client: Any, cfg: Settings, run_id: str, series: int) -> JobHandle:
    """Start (or adopt) the run's job on the configured backend; raises BackendJobFailed on a bad setup."""
    if cfg.radiomics_backend not in BACKENDS:
        raise BackendJobFailed(f"RADIOMICS_BACKEND must be one of {BACKENDS}, not {cfg.radiomics_backend!r}")
    if not cfg.radiomics_image_uri and cfg.radiomics_backend == "sagemaker":
        raise BackendJobFailed("the radiomics job needs RADIOMICS_IMAGE_URI (the container image)")
    name = job_name(run_id)
    base = f"s3://{cfg.lake_bucket}/{layout.radiomics_prefix(run_id)}"
    if cfg.radiomics_backend == "sagemaker":
        return _start_processing_job(client, cfg, name, base)
    return _submit_batch_job(client, cfg, name, base, series)


def _start_processing_job(client: Any, cfg: Settings, name: str, base: str) -> JobHandle:
    if not cfg.radiomics_role_arn:
        raise BackendJobFailed("the SageMaker radiomics job needs RADIOMICS_ROLE_ARN")
    request = {
        "ProcessingJobName": name,
        "RoleArn": cfg.radiomics_role_arn,
        "AppSpecification": {"ImageUri": cfg.radiomics_image_uri},
        "ProcessingResources": {
            "ClusterConfig": {
                "InstanceCount": cfg.radiomics_instance_count,
                "InstanceType": cfg.radiomics_instance_type,
                "VolumeSizeInGB": 30,
            }
        },
        "ProcessingInputs": [
            {
                "InputName": "manifests",
                "S3Input": {
                    "S3Uri": f"{base}manifests/",
                    "LocalPath": MANIFESTS,
                    "S3DataType": "S3Prefix",
                    "S3InputMode": "File",
                    "S3DataDistributionType": "ShardedByS3Key",
                },
            }
        ],
        "ProcessingOutputConfig": {
            "Outputs": [
                {
                    "OutputName": "radiomics",
                    "S3Output": {"S3Uri": f"{base}output/", "LocalPath": OUTPUT, "S3UploadMode": "EndOfJob"},
                }
            ]
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": 6 * 3600},
        "Tags": [{"Key": "mmpipe:job", "Value": "radiomics"}],
    }
    try:
        arn = client.create_processing_job(**request)["ProcessingJobArn"]
    except ClientError as exc:
        message = exc.response.get("Error", {}).get("Message", "")
        if "unique" not in message.lower():
            storage.reraise_transient(exc)
            raise
        arn = client.describe_processing_job(ProcessingJobName=name)["ProcessingJobArn"]
        logger.info("radiomics job adopted", extra={"job": name})
    logger.info("radiomics job started", extra={"job": name, "arn": arn, "backend": "sagemaker"})
    return JobHandle(backend="sagemaker", job_id=name)


def _submit_batch_job(client: Any, cfg: Settings, name: str, base: str, series: int) -> JobHandle:
    if not (cfg.radiomics_job_queue and cfg.radiomics_job_definition):
        raise BackendJobFailed(
            "the AWS Batch radiomics job needs RADIOMICS_JOB_QUEUE and RADIOMICS_JOB_DEFINITION"
        )
    existing = client.list_jobs(
        jobQueue=cfg.radiomics_job_queue, filters=[{"name": "JOB_NAME", "values": [name]}]
    ).get("jobSummaryList", [])
    if existing:
        logger.info("radiomics job adopted", extra={"job": name})
        return JobHandle(backend="batch", job_id=existing[0]["jobId"])
    shards = max(1, min(cfg.radiomics_instance_count, series))
    request: dict[str, Any] = {
        "jobName": name,
        "jobQueue": cfg.radiomics_job_queue,
        "jobDefinition": cfg.radiomics_job_definition,
        "containerOverrides": {
            "command": ["--input", f"{base}manifests/", "--output", f"{base}output/"],
            # Each array child takes the series whose hash falls in its shard (AWS_BATCH_JOB_ARRAY_INDEX).
            "environment": [{"name": "RADIOMICS_SHARD_COUNT", "value": str(shards)}],
        },
        "tags": {"mmpipe:job": "radiomics"},
    }
    if shards > 1:
        request["arrayProperties"] = {"size": shards}
    job_id = client.submit_job(**request)["jobId"]
    logger.info("radiomics job started", extra={"job": name, "job_id": job_id, "backend": "batch"})
    return JobHandle(backend="batch", job_id=job_id)


# SageMaker ProcessingJobStatus / Batch JobStatus -> the poll vocabulary.
_RUNNING = {"InProgress", "Stopping", "SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING"}
_DONE = {"Completed", "SUCCEEDED"}


def job_status(client: Any, job: JobHandle) -> tuple[Literal["IN_PROGRESS", "COMPLETED", "FAILED"], str]:
    """(state, the service's reason when it failed) of the run's job."""
    if job.backend == "sagemaker":
        described = client.describe_processing_job(ProcessingJobName=job.job_id)
        status, reason = described["ProcessingJobStatus"], described.get("FailureReason") or ""
    else:
        jobs = client.describe_jobs(jobs=[job.job_id]).get("jobs", [])
        if not jobs:
            raise BackendJobFailed(f"AWS Batch knows no job {job.job_id}")
        status, reason = jobs[0]["status"], jobs[0].get("statusReason") or ""
    if status in _RUNNING:
        return "IN_PROGRESS", ""
    if status in _DONE:
        return "COMPLETED", ""
    return "FAILED", f"{job.backend} job {job.job_id} {status}: {reason or 'no reason given'}"


def poll(run: RadiomicsRun) -> RadiomicsRun:
    """RadiomicsPoll: one look at the job; raises BackendJobFailed (the branch fails, with the cause)."""
    assert run.job is not None
    job = run.job
    client = storage.client("sagemaker" if job.backend == "sagemaker" else "batch")
    return polling.poll_job(run, "radiomics", lambda: job_status(client, job))
