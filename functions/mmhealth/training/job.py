"""The training job of a run: the dataset snapshot in, a SageMaker training job (AutoGluon), metrics out.

Contract with the job (containers/training, `python -m training_job`; SageMaker training conventions):
- input channel `dataset`: s3://<lake>/datasets/<id>/ (dataset.parquet, manifest.json, patients.json);
- image: containers/training (its entry point is the job), or AWS's AutoGluon training image in script mode
  (TRAINING_SOURCE_URI: the tarball `make training-source` builds; sagemaker_program/submit_directory);
- hyperparameters (strings): time_limit, presets, seed, test_size, bootstrap; optional: hyperparameters,
  label_shuffle_permutations, oof_folds (the job's defaults when absent);
- output: SageMaker tars /opt/ml/model into <S3OutputPath>/<job>/output/model.tar.gz (the predictors and
  model_card.json) and /opt/ml/output/data into .../output/output.tar.gz (metrics.json, report.html,
  leaderboard.csv, feature_importance.csv, predictions.parquet); a failure's reason is the job's
  FailureReason (the job writes /opt/ml/output/failure).

What a run trains (StartTraining): the dataset snapshot its own Features step built, unless training is
off, the run built none (its rows did not change, or no patient has labels yet), the snapshot has too few
labelled patients, or a model of that snapshot exists already (`datasets/<id>/trained.json`). Otherwise the
run's TrainingRun says why it skipped. One training job per run; a run is one wave of one delivery
(mmhealth.waves), so a delivery trains once. Started and polled here, never `.sync`; locally the runtime
answers CreateTrainingJob/DescribeTrainingJob by running the same entry point in a subprocess.

Idempotency: the job name derives from the run id; a retried start that finds the name taken adopts it.

Start and Poll are here and read only S3 and SageMaker, so those functions ship the core set; the Catalog
step commits to Iceberg and is mmhealth.training.catalog (functions/Makefile).
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

from botocore.exceptions import ClientError

from mmhealth import polling, storage
from mmhealth.contracts import JobHandle, RunConfig, TrainingRun
from mmhealth.errors import BackendJobFailed
from mmhealth.lakehouse import layout
from mmhealth.observability import logger
from mmhealth.settings import Settings, settings

DATASET_CHANNEL = "dataset"
REPORT_FILES = (
    "metrics.json",
    "report.html",
    "leaderboard.csv",
    "feature_importance.csv",
    "predictions.parquet",
)


def prefix(run_id: str) -> str:
    return layout.training_prefix(run_id)


def job_name(run_id: str) -> str:
    """`mmpipe-train-<20 hex of sha256(run)>`: within SageMaker's name rules (<= 63, [A-Za-z0-9-])."""
    return f"mmpipe-train-{hashlib.sha256(run_id.encode()).hexdigest()[:20]}"


def hyperparameters(config: RunConfig, source_uri: str | None = None) -> dict[str, str]:
    """SageMaker passes hyperparameters as strings. With `source_uri` (AWS's AutoGluon training image in
    script mode) the image's toolkit is told which script of which tarball to run."""
    values = {
        "time_limit": str(config.training_time_limit),
        "presets": config.training_presets,
        "seed": str(config.training_seed),
        "test_size": str(config.training_test_size),
        "bootstrap": str(config.training_bootstrap),
    }
    if config.training_hyperparameters:
        values["hyperparameters"] = config.training_hyperparameters
    if config.training_permutations is not None:
        values["label_shuffle_permutations"] = str(config.training_permutations)
    if config.training_oof_folds is not None:
        values["oof_folds"] = str(config.training_oof_folds)
    if source_uri:
        values |= {"sagemaker_program": "train.py", "sagemaker_submit_directory": source_uri}
    return values


# ------------------------------------------------------------------------------------ the three steps


def start(run_id: str, config: RunConfig, features: dict[str, Any] | None = None) -> TrainingRun:
    """StartTraining: CreateTrainingJob on the run's snapshot; COMPLETED with `skipped` when nothing to
    train (see the module docstring). `features` is the run's Features outcome ({"result": ...})."""
    idle = TrainingRun(run_id=run_id, status="COMPLETED", config=config)
    reason, dataset_id = _what_to_train(config, (features or {}).get("result") or {})
    if dataset_id is None:
        logger.info("training skipped", extra={"reason": reason})
        return idle.model_copy(update={"skipped": reason})
    cfg = settings()
    name = job_name(run_id)
    output = f"s3://{cfg.lake_bucket}/{prefix(run_id)}"
    uri = f"s3://{cfg.lake_bucket}/{layout.dataset_prefix(dataset_id)}"
    job = _create_training_job(storage.client("sagemaker"), cfg, name, uri, output, config)
    return idle.model_copy(
        update={
            "status": "IN_PROGRESS",
            "job": job,
            "dataset_id": dataset_id,
            "dataset_uri": uri,
            "wait_seconds": config.poll_seconds,
            "output_uri": output,
        }
    )


