"""The scoring step of a run: the newest model applied to the run's dataset snapshot (a SageMaker Processing
job with the training image, `python -m training_job score`), its predictions committed to
`features.predictions`.

    StartScoring   start(run_id, config, features)  -> ScoringRun (IN_PROGRESS, or COMPLETED + skipped)
    PollScoring    poll(run)                        -> one DescribeProcessingJob
    CatalogScoring catalog(run)                     -> predictions committed, the (snapshot, model) marked

It runs after training whether or not this run trained: a delivery that changed the features of a few
patients is scored with the model that exists. With RealtimeEndpoint on, StartScoring also points the
serverless endpoint at the newest model (mmhealth.scoring.endpoint). Skipped, saying why, when the run has
no dataset snapshot, no model was ever trained, or this snapshot was scored with this model already (a
replay, or a run whose features did not change). The job name is derived from the run, so a retried
StartScoring adopts the job it started; CatalogScoring replaces the run's own rows, so a replay never
doubles them.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from botocore.exceptions import ClientError

from mmhealth import storage
from mmhealth.contracts import JobHandle, RunConfig, ScoringRun, TableCommit
from mmhealth.errors import BackendJobFailed
from mmhealth.lakehouse import layout
from mmhealth.lakehouse.catalog import replace_rows
from mmhealth.lakehouse.schemas import FEATURES_PREDICTIONS
from mmhealth.observability import logger
from mmhealth.scoring import endpoint
from mmhealth.scoring.processing_job import job_name
from mmhealth.settings import Settings, settings
from mmhealth.training import models

PREDICTIONS = "features.predictions"
PROCESSING = "/opt/ml/processing"


def start(run_id: str, config: RunConfig, features: dict[str, Any] | None = None) -> ScoringRun:
    """StartScoring: CreateProcessingJob for the run's snapshot and the newest model, or why not."""
    idle = ScoringRun(run_id=run_id, status="COMPLETED", config=config)
    snapshot = ((features or {}).get("result") or {}).get("dataset")
    if not snapshot:
        return _skip(idle, "no dataset snapshot from this run")
    dataset_id = str(snapshot["dataset_id"])
    model = models.newest()
    if model is None:
        return _skip(idle.model_copy(update={"dataset_id": dataset_id}), "no model has been trained yet")
    cfg = settings()
    deployment = endpoint.ensure_serving(model, cfg)
    idle = idle.model_copy(update={"endpoint": deployment})
    marker = layout.scored_marker(dataset_id, model["model_id"])
    if storage.exists(cfg.lake_bucket, marker):
        reason = f"dataset {dataset_id} was scored with model {model['model_id']} already"
        return _skip(
            idle.model_copy(update={"dataset_id": dataset_id, "model_id": model["model_id"]}), reason
        )
    output = f"s3://{cfg.lake_bucket}/{layout.scoring_prefix(run_id)}"
    dataset_uri = f"s3://{cfg.lake_bucket}/{layout.dataset_prefix(dataset_id)}"
    name = job_name(run_id)
    _create_processing_job(storage.client("sagemaker"), cfg, name, model, dataset_uri, output)
    return idle.model_copy(
        update={
            "status": "IN_PROGRESS",
            "job": JobHandle(backend="sagemaker", job_id=name),
            "model_id": model["model_id"],
            "model_uri": model["model_uri"],
            "dataset_id": dataset_id,
            "dataset_uri": dataset_uri,
            "output_uri": output,
            "wait_seconds": config.poll_seconds,
        }
    )


def _skip(run: ScoringRun, reason: str) -> ScoringRun:
    logger.info("scoring skipped", extra={"reason": reason})
    return run.model_copy(update={"skipped": reason})


