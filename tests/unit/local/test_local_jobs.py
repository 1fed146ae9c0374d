"""SageMaker Processing / AWS Batch calls answered by a local subprocess (mmpipe.local.jobs), over moto S3.

The entry point here is a small real module written by the test (it copies each input manifest to the
output, or exits 3 when told to), so what is tested is the runner: inputs staged from S3, the process run,
outputs uploaded, statuses and errors as the services report them.
"""

from __future__ import annotations

import json
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from mmpipe.local.job_processes import JobRegistry
from mmpipe.local.jobs import LocalJobs

ENTRY = textwrap.dedent(
    """
    import argparse, json, pathlib, sys
    parser = argparse.ArgumentParser()
    parser.add_argument("--input"); parser.add_argument("--output")
    parser.add_argument("--workers"); parser.add_argument("--device")
    args = parser.parse_args()
    manifests = sorted(pathlib.Path(args.input).glob("*.json"))
    if any(json.loads(m.read_text()).get("fail") for m in manifests):
        print("the job cannot run: told to fail", file=sys.stderr)
        sys.exit(3)
    out = pathlib.Path(args.output) / "features"
    out.mkdir(parents=True, exist_ok=True)
    for m in manifests:
        (out / m.name).write_text(json.dumps({"copied": json.loads(m.read_text())}))
    """
)


@pytest.fixture
def jobs(aws: SimpleNamespace, tmp_path: Path) -> Iterator[LocalJobs]:
    code = tmp_path / "code"
    code.mkdir()
    (code / "fake_job.py").write_text(ENTRY)
    runner = LocalJobs(
        code, tmp_path / "work", entry_point="fake_job", registry=JobRegistry(tmp_path / "registry")
    )
    runner.install()
    boto3.DEFAULT_SESSION = None  # sessions created from now on carry the hooks
    yield runner
    runner.wait(30)
    runner.close()


def processing_request(lake: str, name: str = "mmpipe-radiomics-0123") -> dict[str, Any]:
    return {
        "ProcessingJobName": name,
        "RoleArn": "arn:aws:iam::123456789012:role/radiomics",
        "AppSpecification": {"ImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/mmpipe-radiomics:1"},
        "ProcessingResources": {
            "ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.g4dn.xlarge", "VolumeSizeInGB": 30}
        },
        "ProcessingInputs": [
            {
                "InputName": "manifests",
                "S3Input": {
                    "S3Uri": f"s3://{lake}/radiomics/run-1/manifests/",
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
                        "S3Uri": f"s3://{lake}/radiomics/run-1/output/",
                        "LocalPath": "/opt/ml/processing/output",
                        "S3UploadMode": "EndOfJob",
                    },
                }
            ]
        },
    }


def wait_for(describe: Any, done: set[str], timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = describe()
        if status in done:
            return str(status)
        time.sleep(0.1)
    raise AssertionError("the job did not end")


def test_a_processing_job_stages_inputs_runs_and_uploads_its_output(
    aws: SimpleNamespace, jobs: LocalJobs
) -> None:
    # Given two series manifests in the lake
    for uid in ("1.2.3", "1.2.4"):
        aws.s3.put_object(
            Bucket=aws.lake, Key=f"radiomics/run-1/manifests/{uid}.json", Body=json.dumps({"uid": uid})
        )
    sagemaker = boto3.client("sagemaker")

    # When the job is created and polled until it ends
    arn = sagemaker.create_processing_job(**processing_request(aws.lake))["ProcessingJobArn"]
    first = sagemaker.describe_processing_job(ProcessingJobName="mmpipe-radiomics-0123")[
        "ProcessingJobStatus"
    ]
    final = wait_for(
        lambda: sagemaker.describe_processing_job(ProcessingJobName="mmpipe-radiomics-0123")[
            "ProcessingJobStatus"
        ],
        {"Completed", "Failed"},
    )

    # Then it ran as SageMaker would have: output uploaded under the output S3Uri
    assert arn.endswith(":processing-job/mmpipe-radiomics-0123")
    assert first in {"InProgress", "Completed"}
    assert final == "Completed"
    keys = sorted(
        o["Key"]
        for o in aws.s3.list_objects_v2(Bucket=aws.lake, Prefix="radiomics/run-1/output/")["Contents"]
    )
    assert keys == [
        "radiomics/run-1/output/features/1.2.3.json",
        "radiomics/run-1/output/features/1.2.4.json",
    ]
    body = json.loads(aws.s3.get_object(Bucket=aws.lake, Key=keys[0])["Body"].read())
    assert body == {"copied": {"uid": "1.2.3"}}

    # And a second job of the same name is refused as SageMaker refuses it
    with pytest.raises(ClientError, match="must be unique"):
        sagemaker.create_processing_job(**processing_request(aws.lake))


def test_a_failing_job_reports_failed_with_the_end_of_its_stderr(
    aws: SimpleNamespace, jobs: LocalJobs
) -> None:
    aws.s3.put_object(
        Bucket=aws.lake, Key="radiomics/run-1/manifests/x.json", Body=json.dumps({"fail": True})
    )
    sagemaker = boto3.client("sagemaker")

    sagemaker.create_processing_job(**processing_request(aws.lake, "failing-job"))
    final = wait_for(
        lambda: sagemaker.describe_processing_job(ProcessingJobName="failing-job")["ProcessingJobStatus"],
        {"Completed", "Failed"},
    )

    described = sagemaker.describe_processing_job(ProcessingJobName="failing-job")
    assert final == "Failed"
    assert "exit code 3" in described["FailureReason"]
    assert "told to fail" in described["FailureReason"]


def test_a_batch_job_runs_its_command_and_is_listed_by_name(
    tmp_path: Path, aws: SimpleNamespace, jobs: LocalJobs
) -> None:
    # Given a Batch job whose command names local folders (the real job takes s3:// URIs as well)
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "a.json").write_text("{}")
    batch = boto3.client("batch")

    # When it is submitted and described until it ends
    submitted = batch.submit_job(
        jobName="mmpipe-radiomics-batch",
        jobQueue="gpu",
        jobDefinition="radiomics:1",
        containerOverrides={"command": ["--input", str(manifests), "--output", str(tmp_path / "out")]},
    )
    final = wait_for(
        lambda: batch.describe_jobs(jobs=[submitted["jobId"]])["jobs"][0]["status"], {"SUCCEEDED", "FAILED"}
    )

    # Then it succeeded, wrote its output, and ListJobs finds it by name (how a retried start adopts it)
    assert final == "SUCCEEDED"
    assert (tmp_path / "out" / "features" / "a.json").exists()
    listed = batch.list_jobs(
        jobQueue="gpu", filters=[{"name": "JOB_NAME", "values": ["mmpipe-radiomics-batch"]}]
    )
    assert [j["jobId"] for j in listed["jobSummaryList"]] == [submitted["jobId"]]
