"""Every function in template.yaml has a sample event in events/, and each handler accepts its event.

The events are the ones `sam local invoke -e events/<name>.json <Function>` uses. They are chained: the
run in collect.json and prepare.json is the wave the trigger opens for trigger.json, the chunk in
genomic_import.json is the one Prepare writes, and so on; this test replays the chain in a moto account
seeded with the same files (tests/data/delivery), so an event that drifts from the code fails here.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from types import SimpleNamespace
from typing import Any

import boto3
import pandas as pd
import pytest
from botocore.stub import Stubber
from cfnlint.decode import decode

from mmhealth import storage
from mmhealth.lakehouse.catalog import NAMESPACES
from tests.conftest import REPO, stand_in_state_machine

EVENTS = REPO / "events"
DATA = REPO / "tests" / "data" / "delivery"


def _functions() -> dict[str, str]:
    template, errors = decode(str(REPO / "template.yaml"))
    assert not errors
    return {
        logical: resource["Properties"]["Handler"]
        for logical, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }


def event_name(logical_id: str) -> str:
    """GenomicImportFunction -> genomic_import"""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", logical_id.removesuffix("Function")).lower()


def _event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / f"{name}.json").read_text())


def _invoke(handler_path: str, event: dict[str, Any], context: Any) -> Any:
    module, _, func = handler_path.rpartition(".")
    handler = getattr(__import__(module, fromlist=[func]), func)
    return handler(event, context)


def test_every_function_has_an_event() -> None:
    missing = [name for name in map(event_name, _functions()) if not (EVENTS / f"{name}.json").exists()]
    assert missing == []


@pytest.fixture
def dev_account(aws: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """The dev stage's resource names, as the events use them, with the delivery's files in place."""
    lake = _event("radiomics_poll")["output_uri"].split("/")[2]
    landing = json.loads(_event("trigger")["Records"][0]["body"])["Records"][0]["s3"]["bucket"]["name"]
    for bucket in (lake, landing):
        aws.s3.create_bucket(Bucket=bucket)
    for record in _event("trigger")["Records"]:
        key = json.loads(record["body"])["Records"][0]["s3"]["object"]["key"]
        local = DATA / key.split("/", 2)[2]
        aws.s3.put_object(Bucket=landing, Key=key, Body=local.read_bytes())
    glue = boto3.client("glue", endpoint_url=aws.endpoint)
    for namespace in NAMESPACES:
        glue.create_database(DatabaseInput={"Name": f"mmpipe_dev_{namespace}"})
    monkeypatch.setenv("LAKE_BUCKET", lake)
    monkeypatch.setenv("GLUE_DATABASE_PREFIX", "mmpipe_dev_")
    monkeypatch.setenv("STATE_MACHINE_ARN", stand_in_state_machine(aws, "mmpipe-dev-pipeline"))
    aws.lake_dev = lake
    return aws


def test_the_event_chain_runs_through_every_handler(
    dev_account: SimpleNamespace, lambda_context, monkeypatch
) -> None:
    handlers = {event_name(k): v for k, v in _functions().items()}
    run_id = _event("prepare")["run_id"]

    # trigger.json: the delivery's first wave, the run named in collect.json and prepare.json
    assert _invoke(handlers["trigger"], _event("trigger"), lambda_context) == {"batchItemFailures": []}
    (execution,) = dev_account.sfn.list_executions(stateMachineArn=dev_account.state_machine)["executions"]
    assert execution["name"] == run_id == _event("collect")["run_id"]

    # collect.json (quiet period 0): the wave closes at once, with every delivered file
    collected = _invoke(handlers["collect"], _event("collect"), lambda_context)
    assert (collected["closed"], collected["objects"]) == (True, 12)

    prepared = _invoke(handlers["prepare"], _event("prepare"), lambda_context)
    files = {m: prepared[m]["files"] for m in ("genomic", "clinical", "imaging")}
    assert files == {"genomic": 3, "clinical": 2, "imaging": 6}
    assert (prepared["unknown"], prepared["config"]["poll_seconds"]) == (1, 5)
    assert prepared["genomic"]["chunks"][0] == _event("genomic_import")["chunk"]
    assert prepared["clinical"]["chunks"][0] == _event("clinical_import")["chunk"]
    assert prepared["imaging"]["chunks"][0] == _event("imaging_import")["chunk"]

    imported = _invoke(handlers["genomic_import"], _event("genomic_import"), lambda_context)
    # one staged part per table of the chunk: variants (2 VCFs) and clinvar
    assert (imported["status"], imported["parts"], imported["rows"], imported["quarantined"]) == (
        "COMPLETED",
        3,
        11,
        0,
    )
    catalogued = _invoke(handlers["genomic_catalog"], _event("genomic_catalog"), lambda_context)
    assert {c["table"]: c["rows_added"] for c in catalogued["commits"]} == {
        "genomic.variants": 7,
        "genomic.samples": 2,
        "genomic.clinvar": 2,
    }

    # clinical: 2 patients, 1 encounter, the BP panel as 2 rows + 1 LDL, 1 condition; one broken line
    imported = _invoke(handlers["clinical_import"], _event("clinical_import"), lambda_context)
    assert (imported["status"], imported["rows"], imported["quarantined"]) == ("COMPLETED", 7, 1)
    catalogued = _invoke(handlers["clinical_catalog"], _event("clinical_catalog"), lambda_context)
    assert {c["table"]: c["rows_added"] for c in catalogued["commits"]} == {
        "clinical.patient": 2,
        "clinical.encounter": 1,
        "clinical.observation": 3,
        "clinical.condition": 1,
    }

    # imaging: one 6-slice series of pt-0001, indexed and summarised
    imported = _invoke(handlers["imaging_import"], _event("imaging_import"), lambda_context)
    assert (imported["status"], imported["rows"], imported["quarantined"]) == ("COMPLETED", 6, 0)
    catalogued = _invoke(handlers["imaging_catalog"], _event("imaging_catalog"), lambda_context)
    assert {c["table"]: c["rows_added"] for c in catalogued["commits"]} == {
        "imaging.instances": 6,
        "imaging.series": 1,
    }

    # radiomics: the job is started on SageMaker (Stubber: the real service model checks the request),
    # polled, and its output (one series, as the job writes it) committed to features.radiomics
    run = _radiomics_chain(handlers, dev_account, lambda_context, monkeypatch)
    assert {c["table"]: c["rows_added"] for c in run["commits"]}["features.radiomics"] == 2

    features = _invoke(handlers["features"], _event("features"), lambda_context)
    assert features["patients"] == 2
    assert features["prevalence"]["hypertension"]["positives"] == 1
    assert features["unlinked_patients"] == 0
    assert features["genomic_patients"] == 2
    assert (features["dataset"]["rows"], features["dataset"]["run_id"]) == (2, run_id)

    # training: the run built a snapshot, so the job is started on SageMaker
    # (Stubber), polled, and its output (as SageMaker tars it) catalogued into features.metrics
    trained = _training_chain(handlers, dev_account, lambda_context, monkeypatch)
    assert trained["headline"]["hypertension"] == {"roc_auc": 0.75, "f1": 0.5}

    # scoring: the model just registered is applied to the run's snapshot (Processing job, Stubber), and
    # the job's predictions (as it writes them) committed to features.predictions
    scored = _scoring_chain(handlers, dev_account, lambda_context, monkeypatch, trained)
    assert (scored["rows"], scored["outcomes"]["hypertension"]["patients"]) == (2, 2)

    finalized = _invoke(handlers["finalize"], _event("finalize"), lambda_context)
    # notes.txt (quarantined by the trigger) and the broken NDJSON line
    assert (finalized["status"], finalized["quarantined"]) == ("SUCCEEDED", 2)

    failed = _invoke(handlers["chunk_failure"], _event("chunk_failure"), lambda_context)
    assert (failed["status"], failed["quarantined"]) == ("FAILED", 3)


def _radiomics_chain(
    handlers: dict[str, str], account: SimpleNamespace, context: Any, monkeypatch: Any
) -> Any:
    """radiomics_start -> radiomics_poll -> radiomics_catalog, SageMaker stubbed, the job's output emulated."""
    start = _event("radiomics_start")
    run_id = start["run_id"]
    job = _event("radiomics_poll")["job"]["job_id"]
    monkeypatch.setenv(
        "RADIOMICS_IMAGE_URI", "123456789012.dkr.ecr.us-east-1.amazonaws.com/mmpipe-radiomics:1"
    )
    monkeypatch.setenv("RADIOMICS_ROLE_ARN", "arn:aws:iam::123456789012:role/mmpipe-dev-RadiomicsJobRole")
    sagemaker = boto3.client("sagemaker", region_name="us-east-1")
    stubber = Stubber(sagemaker)
    stubber.add_response(
        "create_processing_job",
        {"ProcessingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:processing-job/{job}"},
    )
    described = {
        "ProcessingJobName": job,
        "ProcessingResources": {
            "ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.g4dn.xlarge", "VolumeSizeInGB": 30}
        },
        "AppSpecification": {"ImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/mmpipe-radiomics:1"},
        "ProcessingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:processing-job/{job}",
        "ProcessingJobStatus": "InProgress",
        "CreationTime": "2026-11-21T09:31:00Z",
    }
    stubber.add_response("describe_processing_job", described, {"ProcessingJobName": job})
    real_client = storage.client
    monkeypatch.setattr(storage, "client", lambda s: sagemaker if s == "sagemaker" else real_client(s))
    with stubber:
        started = _invoke(handlers["radiomics_start"], start, context)
        polled = _invoke(handlers["radiomics_poll"], started, context)
    stubber.assert_no_pending_responses()
    assert (started["status"], started["series"], started["job"]) == (
        "IN_PROGRESS",
        1,
        {"backend": "sagemaker", "job_id": job},
    )
    manifest_keys = list(storage.list_keys(account.lake_dev, f"radiomics/{run_id}/manifests/"))
    manifest = storage.read_json(account.lake_dev, manifest_keys[0])
    assert (manifest["patient_id"], len(manifest["instances"])) == ("pt-0001", 6)
    assert (polled["status"], polled["attempt"]) == ("IN_PROGRESS", 1)
    result = {
        "series_uid": manifest["series_uid"],
        "patient_id": "pt-0001",
        "study_uid": manifest["study_uid"],
        "study_date": manifest["study_date"],
        "status": "ok",
        "error": None,
        "model_version": "segmenter-v1.pt:c6c940444393",
        "params_version": "radiomics-v1.yaml:0123456789ab",
        "device": "cuda",
        "seconds": {"load": 0.1, "segment": 0.2, "extract": 0.5, "total": 0.8},
        "regions": [
            {"label": 1, "name": "lesion", "voxels": 0, "volume_mm3": 0.0, "features": None},
            {
                "label": 2,
                "name": "hippocampus",
                "voxels": 12,
                "volume_mm3": 1500.0,
                "features": {"original_shape_VoxelVolume": 1500.0, "original_firstorder_Mean": 402.5},
            },
        ],
    }
    key = f"radiomics/{run_id}/output/features/{manifest['series_uid']}.json"
    storage.write_json(account.lake_dev, key, result)
    catalog = {**polled, "status": "COMPLETED"}
    return _invoke(handlers["radiomics_catalog"], catalog, context)


