"""The training steps of the state machine: what a run trains (or why not), CreateTrainingJob (Stubber
against the real SageMaker model, exact request), adoption of a retried start, every status, and the catalog of
the job's outputs.

S3 and Glue are moto (the `aws` fixture); SageMaker is a Stubber routed into the handlers.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from mmhealth import storage
from mmhealth.contracts import JobHandle, RunConfig, TrainingRun
from mmhealth.errors import BackendJobFailed
from mmhealth.handlers import training_catalog, training_poll, training_start
from mmhealth.lakehouse.catalog import read_table
from mmhealth.training import dataset, job
from tests.conftest import REPO, FakeLambdaContext
from tests.unit.backend_fixtures import stubbed_in_handlers

RUN_ID = "delivery-7-w1"
DATASET_ID = "0123456789abcdef01234567"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mmpipe-training:latest"
ROLE = "arn:aws:iam::123456789012:role/mmpipe-dev-TrainingJobRole"
AT = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
CONTEXT = FakeLambdaContext()
CONFIG = RunConfig(poll_seconds=5, training_time_limit=30, training_hyperparameters='{"GBM": {}}')


@pytest.fixture
def sagemaker(aws: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubber]:
    monkeypatch.setenv("TRAINING_IMAGE_URI", IMAGE)
    monkeypatch.setenv("TRAINING_ROLE_ARN", ROLE)
    monkeypatch.setenv("TRAINING_INSTANCE_TYPE", "ml.m5.2xlarge")
    with stubbed_in_handlers(monkeypatch, "sagemaker") as stubber:
        yield stubber


def features_result(aws: SimpleNamespace) -> dict[str, Any]:
    """What BuildFeatures leaves in $.features when it wrote a snapshot."""
    prevalence = {
        "hypertension": {"eligible": 100, "positives": 40},
        "stroke": {"eligible": 100, "positives": 3},
    }
    storage.write_json(aws.lake, f"datasets/{DATASET_ID}/manifest.json", {"prevalence": prevalence})
    uri = f"s3://{aws.lake}/{dataset.prefix(DATASET_ID)}"
    return {"result": {"patients": 10, "dataset": {"dataset_id": DATASET_ID, "uri": uri}}}


def start_event(features: dict[str, Any] | None, config: RunConfig = CONFIG) -> dict[str, Any]:
    return {"run_id": RUN_ID, "config": config.model_dump(), "features": features}


def create_request(lake: str) -> dict[str, Any]:
    return {
        "TrainingJobName": job.job_name(RUN_ID),
        "RoleArn": ROLE,
        "AlgorithmSpecification": {"TrainingImage": IMAGE, "TrainingInputMode": "File"},
        "HyperParameters": {
            "time_limit": "30",
            "presets": "medium_quality",
            "seed": "42",
            "test_size": "0.3",
            "bootstrap": "1000",
            "hyperparameters": '{"GBM": {}}',
        },
        "InputDataConfig": [
            {
                "ChannelName": "dataset",
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": f"s3://{lake}/datasets/{DATASET_ID}/",
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
            }
        ],
        "OutputDataConfig": {"S3OutputPath": f"s3://{lake}/training/{RUN_ID}/"},
        "ResourceConfig": {"InstanceType": "ml.m5.2xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 30 * 30 + 3600},
        "Tags": [{"Key": "mmpipe:job", "Value": "training"}],
    }


def arn() -> str:
    return f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{job.job_name(RUN_ID)}"


def test_the_snapshot_of_its_own_run_starts_a_training_job(aws: SimpleNamespace, sagemaker: Stubber) -> None:
    sagemaker.add_response("create_training_job", {"TrainingJobArn": arn()}, create_request(aws.lake))
    started = training_start.lambda_handler(start_event(features_result(aws)), CONTEXT)
    assert (started["status"], started["job"]["job_id"], started["dataset_id"]) == (
        "IN_PROGRESS",
        job.job_name(RUN_ID),
        DATASET_ID,
    )
    assert started["wait_seconds"] == 5


def test_a_retried_start_adopts_the_job_its_first_attempt_created(
    aws: SimpleNamespace, sagemaker: Stubber
) -> None:
    sagemaker.add_client_error(
        "create_training_job",
        service_error_code="ResourceInUse",
        service_message="Training job names must be unique within an AWS account and region",
        expected_params=create_request(aws.lake),
    )
    described = {
        "TrainingJobName": job.job_name(RUN_ID), "TrainingJobArn": arn(), "TrainingJobStatus": "InProgress",
        "SecondaryStatus": "Training", "CreationTime": AT, "ModelArtifacts": {"S3ModelArtifacts": "s3://x/y"},
        "AlgorithmSpecification": {"TrainingImage": IMAGE, "TrainingInputMode": "File"},
        "ResourceConfig": {"InstanceType": "ml.m5.2xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 4500},
    }  # fmt: skip
    sagemaker.add_response("describe_training_job", described, {"TrainingJobName": job.job_name(RUN_ID)})
    started = training_start.lambda_handler(start_event(features_result(aws)), CONTEXT)
    assert started["status"] == "IN_PROGRESS"


def test_other_start_errors_are_not_swallowed(aws: SimpleNamespace, sagemaker: Stubber) -> None:
    sagemaker.add_client_error("create_training_job", service_error_code="ResourceLimitExceeded")
    with pytest.raises(ClientError, match="ResourceLimitExceeded"):
        training_start.lambda_handler(start_event(features_result(aws)), CONTEXT)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("training-off", "training is off"),
        ("no-change", "no dataset snapshot from this run: no clinical, imaging or genomic rows changed"),
        ("no-labels", "no dataset snapshot from this run: no patient has labels yet"),
        ("already-trained", f"dataset {DATASET_ID} already has a model (run delivery-6-w1)"),
        ("too-few", f"dataset {DATASET_ID} has too few labelled patients to train (hypertension 4+/2-"),
    ],
)
def test_a_run_without_something_new_to_train_starts_no_job_and_says_why(
    aws: SimpleNamespace, sagemaker: Stubber, case: str, expected: str
) -> None:
    features: dict[str, Any] | None = features_result(aws)
    config = CONFIG
    if case == "training-off":
        config = CONFIG.model_copy(update={"training": False})
    elif case == "no-change":
        features = {
            "result": {"skipped": True, "reason": "no clinical, imaging or genomic rows changed in this run"}
        }
    elif case == "no-labels":
        features = {"result": {"patients": 0, "dataset": None}}
    elif case == "already-trained":
        storage.write_json(aws.lake, f"datasets/{DATASET_ID}/trained.json", {"run_id": "delivery-6-w1"})
    else:
        prevalence = {
            "hypertension": {"eligible": 6, "positives": 4},
            "stroke": {"eligible": 6, "positives": 0},
        }
        storage.write_json(aws.lake, f"datasets/{DATASET_ID}/manifest.json", {"prevalence": prevalence})
    started = training_start.lambda_handler(start_event(features, config), CONTEXT)
    assert (started["status"], started["job"]) == ("COMPLETED", None)
    assert started["skipped"].startswith(expected)


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("InProgress", "IN_PROGRESS"),
        ("Stopping", "IN_PROGRESS"),
        ("Completed", "COMPLETED"),
        ("Failed", "FAILED"),
        ("Stopped", "FAILED"),
    ],
)
def test_every_training_status_is_mapped(sagemaker: Stubber, status: str, state: str) -> None:
    described = {
        "TrainingJobName": "j", "TrainingJobArn": arn(), "TrainingJobStatus": status, "SecondaryStatus": "Training",
        "CreationTime": AT, "ModelArtifacts": {"S3ModelArtifacts": "s3://x/y"},
        "AlgorithmSpecification": {"TrainingInputMode": "File"},
        "ResourceConfig": {"InstanceType": "ml.m5.2xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 4500},
        **({"FailureReason": "AlgorithmError: out of memory"} if status == "Failed" else {}),
    }  # fmt: skip
    sagemaker.add_response("describe_training_job", described, {"TrainingJobName": "j"})
    run = TrainingRun(run_id=RUN_ID, status="IN_PROGRESS", job=JobHandle(backend="sagemaker", job_id="j"))
    if state == "FAILED":
        with pytest.raises(BackendJobFailed, match="training job j") as failure:
            training_poll.lambda_handler(run.model_dump(), CONTEXT)
        if status == "Failed":
            assert "out of memory" in str(failure.value)
        return
    polled = training_poll.lambda_handler(run.model_dump(), CONTEXT)
    assert polled["status"] == state
    if state == "IN_PROGRESS":
        assert polled["attempt"] == 1


def metrics_document() -> dict[str, Any]:
    """The shape containers/training writes (metrics[outcome][set][metric], control[outcome][metric])."""

    def metric(value: float) -> dict[str, float]:
        return {"value": value, "ci_low": value - 0.05, "ci_high": value + 0.05}

    by_set = {
        s: {"roc_auc": metric(0.8), "f1": metric(0.6)} for s in ("clinical", "clinical+genomic+imaging")
    }
    return {
        "reference_sets": {"full": "clinical+genomic+imaging", "baseline": "clinical"},
        "counts": {"hypertension": {"n_train": 70, "n_test": 30}},
        "metrics": {"hypertension": by_set},
        "control": {"hypertension": {"roc_auc": metric(0.5)}},
    }


def tarball(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, body in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            archive.addfile(info, io.BytesIO(body))
    return buffer.getvalue()


def test_the_catalog_unpacks_the_outputs_commits_the_metrics_and_marks_the_dataset_trained(
    aws: SimpleNamespace,
) -> None:
    # Given a finished job's output.tar.gz where SageMaker puts it
    name = job.job_name(RUN_ID)
    output = f"training/{RUN_ID}/{name}/output/"
    files = {"metrics.json": json.dumps(metrics_document()).encode(), "report.html": b"<html></html>"}
    aws.s3.put_object(Bucket=aws.lake, Key=f"{output}output.tar.gz", Body=tarball(files))
    run = TrainingRun(
        run_id=RUN_ID, status="COMPLETED", job=JobHandle(backend="sagemaker", job_id=name), dataset_id=DATASET_ID,
    )  # fmt: skip

    # When the catalog step runs (twice: a retried Lambda)
    catalogued = training_catalog.lambda_handler(run.model_dump(), CONTEXT)
    again = training_catalog.lambda_handler(run.model_dump(), CONTEXT)

    # Then the report and metrics sit next to the run, and the run names its artifacts and headline
    report = aws.s3.get_object(Bucket=aws.lake, Key=f"training/{RUN_ID}/report/report.html")
    assert report["ContentType"].startswith("text/html")
    assert catalogued["model_uri"] == f"s3://{aws.lake}/{output}model.tar.gz"
    assert catalogued["headline"] == {"hypertension": {"roc_auc": 0.8, "f1": 0.6}}
    assert again["headline"] == catalogued["headline"]
    # And features.metrics holds one row per outcome x set x metric, once
    metrics = read_table("features.metrics")
    assert metrics is not None
    assert metrics.num_rows == 5
    assert set(metrics["modality_set"].to_pylist()) == {"clinical", "clinical+genomic+imaging", "control"}
    assert set(metrics["n_test"].to_pylist()) == {30}
    # And the dataset is marked trained, so the next run's gate skips it
    marker = storage.read_json(aws.lake, f"datasets/{DATASET_ID}/trained.json")
    assert marker["run_id"] == RUN_ID


def test_with_aws_autogluon_image_the_job_runs_the_source_tarball_in_script_mode(
    aws: SimpleNamespace, sagemaker: Stubber, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given AWS's AutoGluon training image and the tarball `make training-source` builds, uploaded
    source = f"s3://{aws.lake}/code/training-source.tar.gz"
    dlc = "763104351884.dkr.ecr.us-east-1.amazonaws.com/autogluon-training:1.4.0-cpu-py311-ubuntu22.04"
    monkeypatch.setenv("TRAINING_IMAGE_URI", dlc)
    monkeypatch.setenv("TRAINING_SOURCE_URI", source)
    request = create_request(aws.lake)
    request["AlgorithmSpecification"]["TrainingImage"] = dlc
    request["HyperParameters"] |= {"sagemaker_program": "train.py", "sagemaker_submit_directory": source}
    sagemaker.add_response("create_training_job", {"TrainingJobArn": arn()}, request)

    # Then CreateTrainingJob names the script and its tarball (the job itself ignores sagemaker_* keys)
    started = training_start.lambda_handler(start_event(features_result(aws)), CONTEXT)
    assert started["status"] == "IN_PROGRESS"


def test_the_script_mode_entry_runs_the_job_and_ignores_the_command_line_copies(tmp_path: Path) -> None:
    # Given the command line the AutoGluon image's toolkit builds, and SageMaker's variables pointing at an
    # empty dataset channel
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO / "containers" / "training"),
        "SM_CHANNEL_DATASET": str(tmp_path / "dataset"),
        "SM_OUTPUT_DIR": str(tmp_path / "output"),
        "SM_MODEL_DIR": str(tmp_path / "model"),
        "SM_OUTPUT_DATA_DIR": str(tmp_path / "output" / "data"),
        "SM_INPUT_CONFIG_DIR": str(tmp_path / "config"),
    }
    (tmp_path / "dataset").mkdir()
    script = REPO / "containers" / "training" / "train.py"
    done = subprocess.run(
        [sys.executable, str(script), "--time_limit", "30", "--presets", "medium_quality"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip

    # Then the job itself ran (not argparse refusing the flags) and failed on the missing dataset, saying so
    assert done.returncode == 1, done.stderr[-2000:]
    assert "dataset/manifest.json is missing" in (tmp_path / "output" / "failure").read_text()


def test_fewer_permutations_and_folds_reach_the_job_as_its_own_parameters() -> None:
    from training_job.parameters import parse_parameters

    defaults = job.hyperparameters(RunConfig())
    assert "label_shuffle_permutations" not in defaults  # the job's own defaults apply
    assert "oof_folds" not in defaults
    assert parse_parameters(defaults).label_shuffle_permutations == 20

    asked = job.hyperparameters(RunConfig(training_permutations=3, training_oof_folds=2))
    parsed = parse_parameters(asked)
    assert (parsed.label_shuffle_permutations, parsed.oof_folds) == (3, 2)
    with pytest.raises(ValueError, match="training_oof_folds"):
        RunConfig(training_oof_folds=1)
