"""The optional real-time endpoint (template parameter RealtimeEndpoint): the newest model behind a SageMaker
serverless endpoint, for risk scores on demand (`training_job.serving` in the training image).

    ensure_serving(model) -> what it did: "created", "updating", "serving", "busy" (or None when disabled)

Called by StartScoring with the newest model. The endpoint's name is fixed per stage (ENDPOINT_NAME); each
model gets its own SageMaker Model and EndpointConfig, both named after the model id, so the config the
endpoint uses says which model it serves. A new model: CreateModel + CreateEndpointConfig, then
CreateEndpoint (first time) or UpdateEndpoint. An endpoint still Creating or Updating is left alone (the
next run looks again): the scoring step never waits for a deployment. The endpoint is created by the
pipeline, not by CloudFormation, so deleting the stack leaves it: `aws sagemaker delete-endpoint`.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

from botocore.exceptions import ClientError

from mmhealth import storage
from mmhealth.observability import logger
from mmhealth.settings import Settings, settings

Deployment = Literal["created", "updating", "serving", "busy"]
_BUSY = {"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting"}


def resource_name(model_id: str) -> str:
    """`mmpipe-<model id's job hash>` within SageMaker's 63 characters (the model id is the job name)."""
    digest = hashlib.sha256(model_id.encode()).hexdigest()[:12]
    return f"mmpipe-model-{model_id.removeprefix('mmpipe-train-')[:36]}-{digest}"


def ensure_serving(model: dict[str, Any], cfg: Settings | None = None) -> Deployment | None:
    """Make the endpoint serve `model` (a features.models row), starting a deployment if it does not."""
    cfg = cfg or settings()
    if not cfg.endpoint_name:
        return None
    client = storage.client("sagemaker")
    name = resource_name(str(model["model_id"]))
    described = _describe(client, cfg.endpoint_name)
    if described is not None and described["EndpointConfigName"] == name:
        return "serving"
    if described is not None and described["EndpointStatus"] in _BUSY:
        logger.info(
            "endpoint busy", extra={"endpoint": cfg.endpoint_name, "state": described["EndpointStatus"]}
        )
        return "busy"
    _create_model(client, cfg, name, model)
    if described is None:
        client.create_endpoint(
            EndpointName=cfg.endpoint_name,
            EndpointConfigName=name,
            Tags=[{"Key": "mmpipe:endpoint", "Value": "outcomes"}],
        )
        outcome: Deployment = "created"
    else:
        client.update_endpoint(EndpointName=cfg.endpoint_name, EndpointConfigName=name)
        outcome = "updating"
    logger.info(
        "endpoint deployment started", extra={"endpoint": cfg.endpoint_name, "model_id": model["model_id"]}
    )
    return outcome


def _describe(client: Any, endpoint: str) -> dict[str, Any] | None:
    try:
        described: dict[str, Any] = client.describe_endpoint(EndpointName=endpoint)
    except ClientError as exc:
        message = exc.response.get("Error", {}).get("Message", "")
        if exc.response.get("Error", {}).get("Code") == "ValidationException" and "Could not find" in message:
            return None
        storage.reraise_transient(exc)
        raise
    return described


def _create_model(client: Any, cfg: Settings, name: str, model: dict[str, Any]) -> None:
    """The SageMaker Model and its serverless EndpointConfig; both already there (a retry) is fine."""
    if not (cfg.training_image_uri and cfg.training_role_arn):
        raise ValueError("the endpoint needs TRAINING_IMAGE_URI and TRAINING_ROLE_ARN")
    requests = (
        (
            client.create_model,
            {
                "ModelName": name,
                "ExecutionRoleArn": cfg.training_role_arn,
                "PrimaryContainer": {
                    "Image": cfg.training_image_uri,
                    "ModelDataUrl": model["model_uri"],
                    "Environment": {"MMPIPE_MODEL_ID": str(model["model_id"])},
                },
            },
        ),
        (
            client.create_endpoint_config,
            {
                "EndpointConfigName": name,
                "ProductionVariants": [
                    {
                        "VariantName": "outcomes",
                        "ModelName": name,
                        "ServerlessConfig": {
                            "MemorySizeInMB": cfg.endpoint_memory_mb,
                            "MaxConcurrency": cfg.endpoint_max_concurrency,
                        },
                    }
                ],
            },
        ),
    )
    for create, request in requests:
        try:
            create(**request)
        except ClientError as exc:
            if "already exist" not in exc.response.get("Error", {}).get("Message", ""):
                storage.reraise_transient(exc)
                raise