def _training_chain(
    handlers: dict[str, str], account: SimpleNamespace, context: Any, monkeypatch: Any
) -> Any:
    """training_start -> training_poll -> training_catalog, SageMaker stubbed, the job's output emulated."""
    start, polled_event = _event("training_start"), _event("training_poll")
    job, output = polled_event["job"]["job_id"], polled_event["output_uri"]
    image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mmpipe-training:1"
    monkeypatch.setenv("TRAINING_IMAGE_URI", image)
    monkeypatch.setenv("TRAINING_ROLE_ARN", "arn:aws:iam::123456789012:role/mmpipe-dev-TrainingJobRole")
    sagemaker = boto3.client("sagemaker", region_name="us-east-1")
    stubber = Stubber(sagemaker)
    arn = f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{job}"
    described = {
        "TrainingJobName": job, "TrainingJobArn": arn, "TrainingJobStatus": "Completed",
        "SecondaryStatus": "Completed", "CreationTime": "2026-11-21T09:35:00Z",
        "ModelArtifacts": {"S3ModelArtifacts": f"{output}{job}/output/model.tar.gz"},
        "AlgorithmSpecification": {"TrainingImage": image, "TrainingInputMode": "File"},
        "ResourceConfig": {"InstanceType": "ml.m5.2xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 7200},
    }  # fmt: skip
    stubber.add_response("describe_training_job", described, {"TrainingJobName": job})
    real_client = storage.client
    monkeypatch.setattr(storage, "client", lambda s: sagemaker if s == "sagemaker" else real_client(s))
    # The sample delivery's snapshot (2 patients) is too small to train: the real gate says so ...
    skipped = _invoke(handlers["training_start"], start, context)
    assert (skipped["status"], skipped["job"]) == ("COMPLETED", None)
    assert "too few labelled patients" in skipped["skipped"]
    # ... so the chain goes on from training_poll.json: a job started on a trainable snapshot
    with stubber:
        polled = _invoke(handlers["training_poll"], polled_event, context)
    assert polled["status"] == "COMPLETED"
    full = "clinical+genomic+imaging"
    metrics = {
        "reference_sets": {"full": full, "baseline": "clinical"},
        "counts": {"hypertension": {"n_train": 1, "n_test": 1}},
        "metrics": {
            "hypertension": {
                full: {
                    "roc_auc": {"value": 0.75, "ci_low": 0.5, "ci_high": 1.0},
                    "f1": {"value": 0.5, "ci_low": 0.0, "ci_high": 1.0},
                }
            }
        },
        "control": {},
    }
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        body = json.dumps(metrics).encode()
        info = tarfile.TarInfo("metrics.json")
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    bucket, _, prefix = output.removeprefix("s3://").partition("/")
    account.s3.put_object(Bucket=bucket, Key=f"{prefix}{job}/output/output.tar.gz", Body=archive.getvalue())
    return _invoke(handlers["training_catalog"], _event("training_catalog"), context)


def _scoring_chain(
    handlers: dict[str, str], account: SimpleNamespace, context: Any, monkeypatch: Any, trained: Any
) -> Any:
    """scoring_start -> scoring_poll -> scoring_catalog, SageMaker stubbed, the job's output emulated."""
    polled_event = _event("scoring_poll")
    job = polled_event["job"]["job_id"]
    assert polled_event["model_uri"] == trained["model_uri"]
    sagemaker = boto3.client("sagemaker", region_name="us-east-1")
    stubber = Stubber(sagemaker)
    arn = f"arn:aws:sagemaker:us-east-1:123456789012:processing-job/{job}"
    stubber.add_response("create_processing_job", {"ProcessingJobArn": arn})
    described = {
        "ProcessingJobName": job, "ProcessingJobArn": arn, "ProcessingJobStatus": "Completed",
        "CreationTime": "2026-11-21T09:40:00Z",
        "AppSpecification": {"ImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/mmpipe-training:1"},
        "ProcessingResources": {
            "ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.xlarge", "VolumeSizeInGB": 30}
        },
    }  # fmt: skip
    stubber.add_response("describe_processing_job", described, {"ProcessingJobName": job})
    real_client = storage.client
    monkeypatch.setattr(storage, "client", lambda s: sagemaker if s == "sagemaker" else real_client(s))
    with stubber:
        started = _invoke(handlers["scoring_start"], _event("scoring_start"), context)
        polled = _invoke(handlers["scoring_poll"], {**polled_event, "attempt": 2}, context)
    stubber.assert_no_pending_responses()
    assert {k: started[k] for k in ("status", "job", "model_id", "dataset_id", "output_uri")} == {
        k: polled_event[k] for k in ("status", "job", "model_id", "dataset_id", "output_uri")
    }
    assert polled["status"] == "COMPLETED"
    now = pd.Timestamp("2026-11-21T09:41:00Z")
    predictions = pd.DataFrame(
        {
            "patient_id": ["pt-0001", "pt-0002"],
            "outcome": "hypertension",
            "probability": [0.81, 0.12],
            "decision": [True, False],
            "threshold": 0.4,
            "threshold_criterion": "F1 on out-of-fold predictions",
            "modality_set": "clinical+genomic+imaging",
            "modalities": ["clinical+genomic+imaging", "clinical+genomic"],
            "in_training_split": [True, False],
            "model_id": polled_event["model_id"],
            "dataset_id": polled_event["dataset_id"],
            "scored_at": now,
        }
    )
    bucket, _, prefix = polled_event["output_uri"].removeprefix("s3://").partition("/")
    body = io.BytesIO()
    predictions.to_parquet(body, index=False)
    account.s3.put_object(Bucket=bucket, Key=f"{prefix}predictions.parquet", Body=body.getvalue())
    summary = {"outcomes": {"hypertension": {"patients": 2, "decided_positive": 1, "threshold": 0.4}}}
    account.s3.put_object(Bucket=bucket, Key=f"{prefix}scoring.json", Body=json.dumps(summary).encode())
    catalogued = _invoke(handlers["scoring_catalog"], _event("scoring_catalog"), context)
    # the (snapshot, model) pair is marked: the same run's StartScoring replayed now skips
    with stubber:
        replayed = _invoke(handlers["scoring_start"], _event("scoring_start"), context)
    assert "scored with model" in replayed["skipped"]
    return catalogued


