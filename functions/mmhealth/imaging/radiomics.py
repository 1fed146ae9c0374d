"""The radiomics job of a run: series manifests in, a SageMaker Processing or AWS Batch job, rows out.

Contract with the job (containers/radiomics, `python -m radiomics_job`):
- input: one JSON manifest per consistent series under s3://<lake>/radiomics/<run>/manifests/
  `{"series_uid", "patient_id", "study_uid", "study_date", "instances": ["s3://<landing>/<key>", ...]}`;
- output: s3://<lake>/radiomics/<run>/output/features/<series_uid>.json (status ok|error, regions with
  their pyradiomics features, model and parameter versions, `images`: the series' pictures, keys relative
  to output/, or null), features/<series_uid>/thumbnail.png and overlay.png, masks/<series_uid>.nii.gz and
  job.json.

SageMaker Processing gets the manifests as an S3Prefix input sharded by key (ShardedByS3Key), so N
instances split the series between them; AWS Batch gets the prefixes as arguments (an array job of N
children shards by AWS_BATCH_JOB_ARRAY_INDEX). Both are started and polled here - never `.sync` - so the
state machine's Wait/Poll loop and the local runtime (which answers these calls by running the same entry
point in a subprocess) treat them like the Health services' imports.

Idempotency: the job name derives from the run id. A retried start that finds the name taken (SageMaker:
ValidationException "...must be unique..."; Batch: a job of that name in the queue) adopts that job.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any, Literal

import pyarrow as pa
from botocore.exceptions import ClientError
from pyiceberg.expressions import EqualTo, In

from mmhealth import modality, polling, storage
from mmhealth.contracts import CatalogResult, JobHandle, RadiomicsRun, RunConfig, RunManifest
from mmhealth.errors import BackendJobFailed
from mmhealth.lakehouse import layout
from mmhealth.lakehouse.catalog import read_table, replace_rows
from mmhealth.lakehouse.layout import RunPaths
from mmhealth.lakehouse.schemas import FEATURES_RADIOMICS
from mmhealth.modality import FileGroupProblem
from mmhealth.observability import logger
from mmhealth.settings import Settings, settings

RADIOMICS = "features.radiomics"
BACKENDS = ("sagemaker", "batch")
MANIFESTS = "/opt/ml/processing/input/manifests"
OUTPUT = "/opt/ml/processing/output"


def prefix(run_id: str) -> str:
    return layout.radiomics_prefix(run_id)


def job_name(run_id: str) -> str:
    """`mmpipe-radiomics-<20 hex of sha256(run)>`: within both services' name rules (<= 63, [A-Za-z0-9-])."""
    return f"mmpipe-radiomics-{hashlib.sha256(run_id.encode()).hexdigest()[:20]}"


def write_manifests(run_id: str, lake: str) -> int:
    """One manifest per series this run wrote to imaging.series (and `series.json`: series -> the
    instances digest the job is computed on); returns how many series."""
    series = read_table("imaging.series", row_filter=EqualTo("run_id", run_id))  # type: ignore[call-arg, arg-type]
    if series is None or series.num_rows == 0:
        return 0
    uids = series["series_uid"].to_pylist()
    instances = read_table(
        "imaging.instances",
        columns=["series_uid", "source_key"],
        row_filter=In("series_uid", uids),  # type: ignore[call-arg, arg-type]
    )
    landing = RunManifest.model_validate(storage.read_json(lake, RunPaths(run_id).manifest)).landing_bucket
    keys: dict[str, list[str]] = {}
    for uid, key in zip(
        (instances["series_uid"].to_pylist() if instances is not None else []),
        (instances["source_key"].to_pylist() if instances is not None else []),
        strict=True,
    ):
        keys.setdefault(uid, []).append(key)
    for row in series.to_pylist():
        manifest = {
            "series_uid": row["series_uid"],
            "patient_id": row["patient_id"],
            "study_uid": row["study_uid"],
            "study_date": row["study_date"].isoformat() if row["study_date"] else None,
            "instances": [f"s3://{landing}/{k}" for k in sorted(set(keys.get(row["series_uid"], [])))],
        }
        storage.write_json(lake, f"{prefix(run_id)}manifests/{row['series_uid']}.json", manifest)
    digests = dict(zip(uids, series["instances_digest"].to_pylist(), strict=True))
    storage.write_json(lake, f"{prefix(run_id)}series.json", digests)
    return series.num_rows


