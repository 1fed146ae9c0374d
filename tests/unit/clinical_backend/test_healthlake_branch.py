"""The clinical Import and Poll handlers with ClinicalBackend=healthlake: S3 in moto, HealthLake in a Stubber.

What is checked: the valid resources (and only those) are staged as NDJSON with Bundle references made
`Type/id`, the StartFHIRImportJob request is the one the service model accepts, a retried Import sends the
same ClientToken, the poll loop backs off while the job runs, and once it ends every rejected resource is
quarantined against the delivered file and line it came from - while the lakehouse rows are staged either way.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.stub import Stubber

from mmhealth import quarantine, storage
from mmhealth.clinical.healthlake import import_client_token, import_job_name
from mmhealth.clinical.importer import healthlake_prefix
from mmhealth.contracts import ChunkRef, ChunkStatus, RunConfig
from mmhealth.errors import PipelineError
from mmhealth.handlers import clinical_import, clinical_poll
from mmhealth.lakehouse.layout import RunPaths
from tests.unit.backend_fixtures import stubbed_in_handlers

DATASTORE = "9f2c4e7a1b3d5f60718293a4b5c6d7e8"
JOB_ID = "c145fbb27b192af392f8ce6e7838e34f"
ROLE = "arn:aws:iam::123456789012:role/mmpipe-dev-HealthLakeImportRole"
KMS_KEY = "arn:aws:kms:us-east-1:123456789012:key/fbbbfee3-20b3-42a5-a99d-c48c655ed545"
RUN_ID = "d1-0a1b2c3d4e5f60718293"

PATIENT_UUID = "5f4c2a1e-8d3b-4c6a-9e7f-0a1b2c3d4e5f"
BUNDLE = {
    "resourceType": "Bundle",
    "type": "transaction",
    "entry": [
        {
            "fullUrl": f"urn:uuid:{PATIENT_UUID}",
            "resource": {"resourceType": "Patient", "id": PATIENT_UUID, "gender": "female"},
            "request": {"method": "POST", "url": "Patient"},
        },
        {
            "fullUrl": "urn:uuid:7b1d0c9e-2f3a-4b5c-8d6e-1f2a3b4c5d6e",
            "resource": {
                "resourceType": "Condition",
                "subject": {"reference": f"urn:uuid:{PATIENT_UUID}"},
                "code": {"coding": [{"system": "http://snomed.info/sct", "code": "59621000"}]},
                "onsetDateTime": "2015-03-02",
            },
            "request": {"method": "POST", "url": "Condition"},
        },
    ],
}
NDJSON_LINES = [
    {"resourceType": "Patient", "id": "p2", "gender": "male"},
    "{not json",
    {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "subject": {"reference": "Patient/p2"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "effectiveDateTime": "2016-01-01",
        "valueQuantity": {"value": 72, "unit": "/min"},
    },
]


@pytest.fixture
def chunk(aws: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> ChunkRef:
    """A delivered Bundle and NDJSON file, their chunk written as the trigger writes it, HealthLake set up."""
    for key, body in {
        "incoming/d1/bundle.json": json.dumps(BUNDLE),
        "incoming/d1/mixed.ndjson": "".join(
            (line if isinstance(line, str) else json.dumps(line)) + "\n" for line in NDJSON_LINES
        ),
    }.items():
        aws.s3.put_object(Bucket=aws.landing, Key=key, Body=body.encode())
    files = []
    for key in ("incoming/d1/bundle.json", "incoming/d1/mixed.ndjson"):
        etag = aws.s3.head_object(Bucket=aws.landing, Key=key)["ETag"].strip('"')
        obj = {"bucket": aws.landing, "key": key, "etag": etag}
        files.append({"object": obj, "kind": "clinical"})
    key = RunPaths(RUN_ID).chunk("clinical", 0)
    storage.write_json(aws.lake, key, {"chunk_id": "clinical-0000", "modality": "clinical", "files": files})
    monkeypatch.setenv("HEALTHLAKE_DATASTORE_ID", DATASTORE)
    monkeypatch.setenv("HEALTHLAKE_ROLE_ARN", ROLE)
    monkeypatch.setenv("HEALTHLAKE_KMS_KEY_ID", KMS_KEY)
    return ChunkRef(run_id=RUN_ID, modality="clinical", chunk_id="clinical-0000", key=key, files=2)


@pytest.fixture
def healthlake(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubber]:
    """HealthLake as a Stubber (any call nobody stubbed fails); every other service stays moto."""
    with stubbed_in_handlers(monkeypatch, "healthlake") as stubber:
        yield stubber


def import_event(ref: ChunkRef, backend: str = "healthlake") -> dict[str, Any]:
    config = RunConfig(poll_seconds=5, clinical_backend=backend)  # type: ignore[arg-type]
    return {
        "chunk": ref.model_dump(),
        "config": config.model_dump(),
        "execution_started_at": "2026-11-22T09:00:00Z",
    }


def start_request(ref: ChunkRef, lake: str) -> dict[str, Any]:
    prefix = f"s3://{lake}/{healthlake_prefix(ref)}"
    return {
        "JobName": import_job_name(RUN_ID, ref.chunk_id),
        "DatastoreId": DATASTORE,
        "InputDataConfig": {"S3Uri": f"{prefix}input/"},
        "JobOutputDataConfig": {"S3Configuration": {"S3Uri": f"{prefix}output/", "KmsKeyId": KMS_KEY}},
        "DataAccessRoleArn": ROLE,
        "ClientToken": import_client_token(RUN_ID, ref.chunk_id),
    }


def expect_start(healthlake: Stubber, ref: ChunkRef, lake: str) -> None:
    """HealthLake accepts the chunk's StartFHIRImportJob, which must be exactly `start_request`."""
    healthlake.add_response(
        "start_fhir_import_job",
        {"JobId": JOB_ID, "JobStatus": "SUBMITTED", "DatastoreId": DATASTORE},
        start_request(ref, lake),
    )