def test_the_poll_event_reads_the_healthomics_job(
    dev_account: SimpleNamespace, lambda_context, monkeypatch
) -> None:
    event = _event("genomic_poll")
    omics = boto3.client("omics", region_name="us-east-1")
    stubber = Stubber(omics)
    stubber.add_response(
        "get_variant_import_job",
        {
            "id": event["job"]["job_id"],
            "destinationName": "mmpipe_variants",
            "roleArn": "arn:aws:iam::123456789012:role/omics-import",
            "status": "IN_PROGRESS",
            "statusMessage": "",
            "creationTime": "2026-11-21T09:30:00Z",
            "updateTime": "2026-11-21T09:31:00Z",
            "items": [{"source": "s3://b/k.vcf.gz", "jobStatus": "IN_PROGRESS"}],
            "runLeftNormalization": False,
        },
        {"jobId": event["job"]["job_id"]},
    )
    real_client = storage.client
    monkeypatch.setattr(
        storage, "client", lambda service: omics if service == "omics" else real_client(service)
    )
    handlers = {event_name(k): v for k, v in _functions().items()}
    with stubber:
        polled = _invoke(handlers["genomic_poll"], event, lambda_context)
    assert (polled["status"], polled["attempt"], polled["wait_seconds"]) == ("IN_PROGRESS", 1, 8)


