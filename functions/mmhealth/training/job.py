"""The training job of a run: the dataset snapshot in, a SageMaker training job (AutoGluon), metrics out.

Contract with the job (containers/training, `python -m training_job`; SageMaker training conventions):
- input channel `dataset`: s3://<lake>/datasets/<id>/ (dataset.parquet, manifest.json, patients.json);
- image: containers/training (its entry point is the job), or AWS's AutoGluon training image in script mode
  (TRAINING_SOURCE_URI: the tarball `make training-source` builds; sagemaker_program/submit_directory);
- hyperparameters (strings): time_limit, presets, seed, test_size, bootstrap, hyperparameters (optional);
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
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from typing import Any, Literal

import pyarrow as pa
from botocore.exceptions import ClientError

from mmhealth import polling, storage
from mmhealth.contracts import JobHandle, RunConfig, TableCommit, TrainingRun
from mmhealth.errors import BackendJobFailed
from mmhealth.lakehouse import layout
from mmhealth.lakehouse.catalog import replace_rows
from mmhealth.lakehouse.schemas import FEATURES_METRICS
from mmhealth.observability import logger
from mmhealth.settings import Settings, settings
from mmhealth.training import dataset, models

METRICS = "features.metrics"
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
    uri = f"s3://{cfg.lake_bucket}/{dataset.prefix(dataset_id)}"
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
    trained = _read_optional(lake, f"{dataset.prefix(dataset_id)}trained.json")
    if trained is not None:
        return f"dataset {dataset_id} already has a model (run {trained.get('run_id')})", None
    return "", dataset_id


# The training job needs this many positive and negative patients of an outcome to split and train it.
MIN_CASES_PER_CLASS = 5


def _too_few_cases(lake: str, dataset_id: str) -> str | None:
    """Why the snapshot cannot train any outcome (too few labelled patients), or None."""
    manifest = _read_optional(lake, f"{dataset.prefix(dataset_id)}manifest.json") or {}
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


def catalog(run: TrainingRun) -> TrainingRun:
    """CatalogTraining: unpack the job's outputs next to the run, commit features.metrics, mark the dataset
    trained, register the model (features.models); returns the run with the artifacts' URIs and the
    headline metrics."""
    if run.job is None:
        return run
    lake = settings().lake_bucket
    base = f"{prefix(run.run_id)}{run.job.job_id}/output/"
    reports = f"{prefix(run.run_id)}report/"
    with tarfile.open(fileobj=io.BytesIO(_get(lake, f"{base}output.tar.gz")), mode="r:gz") as archive:
        for member in archive.getmembers():
            name = member.name.removeprefix("./")
            extracted = archive.extractfile(member) if member.isfile() else None
            if extracted is not None and name in REPORT_FILES:
                storage.client("s3").put_object(
                    Bucket=lake, Key=f"{reports}{name}", Body=extracted.read(), **_content_type(name)
                )
    metrics = json.loads(_get(lake, f"{reports}metrics.json"))
    commit = commit_metrics(run.run_id, run.dataset_id or "", metrics)
    storage.write_json(
        lake,
        f"{dataset.prefix(run.dataset_id or '')}trained.json",
        {"run_id": run.run_id, "job": run.job.job_id, "model": f"s3://{lake}/{base}model.tar.gz"},
    )
    catalogued = run.model_copy(
        update={
            "model_uri": f"s3://{lake}/{base}model.tar.gz",
            "report_uri": f"s3://{lake}/{reports}report.html",
            "metrics_uri": f"s3://{lake}/{reports}metrics.json",
            "headline": headline_metrics(metrics),
        }
    )
    models.register(catalogued)
    logger.info("training catalogued", extra={"job": run.job.job_id, "metric_rows": commit.rows_added})
    return catalogued


def _get(bucket: str, key: str) -> bytes:
    body: bytes = storage.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    return body


def _content_type(name: str) -> dict[str, str]:
    types = {".html": "text/html; charset=utf-8", ".json": "application/json", ".csv": "text/csv"}
    suffix = name[name.rfind(".") :]
    return {"ContentType": types[suffix]} if suffix in types else {}


# ---------------------------------------------------------------------------------------- features.metrics


def metric_rows(run_id: str, dataset_id: str, metrics: dict[str, Any]) -> pa.Table:
    """metrics.json -> one features.metrics row per outcome x modality set x metric; the label-shuffle
    control's rows have modality_set "control"."""
    rows = []
    sets = {o: dict(by_set) for o, by_set in metrics.get("metrics", {}).items()}
    for outcome, control in metrics.get("control", {}).items():
        sets.setdefault(outcome, {})["control"] = control
    for outcome, by_set in sets.items():
        counts = metrics.get("counts", {}).get(outcome, {})
        for modality_set, by_metric in by_set.items():
            for metric, estimate in by_metric.items():
                rows.append(
                    {
                        "run_id": run_id,
                        "dataset_id": dataset_id,
                        "outcome": outcome,
                        "modality_set": modality_set,
                        "metric": metric,
                        "value": estimate.get("value"),
                        "ci_low": estimate.get("ci_low"),
                        "ci_high": estimate.get("ci_high"),
                        "n_train": counts.get("n_train"),
                        "n_test": counts.get("n_test"),
                    }
                )
    return pa.Table.from_pylist(rows, schema=FEATURES_METRICS)


def commit_metrics(run_id: str, dataset_id: str, metrics: dict[str, Any]) -> TableCommit:
    """features.metrics keeps every trained model's metrics; a run's rows are owned by its run id."""
    from pyiceberg.expressions import EqualTo

    rows = metric_rows(run_id, dataset_id, metrics)
    return replace_rows(METRICS, rows, run_id, lambda _r: EqualTo("run_id", run_id))  # type: ignore[call-arg, arg-type]


def headline_metrics(metrics: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """Per outcome: ROC AUC and F1 of the all-modalities model (Notify and the run's output)."""
    full = (metrics.get("reference_sets") or {}).get("full", "clinical+genomic+imaging")
    headline = {}
    for outcome, by_set in metrics.get("metrics", {}).items():
        values = by_set.get(full) or {}
        headline[outcome] = {
            "roc_auc": (values.get("roc_auc") or {}).get("value"),
            "f1": (values.get("f1") or {}).get("value"),
        }
    return headline