def described(status: str, ref: ChunkRef, lake: str) -> dict[str, Any]:
    prefix = f"s3://{lake}/{healthlake_prefix(ref)}"
    return {
        "ImportJobProperties": {
            "JobId": JOB_ID,
            "JobStatus": status,
            "SubmitTime": datetime(2026, 11, 22, 9, 1, tzinfo=UTC),
            "DatastoreId": DATASTORE,
            "InputDataConfig": {"S3Uri": f"{prefix}input/"},
            "JobOutputDataConfig": {"S3Configuration": {"S3Uri": f"{prefix}output/", "KmsKeyId": KMS_KEY}},
            "DataAccessRoleArn": ROLE,
            **({"Message": "1 resource failed validation"} if status != "IN_PROGRESS" else {}),
        }
    }


def staged_resources(aws: SimpleNamespace, ref: ChunkRef) -> list[dict[str, Any]]:
    key = f"{healthlake_prefix(ref)}input/resources.ndjson"
    body = aws.s3.get_object(Bucket=aws.lake, Key=key)["Body"].read().decode()
    return [json.loads(line) for line in body.splitlines()]


def write_job_output(aws: SimpleNamespace, ref: ChunkRef, failures: list[tuple[int, str, str]]) -> None:
    """What HealthLake leaves under the output folder: manifest, SUCCESS lines and a FAILURE line each."""
    folder = f"{healthlake_prefix(ref)}output/{DATASTORE}-FHIR_IMPORT-{JOB_ID}/"
    failure_lines = [
        {
            "lineId": line_id,
            "resourceId": resource_id,
            "resourceType": resource_type,
            "UpdateResourceResponse": {
                "jsonBlob": {
                    "resourceType": "OperationOutcome",
                    "issue": [{"severity": "error", "code": "processing", "diagnostics": "invalid code"}],
                },
                "statusCode": 400,
            },
        }
        for line_id, resource_type, resource_id in failures
    ]
    scanned = len(staged_resources(aws, ref))
    manifest = {
        "numberOfResourcesScanned": scanned,
        "numberOfResourcesImportedSuccessfully": scanned - len(failures),
        "numberOfResourcesWithCustomerError": len(failures),
        "numberOfResourcesWithServerError": 0,
    }
    aws.s3.put_object(Bucket=aws.lake, Key=f"{folder}Manifest.json", Body=json.dumps(manifest).encode())
    body = "".join(json.dumps(line) + "\n" for line in failure_lines)
    aws.s3.put_object(Bucket=aws.lake, Key=f"{folder}FAILURE/resources.ndjson", Body=body.encode())


