"""The optional real-time endpoint: requests checked against the real `sagemaker` service model (Stubber)."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from mmhealth import storage
from mmhealth.scoring import endpoint
from mmhealth.settings import Settings

MODEL = {
    "model_id": "mmpipe-train-a05069f504173b1a511d",
    "model_uri": "s3://mmpipe-dev-lake-123456789012-us-east-1/training/r1/mmpipe-train-a05069f504173b1a511d/output/model.tar.gz",
}
NAME = endpoint.resource_name(MODEL["model_id"])
CFG = Settings(
    lake_bucket="lake",
    endpoint_name="mmpipe-dev-outcomes",
    training_image_uri="123456789012.dkr.ecr.us-east-1.amazonaws.com/mmpipe-training:1",
    training_role_arn="arn:aws:iam::123456789012:role/mmpipe-dev-TrainingJobRole",
)
ENDPOINT_ARN = "arn:aws:sagemaker:us-east-1:123456789012:endpoint/mmpipe-dev-outcomes"


@pytest.fixture
def sagemaker(monkeypatch: pytest.MonkeyPatch) -> Stubber:
    client = boto3.client("sagemaker", region_name="us-east-1")
    monkeypatch.setattr(storage, "client", lambda service: client)
    with Stubber(client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def _described(config: str, status: str) -> dict[str, Any]:
    return {
        "EndpointName": "mmpipe-dev-outcomes", "EndpointArn": ENDPOINT_ARN, "EndpointConfigName": config,
        "EndpointStatus": status, "CreationTime": "2026-12-05T00:00:00Z", "LastModifiedTime": "2026-12-05T00:00:00Z",
    }  # fmt: skip


def _expect_model_and_config(stubber: Stubber) -> None:
    stubber.add_response(
        "create_model",
        {"ModelArn": f"arn:aws:sagemaker:us-east-1:123456789012:model/{NAME}"},
        {
            "ModelName": NAME,
            "ExecutionRoleArn": CFG.training_role_arn,
            "PrimaryContainer": {
                "Image": CFG.training_image_uri,
                "ModelDataUrl": MODEL["model_uri"],
                "Environment": {"MMPIPE_MODEL_ID": MODEL["model_id"]},
            },
        },
    )
    stubber.add_response(
        "create_endpoint_config",
        {"EndpointConfigArn": f"arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/{NAME}"},
        {
            "EndpointConfigName": NAME,
            "ProductionVariants": [
                {
                    "VariantName": "outcomes",
                    "ModelName": NAME,
                    "ServerlessConfig": {"MemorySizeInMB": 4096, "MaxConcurrency": 2},
                }
            ],
        },
    )


def test_the_first_model_creates_the_serverless_endpoint(sagemaker: Stubber) -> None:
    sagemaker.add_client_error(
        "describe_endpoint", "ValidationException", 'Could not find endpoint "mmpipe-dev-outcomes".'
    )
    _expect_model_and_config(sagemaker)
    sagemaker.add_response(
        "create_endpoint",
        {"EndpointArn": ENDPOINT_ARN},
        {
            "EndpointName": "mmpipe-dev-outcomes",
            "EndpointConfigName": NAME,
            "Tags": [{"Key": "mmpipe:endpoint", "Value": "outcomes"}],
        },
    )

    assert endpoint.ensure_serving(MODEL, CFG) == "created"


def test_a_newer_model_updates_the_endpoint(sagemaker: Stubber) -> None:
    sagemaker.add_response("describe_endpoint", _described("mmpipe-model-older-0123456789ab", "InService"))
    _expect_model_and_config(sagemaker)
    sagemaker.add_response(
        "update_endpoint",
        {"EndpointArn": ENDPOINT_ARN},
        {"EndpointName": "mmpipe-dev-outcomes", "EndpointConfigName": NAME},
    )

    assert endpoint.ensure_serving(MODEL, CFG) == "updating"


def test_the_model_already_served_changes_nothing(sagemaker: Stubber) -> None:
    sagemaker.add_response("describe_endpoint", _described(NAME, "InService"))

    assert endpoint.ensure_serving(MODEL, CFG) == "serving"


def test_an_endpoint_being_deployed_is_left_alone(sagemaker: Stubber) -> None:
    sagemaker.add_response("describe_endpoint", _described("mmpipe-model-older-0123456789ab", "Updating"))

    assert endpoint.ensure_serving(MODEL, CFG) == "busy"


def test_a_retried_deployment_adopts_the_model_it_created(sagemaker: Stubber) -> None:
    sagemaker.add_response("describe_endpoint", _described("mmpipe-model-older-0123456789ab", "InService"))
    sagemaker.add_client_error(
        "create_model", "ValidationException", f'Cannot create already existing model "{NAME}".'
    )
    sagemaker.add_client_error(
        "create_endpoint_config",
        "ValidationException",
        f'Cannot create already existing endpoint configuration "{NAME}".',
    )
    sagemaker.add_response("update_endpoint", {"EndpointArn": ENDPOINT_ARN})

    assert endpoint.ensure_serving(MODEL, CFG) == "updating"


def test_without_an_endpoint_name_nothing_is_deployed(sagemaker: Stubber) -> None:
    assert endpoint.ensure_serving(MODEL, CFG.model_copy(update={"endpoint_name": None})) is None


def test_names_fit_sagemaker_rules() -> None:
    assert len(NAME) <= 63
    assert NAME.replace("-", "").isalnum()