def start_job(client: Any, cfg: Settings, run_id: str, series: int) -> JobHandle:
    """Start (or adopt) the run's job on the configured backend; raises BackendJobFailed on a bad setup."""
    if cfg.radiomics_backend not in BACKENDS:
        raise BackendJobFailed(f"RADIOMICS_BACKEND must be one of {BACKENDS}, not {cfg.radiomics_backend!r}")
    if not cfg.radiomics_image_uri and cfg.radiomics_backend == "sagemaker":
        raise BackendJobFailed("the radiomics job needs RADIOMICS_IMAGE_URI (the container image)")
    name = job_name(run_id)
    base = f"s3://{cfg.lake_bucket}/{prefix(run_id)}"
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


def read_results(lake: str, run_id: str) -> list[dict[str, Any]]:
    """Every per-series result the job wrote (features/<series_uid>.json), in series order."""
    keys = sorted(
        k for k in storage.list_keys(lake, f"{prefix(run_id)}output/features/") if k.endswith(".json")
    )
    return [storage.read_json(lake, k) for k in keys]


def feature_rows(
    results: Iterable[dict[str, Any]], run_id: str, digests: Mapping[str, str | None] | None = None
) -> pa.Table:
    """The successful series' regions as features.radiomics rows (one per series x region), each with the
    instances digest of the series version it was computed on (`digests`, from the run's series.json).

    A feature value may be null: the job writes null for a value pyradiomics gave as NaN or infinite (a
    texture of a tiny or flat region) and names it in the region's `features_not_finite`; it stays null
    here (a missing value downstream), as does a non-finite number should one arrive.

    `thumbnail_key` / `overlay_key`: the lake keys of the series' pictures (the same on each of its rows),
    null when the job drew none (`images` null: the cause is in the document's `images_error`)."""
    digests = digests or {}
    rows = []
    for result in results:
        if result.get("status") != "ok":
            continue
        study_date = result.get("study_date")
        pictures = _picture_keys(result.get("images"), run_id)
        for region in result.get("regions", []):
            rows.append(
                {
                    "series_uid": result["series_uid"],
                    "patient_id": result["patient_id"],
                    "study_uid": result.get("study_uid"),
                    "study_date": date.fromisoformat(study_date) if study_date else None,
                    "region_label": int(region["label"]),
                    "region": region["name"],
                    "voxels": int(region["voxels"]),
                    "volume_mm3": float(region["volume_mm3"]),
                    "features": _features(region.get("features")),
                    "model_version": result["model_version"],
                    "params_version": result["params_version"],
                    "device": result.get("device"),
                    "seconds": (result.get("seconds") or {}).get("total"),
                    "instances_digest": digests.get(result["series_uid"]),
                    **pictures,
                    "source_key": f"{prefix(run_id)}output/features/{result['series_uid']}.json",
                    "object_id": hashlib.sha256(result["series_uid"].encode()).hexdigest()[:16],
                    "run_id": run_id,
                }
            )
    return pa.Table.from_pylist(rows, schema=FEATURES_RADIOMICS)


def _picture_keys(images: Mapping[str, Any] | None, run_id: str) -> dict[str, str | None]:
    """The document's `images` (keys relative to the job's output) as the rows' lake keys."""
    output = f"{prefix(run_id)}output/"
    return {
        f"{name}_key": f"{output}{images[name]}" if images and isinstance(images.get(name), str) else None
        for name in ("thumbnail", "overlay")
    }


def _features(values: Mapping[str, Any] | None) -> list[tuple[str, float | None]] | None:
    """A region's {name: value} as the map column's sorted (name, value) pairs; null for no features."""
    pairs = []
    for name, value in sorted((values or {}).items()):
        number = None if value is None else float(value)
        pairs.append((name, number if number is not None and math.isfinite(number) else None))
    return pairs or None


# ------------------------------------------------------------------------------------ the three steps


def start(run_id: str, config: RunConfig, catalog: CatalogResult) -> RadiomicsRun:
    """RadiomicsStart: write the manifests and start the job; COMPLETED without a job when nothing to do."""
    cfg = settings()
    idle = RadiomicsRun(run_id=run_id, status="COMPLETED", config=config, catalog=catalog)
    if not config.radiomics:
        logger.info("radiomics disabled for this run")
        return idle
    series = write_manifests(run_id, cfg.lake_bucket)
    if series == 0:
        logger.info("no consistent series in this run: no radiomics job")
        return idle
    client = storage.client("sagemaker" if cfg.radiomics_backend == "sagemaker" else "batch")
    job = start_job(client, cfg, run_id, series)
    return idle.model_copy(
        update={
            "status": "IN_PROGRESS",
            "job": job,
            "series": series,
            "wait_seconds": config.poll_seconds,
            "output_uri": f"s3://{cfg.lake_bucket}/{prefix(run_id)}output/",
        }
    )