def test_the_valid_resources_are_staged_and_one_import_is_started(
    aws: SimpleNamespace, chunk: ChunkRef, healthlake: Stubber, lambda_context: Any
) -> None:
    # Given HealthLake accepting the import
    expect_start(healthlake, chunk, aws.lake)

    # When the chunk is imported
    status = ChunkStatus.model_validate(clinical_import.lambda_handler(import_event(chunk), lambda_context))

    # Then the lakehouse rows are staged, the bad line quarantined, and the chunk waits for the job
    assert (status.status, status.wait_seconds, status.quarantined) == ("IN_PROGRESS", 5, 1)
    assert status.job is not None
    assert (status.job.backend, status.job.job_id) == ("healthlake", JOB_ID)
    assert status.rows == 4  # 2 patients, 1 condition, 1 observation
    # And exactly the four valid resources were staged, the Bundle's reference made Type/id
    resources = staged_resources(aws, chunk)
    assert [(r["resourceType"], r.get("id")) for r in resources] == [
        ("Patient", PATIENT_UUID),
        ("Condition", "7b1d0c9e-2f3a-4b5c-8d6e-1f2a3b4c5d6e"),
        ("Patient", "p2"),
        ("Observation", "o1"),
    ]
    assert resources[1]["subject"] == {"reference": f"Patient/{PATIENT_UUID}"}
    # And the delivered objects were not touched
    assert (
        aws.s3.get_object(Bucket=aws.landing, Key="incoming/d1/bundle.json")["Body"].read()
        == json.dumps(BUNDLE).encode()
    )


def test_a_retried_import_sends_the_same_token_and_stages_the_same_bytes(
    aws: SimpleNamespace, chunk: ChunkRef, healthlake: Stubber, lambda_context: Any
) -> None:
    # Given HealthLake answering both starts with the same job, as it does for a repeated ClientToken
    for _ in range(2):  # the Stubber checks that both requests carry the same token
        expect_start(healthlake, chunk, aws.lake)

    # When the import runs twice (a Lambda retry after the first attempt had started the job)
    first = clinical_import.lambda_handler(import_event(chunk), lambda_context)
    staged_first = staged_resources(aws, chunk)
    second = clinical_import.lambda_handler(import_event(chunk), lambda_context)

    # Then both attempts hand over the same job and the staged input is unchanged
    assert first["job"] == second["job"]
    assert staged_resources(aws, chunk) == staged_first


def test_without_the_backend_healthlake_is_never_called(
    aws: SimpleNamespace, chunk: ChunkRef, healthlake: Stubber, lambda_context: Any
) -> None:
    # Given the default lakehouse backend (and a Stubber that fails any HealthLake call)
    # When the chunk is imported
    status = clinical_import.lambda_handler(import_event(chunk, "lakehouse"), lambda_context)

    # Then the chunk is complete without a job, and nothing was staged for HealthLake
    assert (status["status"], status["job"]) == ("COMPLETED", None)
    assert list(storage.list_keys(aws.lake, "healthlake/")) == []