def test_the_clinical_poll_event_reads_the_healthlake_job(
    dev_account: SimpleNamespace, lambda_context, monkeypatch
) -> None:
    event = _event("clinical_poll")
    datastore = "9f2c4e7a1b3d5f60718293a4b5c6d7e8"
    monkeypatch.setenv("HEALTHLAKE_DATASTORE_ID", datastore)
    healthlake = boto3.client("healthlake", region_name="us-east-1")
    stubber = Stubber(healthlake)
    stubber.add_response(
        "describe_fhir_import_job",
        {
            "ImportJobProperties": {
                "JobId": event["job"]["job_id"],
                "JobStatus": "IN_PROGRESS",
                "SubmitTime": "2026-11-21T09:30:00Z",
                "DatastoreId": datastore,
                "InputDataConfig": {"S3Uri": "s3://b/healthlake/run/clinical-0000/input/"},
                "DataAccessRoleArn": "arn:aws:iam::123456789012:role/healthlake-import",
            }
        },
        {"DatastoreId": datastore, "JobId": event["job"]["job_id"]},
    )
    real_client = storage.client
    monkeypatch.setattr(storage, "client", lambda s: healthlake if s == "healthlake" else real_client(s))
    handlers = {event_name(k): v for k, v in _functions().items()}
    with stubber:
        polled = _invoke(handlers["clinical_poll"], event, lambda_context)
    assert (polled["status"], polled["attempt"], polled["wait_seconds"]) == ("IN_PROGRESS", 1, 8)
    stubber.assert_no_pending_responses()