def poll(run: RadiomicsRun) -> RadiomicsRun:
    """RadiomicsPoll: one look at the job; raises BackendJobFailed (the branch fails, with the cause)."""
    assert run.job is not None
    job = run.job
    client = storage.client("sagemaker" if job.backend == "sagemaker" else "batch")
    return polling.poll_job(run, "radiomics", lambda: job_status(client, job))


def catalog(run: RadiomicsRun) -> CatalogResult:
    """RadiomicsCatalog: features.radiomics from the job's output; a series it could not process is
    quarantined (its files of this run) with the job's reason. Returns the imaging branch's whole result.

    Only results computed on the series' current version (the instances digest of its imaging.series row)
    are committed: another run may have re-judged the series meanwhile (more slices arrived; a later
    judgement found it inconsistent). Rows of series that lost their imaging.series row, or were computed on
    an older version, are removed in the same commit, so features.radiomics always describes imaging.series.
    """
    cfg = settings()
    lake = cfg.lake_bucket
    results = read_results(lake, run.run_id) if run.job is not None else []
    computed_on = _computed_on(lake, run.run_id) if run.job is not None else {}
    current = _current_digests()
    fresh = [r for r in results if _is_current(r["series_uid"], computed_on, current)]
    rows = feature_rows(fresh, run.run_id, computed_on)
    outdated = _outdated_radiomics(current)
    commits = list(run.catalog.commits)
    owned = sorted({r["series_uid"] for r in fresh} | outdated)
    if owned:
        commit = replace_rows(RADIOMICS, rows, run.run_id, lambda _rows: In("series_uid", owned))  # type: ignore[call-arg, arg-type]
        commits.append(commit)
        logger.info("table committed", extra=commit.model_dump())
    failed = [r for r in fresh if r.get("status") != "ok"]
    problems = [_problem(r) for r in failed]
    quarantined = modality.quarantine_groups(run.run_id, "imaging", problems)
    logger.info(
        "radiomics catalogued",
        extra={
            "series": len(results),
            "superseded": len(results) - len(fresh),
            "failed": len(failed),
            "rows": rows.num_rows,
            "outdated_removed": len(outdated),
            "quarantined": quarantined,
        },
    )
    return run.catalog.model_copy(
        update={"commits": commits, "quarantined": run.catalog.quarantined + quarantined}
    )


def _computed_on(lake: str, run_id: str) -> dict[str, str | None]:
    """series_uid -> the instances digest the run's job was given (written with the manifests)."""
    return dict(storage.read_json(lake, f"{prefix(run_id)}series.json"))


def _current_digests() -> dict[str, str | None]:
    """series_uid -> instances_digest of every imaging.series row."""
    series = read_table("imaging.series", columns=["series_uid", "instances_digest"])
    if series is None:
        return {}
    return dict(zip(series["series_uid"].to_pylist(), series["instances_digest"].to_pylist(), strict=True))


def _is_current(
    series_uid: str, computed_on: Mapping[str, str | None], current: Mapping[str, str | None]
) -> bool:
    return series_uid in current and computed_on.get(series_uid) == current[series_uid]


def _outdated_radiomics(current: Mapping[str, str | None]) -> set[str]:
    """Series in features.radiomics without an imaging.series row, or computed on another version of it."""
    radiomics = read_table(RADIOMICS, columns=["series_uid", "instances_digest"])
    if radiomics is None:
        return set()
    return {
        uid
        for uid, digest in zip(
            radiomics["series_uid"].to_pylist(), radiomics["instances_digest"].to_pylist(), strict=True
        )
        if uid not in current or (digest is not None and digest != current[uid])
    }


def _problem(result: dict[str, Any]) -> FileGroupProblem:
    """A failed series -> its files (object ids from imaging.instances) with the job's reason."""
    error = result.get("error") or {}
    instances = read_table(
        "imaging.instances",
        columns=["object_id"],
        row_filter=EqualTo("series_uid", result["series_uid"]),  # type: ignore[call-arg, arg-type]
    )
    object_ids = tuple(instances["object_id"].to_pylist()) if instances is not None else ()
    reason = str(error.get("reason") or "radiomics-failed")
    detail = f"series {result['series_uid']}: {error.get('detail') or 'the radiomics job gave no detail'}"
    return FileGroupProblem(object_ids=object_ids, reason=reason, detail=detail)