def test_the_backend_without_its_settings_is_a_clear_error(
    aws: SimpleNamespace, chunk: ChunkRef, healthlake: Stubber, lambda_context: Any, monkeypatch
) -> None:
    monkeypatch.delenv("HEALTHLAKE_KMS_KEY_ID")
    with pytest.raises(PipelineError, match="HEALTHLAKE_KMS_KEY_ID"):
        clinical_import.lambda_handler(import_event(chunk), lambda_context)


def test_polling_backs_off_then_quarantines_each_rejected_resource_against_its_delivered_file(
    aws: SimpleNamespace, chunk: ChunkRef, healthlake: Stubber, lambda_context: Any
) -> None:
    # Given a started import
    expect_start(healthlake, chunk, aws.lake)
    started = clinical_import.lambda_handler(import_event(chunk), lambda_context)
    describe = {"DatastoreId": DATASTORE, "JobId": JOB_ID}

    # When the job is still running at the first poll
    healthlake.add_response("describe_fhir_import_job", described("IN_PROGRESS", chunk, aws.lake), describe)
    polled = clinical_poll.lambda_handler(started, lambda_context)

    # Then the loop waits longer next time
    assert (polled["status"], polled["attempt"], polled["wait_seconds"]) == ("IN_PROGRESS", 1, 8)

    # When the job ends with HealthLake rejecting the Condition (staged line 2) and the Observation (line 4)
    write_job_output(
        aws, chunk, [(2, "Condition", "7b1d0c9e-2f3a-4b5c-8d6e-1f2a3b4c5d6e"), (4, "Observation", "o1")]
    )
    healthlake.add_response(
        "describe_fhir_import_job", described("COMPLETED_WITH_ERRORS", chunk, aws.lake), describe
    )
    ended = clinical_poll.lambda_handler(polled, lambda_context)

    # Then the chunk reports the job's failure, counting the bad line and both rejected resources
    assert (ended["status"], ended["quarantined"]) == ("FAILED", 3)
    records = [r for r in quarantine.load_run_records(aws.lake, RUN_ID) if r.stage == "poll"]
    found = sorted((r.key, r.line, r.reason, r.detail) for r in records)
    assert found == [
        (
            "incoming/d1/bundle.json",
            1,
            "healthlake-rejected",
            "Condition/7b1d0c9e-2f3a-4b5c-8d6e-1f2a3b4c5d6e: HTTP 400: error processing: invalid code",
        ),
        (
            "incoming/d1/mixed.ndjson",
            3,
            "healthlake-rejected",
            "Observation/o1: HTTP 400: error processing: invalid code",
        ),
    ]
    assert all(r.bucket == aws.landing and r.modality == "clinical" for r in records)


def test_a_failed_job_without_failure_lines_is_one_record_naming_the_staged_file(
    aws: SimpleNamespace, chunk: ChunkRef, healthlake: Stubber, lambda_context: Any
) -> None:
    # Given a started import that FAILED and wrote no report lines
    expect_start(healthlake, chunk, aws.lake)
    started = clinical_import.lambda_handler(import_event(chunk), lambda_context)
    folder = f"{healthlake_prefix(chunk)}output/{DATASTORE}-FHIR_IMPORT-{JOB_ID}/"
    aws.s3.put_object(Bucket=aws.lake, Key=f"{folder}.healthlake_write_access_check", Body=b"")
    healthlake.add_response(
        "describe_fhir_import_job",
        described("FAILED", chunk, aws.lake),
        {"DatastoreId": DATASTORE, "JobId": JOB_ID},
    )

    # When it is polled
    ended = clinical_poll.lambda_handler(started, lambda_context)

    # Then one record carries the job's message against the staged NDJSON
    assert (ended["status"], ended["quarantined"]) == ("FAILED", 2)
    (record,) = [r for r in quarantine.load_run_records(aws.lake, RUN_ID) if r.stage == "poll"]
    assert record.reason == "healthlake-import-failed"
    assert record.key == f"{healthlake_prefix(chunk)}input/resources.ndjson"
    assert "1 resource failed validation" in record.detail