def _what_to_train(config: RunConfig, features: dict[str, Any]) -> tuple[str, str | None]:
    """(why not, None) or ("", the dataset id to train): see the module docstring."""
    if not config.training:
        return "training is off for this run", None
    snapshot = features.get("dataset")
    if not snapshot:
        why = features.get("reason") if features.get("skipped") else "no patient has labels yet"
        return f"no dataset snapshot from this run: {why}", None
    dataset_id = str(snapshot["dataset_id"])
    lake = settings().lake_bucket
    too_few = _too_few_cases(lake, dataset_id)
    if too_few is not None:
        return too_few, None
    trained = _read_optional(lake, f"{layout.dataset_prefix(dataset_id)}trained.json")
    if trained is not None:
        return f"dataset {dataset_id} already has a model (run {trained.get('run_id')})", None
    return "", dataset_id


# The training job needs this many positive and negative patients of an outcome to split and train it.
MIN_CASES_PER_CLASS = 5


def _too_few_cases(lake: str, dataset_id: str) -> str | None:
    """Why the snapshot cannot train any outcome (too few labelled patients), or None."""
    manifest = _read_optional(lake, f"{layout.dataset_prefix(dataset_id)}manifest.json") or {}
    counts = {
        outcome: (int(c.get("positives", 0)), int(c.get("eligible", 0)) - int(c.get("positives", 0)))
        for outcome, c in (manifest.get("prevalence") or {}).items()
    }
    if any(min(pair) >= MIN_CASES_PER_CLASS for pair in counts.values()):
        return None
    shown = ", ".join(f"{o} {p}+/{n}-" for o, (p, n) in counts.items()) or "no outcome"
    return (
        f"dataset {dataset_id} has too few labelled patients to train ({shown}; at least "
        f"{MIN_CASES_PER_CLASS} positive and {MIN_CASES_PER_CLASS} negative per outcome)"
    )


def _read_optional(bucket: str, key: str) -> dict[str, Any] | None:
    """The JSON object at `key`, or None when there is none."""
    try:
        return dict(storage.read_json(bucket, key))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise


def _create_training_job(
    client: Any, cfg: Settings, name: str, dataset_uri: str, output: str, config: RunConfig
) -> JobHandle:
    if not (cfg.training_image_uri and cfg.training_role_arn):
        raise BackendJobFailed("the training job needs TRAINING_IMAGE_URI and TRAINING_ROLE_ARN")
    request = {
        "TrainingJobName": name,
        "RoleArn": cfg.training_role_arn,
        "AlgorithmSpecification": {"TrainingImage": cfg.training_image_uri, "TrainingInputMode": "File"},
        "HyperParameters": hyperparameters(config, cfg.training_source_uri),
        "InputDataConfig": [
            {
                "ChannelName": DATASET_CHANNEL,
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": dataset_uri,
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
            }
        ],
        "OutputDataConfig": {"S3OutputPath": output},
        "ResourceConfig": {
            "InstanceType": cfg.training_instance_type,
            "InstanceCount": 1,
            "VolumeSizeInGB": 30,
        },
        # Every predictor's time limit, for 4 outcomes x 6 fits, plus evaluation and the report.
        "StoppingCondition": {"MaxRuntimeInSeconds": min(5 * 86400, 30 * config.training_time_limit + 3600)},
        "Tags": [{"Key": "mmpipe:job", "Value": "training"}],
    }
    try:
        arn = client.create_training_job(**request)["TrainingJobArn"]
    except ClientError as exc:
        error = exc.response.get("Error", {})
        if error.get("Code") != "ResourceInUse" and "unique" not in error.get("Message", "").lower():
            storage.reraise_transient(exc)
            raise
        arn = client.describe_training_job(TrainingJobName=name)["TrainingJobArn"]
        logger.info("training job adopted", extra={"job": name})
    logger.info("training job started", extra={"job": name, "arn": arn})
    return JobHandle(backend="sagemaker", job_id=name)


_RUNNING = {"InProgress", "Stopping"}


def job_status(client: Any, job: JobHandle) -> tuple[Literal["IN_PROGRESS", "COMPLETED", "FAILED"], str]:
    described = client.describe_training_job(TrainingJobName=job.job_id)
    status, reason = described["TrainingJobStatus"], described.get("FailureReason") or ""
    if status in _RUNNING:
        return "IN_PROGRESS", ""
    if status == "Completed":
        return "COMPLETED", ""
    return "FAILED", f"training job {job.job_id} {status}: {reason or 'no reason given'}"


def poll(run: TrainingRun) -> TrainingRun:
    """PollTraining: one look at the job; raises BackendJobFailed (the run fails, with the cause)."""
    assert run.job is not None
    job = run.job
    return polling.poll_job(run, "training", lambda: job_status(storage.client("sagemaker"), job))
