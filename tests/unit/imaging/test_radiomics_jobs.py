"""Starting and polling the radiomics job: SageMaker Processing and AWS Batch requests checked by botocore's
Stubber against the real service models (exact expected parameters), idempotent starts, every status."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from mmhealth.contracts import JobHandle
from mmhealth.errors import BackendJobFailed
from mmhealth.imaging.radiomics_job import job_name, job_status, start_job
from mmhealth.settings import Settings

RUN_ID = "2026-11-21-site-a-c65fe4927feac78f4a0c"
LAKE = "mmpipe-dev-lake-123456789012-us-east-1"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mmpipe-radiomics:latest"
ROLE = "arn:aws:iam::123456789012:role/mmpipe-dev-RadiomicsJobRole"
BASE = f"s3://{LAKE}/radiomics/{RUN_ID}/"
AT = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "lake_bucket": LAKE,
        "radiomics_backend": "sagemaker",
        "radiomics_image_uri": IMAGE,
        "radiomics_role_arn": ROLE,
        "radiomics_instance_type": "ml.g4dn.xlarge",
        "radiomics_instance_count": 2,
    }
    return Settings(**{**values, **overrides})


@pytest.fixture
def sagemaker() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client("sagemaker", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


@pytest.fixture
def batch() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client("batch", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def processing_request() -> dict[str, Any]:
    return {
        "ProcessingJobName": job_name(RUN_ID),
        "RoleArn": ROLE,
        "AppSpecification": {"ImageUri": IMAGE},
        "ProcessingResources": {
            "ClusterConfig": {"InstanceCount": 2, "InstanceType": "ml.g4dn.xlarge", "VolumeSizeInGB": 30}
        },
        "ProcessingInputs": [
            {
                "InputName": "manifests",
                "S3Input": {
                    "S3Uri": f"{BASE}manifests/",
                    "LocalPath": "/opt/ml/processing/input/manifests",
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
                    "S3Output": {
                        "S3Uri": f"{BASE}output/",
                        "LocalPath": "/opt/ml/processing/output",
                        "S3UploadMode": "EndOfJob",
                    },
                }
            ]
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": 21600},
        "Tags": [{"Key": "mmpipe:job", "Value": "radiomics"}],
    }


def test_the_job_name_fits_both_services() -> None:
    name = job_name(RUN_ID)
    assert len(name) <= 63
    assert name.replace("-", "").isalnum()
    assert job_name(RUN_ID) == name != job_name(RUN_ID + "x")


def test_a_processing_job_shards_the_manifests_over_the_gpu_instances(sagemaker: tuple[Any, Stubber]) -> None:
    client, stubber = sagemaker
    arn = f"arn:aws:sagemaker:us-east-1:123456789012:processing-job/{job_name(RUN_ID)}"
    stubber.add_response("create_processing_job", {"ProcessingJobArn": arn}, processing_request())

    assert start_job(client, settings(), RUN_ID, series=40) == JobHandle(
        backend="sagemaker", job_id=job_name(RUN_ID)
    )


def test_a_retried_start_adopts_the_job_its_first_attempt_created(sagemaker: tuple[Any, Stubber]) -> None:
    client, stubber = sagemaker
    stubber.add_client_error(
        "create_processing_job",
        service_error_code="ValidationException",
        service_message="Job name must be unique within an AWS account and region, and a job with this name "
        "already exists",
        expected_params=processing_request(),
    )
    described = {
        "ProcessingJobName": job_name(RUN_ID),
        "ProcessingResources": processing_request()["ProcessingResources"],
        "AppSpecification": {"ImageUri": IMAGE},
        "ProcessingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:processing-job/{job_name(RUN_ID)}",
        "ProcessingJobStatus": "InProgress",
        "CreationTime": AT,
    }
    stubber.add_response("describe_processing_job", described, {"ProcessingJobName": job_name(RUN_ID)})

    assert start_job(client, settings(), RUN_ID, series=40).job_id == job_name(RUN_ID)


def test_other_start_errors_are_not_swallowed(sagemaker: tuple[Any, Stubber]) -> None:
    client, stubber = sagemaker
    stubber.add_client_error("create_processing_job", service_error_code="ResourceLimitExceeded")
    with pytest.raises(Exception, match="ResourceLimitExceeded"):
        start_job(client, settings(), RUN_ID, series=40)


def test_a_batch_array_job_gets_one_child_per_shard_and_the_shard_count(batch: tuple[Any, Stubber]) -> None:
    client, stubber = batch
    cfg = settings(
        radiomics_backend="batch",
        radiomics_job_queue="gpu-queue",
        radiomics_job_definition="mmpipe-dev-radiomics",
    )
    listed = {"jobQueue": "gpu-queue", "filters": [{"name": "JOB_NAME", "values": [job_name(RUN_ID)]}]}
    stubber.add_response("list_jobs", {"jobSummaryList": []}, listed)
    stubber.add_response(
        "submit_job",
        {
            "jobArn": "arn:aws:batch:us-east-1:123456789012:job/j-1",
            "jobName": job_name(RUN_ID),
            "jobId": "j-1",
        },
        {
            "jobName": job_name(RUN_ID),
            "jobQueue": "gpu-queue",
            "jobDefinition": "mmpipe-dev-radiomics",
            "containerOverrides": {
                "command": ["--input", f"{BASE}manifests/", "--output", f"{BASE}output/"],
                "environment": [{"name": "RADIOMICS_SHARD_COUNT", "value": "2"}],
            },
            "tags": {"mmpipe:job": "radiomics"},
            "arrayProperties": {"size": 2},
        },
    )
    assert start_job(client, cfg, RUN_ID, series=40) == JobHandle(backend="batch", job_id="j-1")


def test_a_retried_batch_start_adopts_the_job_of_that_name(batch: tuple[Any, Stubber]) -> None:
    client, stubber = batch
    cfg = settings(
        radiomics_backend="batch",
        radiomics_job_queue="gpu-queue",
        radiomics_job_definition="mmpipe-dev-radiomics",
    )
    stubber.add_response(
        "list_jobs",
        {"jobSummaryList": [{"jobId": "j-1", "jobName": job_name(RUN_ID), "status": "RUNNING"}]},
        {"jobQueue": "gpu-queue", "filters": [{"name": "JOB_NAME", "values": [job_name(RUN_ID)]}]},
    )
    assert start_job(client, cfg, RUN_ID, series=40).job_id == "j-1"


@pytest.mark.parametrize(
    ("overrides", "missing"),
    [
        ({"radiomics_role_arn": None}, "RADIOMICS_ROLE_ARN"),
        ({"radiomics_image_uri": None}, "RADIOMICS_IMAGE_URI"),
        ({"radiomics_backend": "batch"}, "RADIOMICS_JOB_QUEUE"),
        ({"radiomics_backend": "lambda"}, "RADIOMICS_BACKEND"),
    ],
)
def test_a_backend_without_its_settings_is_a_clear_error(overrides: dict[str, Any], missing: str) -> None:
    with pytest.raises(BackendJobFailed, match=missing):
        start_job(object(), settings(**overrides), RUN_ID, series=1)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("InProgress", "IN_PROGRESS"),
        ("Stopping", "IN_PROGRESS"),
        ("Completed", "COMPLETED"),
        ("Failed", "FAILED"),
        ("Stopped", "FAILED"),
    ],
)
def test_every_processing_status_is_mapped(
    sagemaker: tuple[Any, Stubber], status: str, expected: str
) -> None:
    client, stubber = sagemaker
    described = {
        "ProcessingJobName": "j",
        "ProcessingResources": processing_request()["ProcessingResources"],
        "AppSpecification": {"ImageUri": IMAGE},
        "ProcessingJobArn": "arn:aws:sagemaker:us-east-1:123456789012:processing-job/j",
        "ProcessingJobStatus": status,
        "CreationTime": AT,
        **({"FailureReason": "ClientError: out of GPU memory"} if expected == "FAILED" else {}),
    }
    stubber.add_response("describe_processing_job", described, {"ProcessingJobName": "j"})
    state, reason = job_status(client, JobHandle(backend="sagemaker", job_id="j"))
    assert state == expected
    assert ("out of GPU memory" in reason) == (expected == "FAILED")


def test_every_batch_status_is_mapped(batch: tuple[Any, Stubber]) -> None:
    client, stubber = batch
    statuses = client.meta.service_model.shape_for("JobStatus").enum
    expected = {"SUCCEEDED": "COMPLETED", "FAILED": "FAILED"}
    for status in statuses:
        stubber.add_response(
            "describe_jobs",
            {
                "jobs": [
                    {
                        "jobName": "n",
                        "jobId": "j-1",
                        "jobQueue": "q",
                        "status": status,
                        "startedAt": 1,
                        "jobDefinition": "d",
                    }
                ]
            },
            {"jobs": ["j-1"]},
        )
    states = [job_status(client, JobHandle(backend="batch", job_id="j-1"))[0] for _ in statuses]
    assert states == [expected.get(s, "IN_PROGRESS") for s in statuses]