def processing_request(
    cfg: Settings, name: str, model: dict[str, Any], dataset_uri: str, output: str
) -> dict[str, Any]:
    """CreateProcessingJob's request: the model archive and the snapshot in, the predictions out."""
    if not (cfg.training_image_uri and cfg.training_role_arn):
        raise BackendJobFailed("the scoring job needs TRAINING_IMAGE_URI and TRAINING_ROLE_ARN")
    inputs = [
        _s3_input("model", model["model_uri"], f"{PROCESSING}/model", "S3Prefix"),
        _s3_input("dataset", dataset_uri, f"{PROCESSING}/dataset", "S3Prefix"),
    ]
    arguments = ["score", "--model-id", str(model["model_id"])]
    app: dict[str, Any] = {"ImageUri": cfg.training_image_uri, "ContainerArguments": arguments}
    if cfg.training_source_uri:
        # AWS's AutoGluon image in script mode: the job's code comes as the source tarball.
        tarball = cfg.training_source_uri.rsplit("/", 1)[-1]
        inputs.append(_s3_input("code", cfg.training_source_uri, f"{PROCESSING}/code", "S3Prefix"))
        app["ContainerEntrypoint"] = [
            "/bin/sh",
            "-c",
            f"mkdir -p /tmp/src && tar -xzf {PROCESSING}/code/{tarball} -C /tmp/src && cd /tmp/src && "
            'exec python3 -m training_job "$@"',
            "score",
        ]
    return {
        "ProcessingJobName": name,
        "RoleArn": cfg.training_role_arn,
        "AppSpecification": app,
        "ProcessingInputs": inputs,
        "ProcessingOutputConfig": {
            "Outputs": [
                {
                    "OutputName": "predictions",
                    "S3Output": {
                        "S3Uri": output,
                        "LocalPath": f"{PROCESSING}/output",
                        "S3UploadMode": "EndOfJob",
                    },
                }
            ]
        },
        "ProcessingResources": {
            "ClusterConfig": {
                "InstanceCount": 1,
                "InstanceType": cfg.scoring_instance_type,
                "VolumeSizeInGB": 30,
            }
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        "Tags": [{"Key": "mmpipe:job", "Value": "scoring"}],
    }


def _s3_input(name: str, uri: str, local: str, data_type: str) -> dict[str, Any]:
    return {
        "InputName": name,
        "S3Input": {
            "S3Uri": uri,
            "LocalPath": local,
            "S3DataType": data_type,
            "S3InputMode": "File",
            "S3DataDistributionType": "FullyReplicated",
        },
    }


def _create_processing_job(
    client: Any, cfg: Settings, name: str, model: dict[str, Any], dataset_uri: str, output: str
) -> None:
    request = processing_request(cfg, name, model, dataset_uri, output)
    try:
        client.create_processing_job(**request)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        if error.get("Code") != "ResourceInUse" and "unique" not in error.get("Message", "").lower():
            storage.reraise_transient(exc)
            raise
        logger.info("scoring job adopted", extra={"job": name})
    logger.info("scoring job started", extra={"job": name, "model_id": model["model_id"]})


def catalog(run: ScoringRun) -> ScoringRun:
    """CatalogScoring: commit the job's predictions (owned by the run) and mark the (snapshot, model) pair."""
    if run.job is None or run.output_uri is None:
        return run
    lake = settings().lake_bucket
    prefix = layout.scoring_prefix(run.run_id)
    predictions = pq.read_table(io.BytesIO(_get(lake, f"{prefix}predictions.parquet")))
    summary = json.loads(_get(lake, f"{prefix}scoring.json"))
    commit = commit_predictions(run.run_id, predictions)
    storage.write_json(
        lake,
        layout.scored_marker(run.dataset_id or "", run.model_id or ""),
        {"run_id": run.run_id, "job": run.job.job_id, "rows": commit.rows_added},
    )
    logger.info("scoring catalogued", extra={"job": run.job.job_id, "rows": commit.rows_added})
    return run.model_copy(update={"rows": commit.rows_added, "outcomes": summary.get("outcomes") or {}})


def commit_predictions(run_id: str, predictions: pa.Table) -> TableCommit:
    """features.predictions: the job's rows tagged with the run; a replay replaces the run's own rows."""
    from pyiceberg.expressions import EqualTo

    rows = predictions.append_column("run_id", pa.array([run_id] * predictions.num_rows, pa.string()))
    rows = rows.select(FEATURES_PREDICTIONS.names).cast(FEATURES_PREDICTIONS)
    return replace_rows(PREDICTIONS, rows, run_id, lambda _r: EqualTo("run_id", run_id))  # type: ignore[call-arg, arg-type]


def _get(bucket: str, key: str) -> bytes:
    body: bytes = storage.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    return body