def test_with_the_healthomics_backend_the_import_starts_a_job_and_hands_over_to_polling(
    dev_account: SimpleNamespace, lambda_context, monkeypatch
) -> None:
    # Given the delivery's chunk in place (the trigger recorded it, Collect closed the wave, Prepare wrote
    # the chunk) and the HealthOmics backend configured
    handlers = {event_name(k): v for k, v in _functions().items()}
    for name in ("trigger", "collect", "prepare"):
        _invoke(handlers[name], _event(name), lambda_context)
    monkeypatch.setenv("HEALTHOMICS_VARIANT_STORE", "mmpipe_variants")
    monkeypatch.setenv("HEALTHOMICS_ROLE_ARN", "arn:aws:iam::123456789012:role/omics-import")
    event = _event("genomic_import")
    event["config"] = {**event["config"], "genomic_backend": "healthomics"}
    omics = boto3.client("omics", region_name="us-east-1")
    stubber = Stubber(omics)
    stubber.add_response("list_variant_import_jobs", {"variantImportJobs": []}, None)
    stubber.add_response("start_variant_import_job", {"jobId": "4842b5fa-2c39-4e0e-9c7a-1b2a3c4d5e6f"}, None)
    real_client = storage.client
    monkeypatch.setattr(
        storage, "client", lambda service: omics if service == "omics" else real_client(service)
    )

    # When the chunk is imported
    with stubber:
        status = _invoke(handlers["genomic_import"], event, lambda_context)

    # Then the lakehouse parts are staged and the chunk waits for the job
    assert (status["status"], status["parts"], status["wait_seconds"]) == ("IN_PROGRESS", 3, 5)
    assert status["job"] == {"backend": "healthomics", "job_id": "4842b5fa-2c39-4e0e-9c7a-1b2a3c4d5e6f"}
    stubber.assert_no_pending_responses()
