"""HealthLake import jobs, contract-tested with botocore's Stubber against the real `healthlake` model.

The Stubber checks every request against the service model (names, types, required members), compares it
with the expected parameters, and fails on a call nobody stubbed (a second StartFHIRImportJob, say).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.stub import Stubber

from mmhealth.clinical.healthlake import (
    FAILED,
    RUNNING,
    SUCCEEDED,
    import_client_token,
    import_job_name,
    job_status,
    start_fhir_import,
)
from mmhealth.contracts import JobHandle
from mmhealth.errors import TransientError
from tests.unit.backend_fixtures import raises_unretried, service_model, stubbed

DATASTORE = "9f2c4e7a1b3d5f60718293a4b5c6d7e8"
JOB_ID = "c145fbb27b192af392f8ce6e7838e34f"
ROLE = "arn:aws:iam::123456789012:role/mmpipe-healthlake-import"
KMS_KEY = "arn:aws:kms:us-east-1:123456789012:key/fbbbfee3-20b3-42a5-a99d-c48c655ed545"
RUN_ID = "d1-0a1b2c3d4e5f60718293"
CHUNK_ID = "clinical-0003"
INPUT = f"s3://mmpipe-lake/staging/{RUN_ID}/clinical/healthlake/{CHUNK_ID}/"
OUTPUT = "s3://mmpipe-lake/healthlake-output/"


@pytest.fixture
def healthlake() -> Iterator[tuple[Any, Stubber]]:
    with stubbed("healthlake") as pair:
        yield pair


def start_request(**overrides: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "JobName": import_job_name(RUN_ID, CHUNK_ID),
        "DatastoreId": DATASTORE,
        "InputDataConfig": {"S3Uri": INPUT},
        "JobOutputDataConfig": {"S3Configuration": {"S3Uri": OUTPUT, "KmsKeyId": KMS_KEY}},
        "DataAccessRoleArn": ROLE,
        "ClientToken": import_client_token(RUN_ID, CHUNK_ID),
    }
    return {**request, **overrides}


def start(client: Any, **overrides: Any) -> JobHandle:
    arguments: dict[str, Any] = {
        "datastore_id": DATASTORE,
        "input_s3_uri": INPUT,
        "output_s3_uri": OUTPUT,
        "kms_key_id": KMS_KEY,
        "role_arn": ROLE,
        "job_name": import_job_name(RUN_ID, CHUNK_ID),
        "client_token": import_client_token(RUN_ID, CHUNK_ID),
    }
    return start_fhir_import(client, **{**arguments, **overrides})


def described(
    status: str, *, message: str | None = None, report: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A DescribeFHIRImportJob response (validated by the Stubber against the model's output shape)."""
    job: dict[str, Any] = {
        "JobId": JOB_ID,
        "JobName": import_job_name(RUN_ID, CHUNK_ID),
        "JobStatus": status,
        "SubmitTime": datetime(2026, 1, 5, 9, 0, tzinfo=UTC),
        "DatastoreId": DATASTORE,
        "InputDataConfig": {"S3Uri": INPUT},
        "JobOutputDataConfig": {
            "S3Configuration": {"S3Uri": f"{OUTPUT}{DATASTORE}-FHIR_IMPORT-{JOB_ID}/", "KmsKeyId": KMS_KEY}
        },
        "DataAccessRoleArn": ROLE,
    }
    if message is not None:
        job["Message"] = message
    if report is not None:
        job["JobProgressReport"] = report
    return {"ImportJobProperties": job}


DESCRIBE_REQUEST = {"DatastoreId": DATASTORE, "JobId": JOB_ID}


# ------------------------------------------------------------------------------------------ start


def test_starts_an_import_of_the_staged_ndjson(healthlake: tuple[Any, Stubber]) -> None:
    # Given HealthLake accepting the job
    client, stubber = healthlake
    stubber.add_response(
        "start_fhir_import_job",
        {"JobId": JOB_ID, "JobStatus": "SUBMITTED", "DatastoreId": DATASTORE},
        start_request(),
    )

    # When the chunk's import is started
    handle = start(client)

    # Then the request names the staged folder, the role, the output folder with its KMS key and our
    # token (checked by the Stubber against `start_request`), and the job's handle comes back
    assert handle == JobHandle(backend="healthlake", job_id=JOB_ID)


def test_the_validation_level_is_sent_only_when_chosen(healthlake: tuple[Any, Stubber]) -> None:
    client, stubber = healthlake
    stubber.add_response(
        "start_fhir_import_job",
        {"JobId": JOB_ID, "JobStatus": "SUBMITTED"},
        start_request(ValidationLevel="structure-only"),
    )

    assert start(client, validation_level="structure-only").job_id == JOB_ID


def test_a_retried_start_sends_the_same_token_and_gets_the_same_job(healthlake: tuple[Any, Stubber]) -> None:
    # Given a first attempt that started the job, and HealthLake answering the repeat with that job
    client, stubber = healthlake
    stubber.add_response(
        "start_fhir_import_job", {"JobId": JOB_ID, "JobStatus": "SUBMITTED"}, start_request()
    )
    stubber.add_response(
        "start_fhir_import_job", {"JobId": JOB_ID, "JobStatus": "IN_PROGRESS"}, start_request()
    )
    first = start(client)

    # When the Lambda is retried with the token derived again from the same run and chunk
    retried = start(client, client_token=import_client_token(RUN_ID, CHUNK_ID))

    # Then the identical request (same ClientToken) is sent and the same job is polled
    assert retried == first


def test_the_client_token_is_deterministic_per_run_chunk_and_redrive() -> None:
    token = import_client_token(RUN_ID, CHUNK_ID)

    assert token == import_client_token(RUN_ID, CHUNK_ID)
    others = {
        import_client_token(RUN_ID, "clinical-0004"),
        import_client_token("d1-ffffffffffffffffffff", CHUNK_ID),
        import_client_token(RUN_ID, CHUNK_ID, redrive=1),
        import_client_token(RUN_ID, CHUNK_ID, redrive=2),
    }
    assert token not in others
    assert len(others) == 4


def test_the_client_token_meets_the_service_model_constraints() -> None:
    # The model's own constraints, so a tightened model fails this test
    shape = service_model("healthlake").shape_for("ClientTokenString")
    pattern = re.compile(shape.metadata["pattern"])
    long_run = "a-very-long-delivery-name-with-many-words-in-it-x-" + "0" * 20

    for token in (
        import_client_token(RUN_ID, CHUNK_ID),
        import_client_token(long_run, "clinical-9999", redrive=12),
        import_client_token("run with spaces/and_underscores", "c"),
    ):
        assert shape.metadata["min"] <= len(token) <= shape.metadata["max"]
        assert pattern.fullmatch(token)


def test_the_job_name_fits_the_model_and_keeps_the_distinguishing_tail() -> None:
    shape = service_model("healthlake").shape_for("JobName")
    long_run = "a-very-long-delivery-name-with-many-words-in-it-x-0a1b2c3d4e5f60718293"

    name = import_job_name(long_run, "clinical-0012")

    assert len(name) == shape.metadata["max"]
    assert name.endswith("0a1b2c3d4e5f60718293/clinical-0012")
    assert import_job_name(RUN_ID, CHUNK_ID) == f"{RUN_ID}/{CHUNK_ID}"


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"client_token": "run_1/chunk"}, "ClientToken"),
        ({"client_token": "x" * 65}, "ClientToken"),
        ({"client_token": ""}, "ClientToken"),
        ({"job_name": "x" * 65}, "JobName"),
        ({"job_name": "chunk#1"}, "JobName"),
        ({"input_s3_uri": "/tmp/staged"}, "s3://"),
        ({"output_s3_uri": "s3://mmpipe-lake/healthlake-output"}, "folder"),
    ],
)
def test_a_request_the_service_would_refuse_is_a_programming_error(
    healthlake: tuple[Any, Stubber], overrides: dict[str, Any], match: str
) -> None:
    client, _ = healthlake  # nothing stubbed: a call would fail the test

    with pytest.raises(ValueError, match=match):
        start(client, **overrides)


@pytest.mark.parametrize(("code", "status"), [("ThrottlingException", 400), ("InternalServerException", 500)])
def test_a_throttled_start_is_transient(healthlake: tuple[Any, Stubber], code: str, status: int) -> None:
    # Given the service refusing the call for a while
    client, stubber = healthlake
    stubber.add_client_error(
        "start_fhir_import_job", service_error_code=code, service_message="slow down", http_status_code=status
    )

    # When / Then the state machine gets a TransientError to retry on
    with pytest.raises(TransientError, match=code):
        start(client)


@pytest.mark.parametrize(
    "code",
    [
        "ValidationException",
        "AccessDeniedException",
        "ResourceNotFoundException",
        "FailedDependencyException",
    ],
)
def test_other_start_errors_propagate_unretried(healthlake: tuple[Any, Stubber], code: str) -> None:
    client, stubber = healthlake
    stubber.add_client_error("start_fhir_import_job", service_error_code=code, http_status_code=400)

    with raises_unretried(code):
        start(client)


# ------------------------------------------------------------------------------------------ status

# Every JobStatus of the service model, mapped deliberately (the test below proves none is missing).
STATUS_MAP = {
    "SUBMITTED": "IN_PROGRESS",
    "QUEUED": "IN_PROGRESS",
    "IN_PROGRESS": "IN_PROGRESS",
    "COMPLETED": "COMPLETED",
    "COMPLETED_WITH_ERRORS": "FAILED",
    "FAILED": "FAILED",
    "CANCEL_SUBMITTED": "FAILED",
    "CANCEL_IN_PROGRESS": "FAILED",
    "CANCEL_COMPLETED": "FAILED",
    "CANCEL_FAILED": "FAILED",
}


def test_every_status_of_the_service_model_is_mapped() -> None:
    enum = set(service_model("healthlake").shape_for("JobStatus").enum)

    assert set(STATUS_MAP) == enum
    assert RUNNING | SUCCEEDED | set(FAILED) == enum
    assert not (RUNNING & SUCCEEDED)
    assert not (RUNNING & set(FAILED))
    assert not (SUCCEEDED & set(FAILED))


@pytest.mark.parametrize(("service_status", "expected"), sorted(STATUS_MAP.items()))
def test_each_status_maps_to_the_chunk_vocabulary(
    healthlake: tuple[Any, Stubber], service_status: str, expected: str
) -> None:
    client, stubber = healthlake
    stubber.add_response("describe_fhir_import_job", described(service_status), DESCRIBE_REQUEST)

    state, messages = job_status(client, datastore_id=DATASTORE, job_id=JOB_ID)

    assert state == expected
    if expected == "FAILED":
        assert messages[0].startswith(f"HealthLake import {JOB_ID} {service_status}: ")
        assert messages[0].endswith(": no message")
    else:
        assert messages == []


def test_completed_with_errors_says_what_was_imported(healthlake: tuple[Any, Stubber]) -> None:
    # Given a job that imported most resources and rejected some
    client, stubber = healthlake
    report = {
        "TotalNumberOfScannedFiles": 1,
        "TotalNumberOfImportedFiles": 1,
        "TotalNumberOfResourcesScanned": 9,
        "TotalNumberOfResourcesImported": 4,
        "TotalNumberOfResourcesWithCustomerError": 5,
        "TotalNumberOfFilesReadWithCustomerError": 0,
    }
    stubber.add_response(
        "describe_fhir_import_job",
        described("COMPLETED_WITH_ERRORS", message="Some resources failed validation", report=report),
        DESCRIBE_REQUEST,
    )

    # When polled / Then the chunk fails with the job's message and counters for on-call
    assert job_status(client, datastore_id=DATASTORE, job_id=JOB_ID) == (
        "FAILED",
        [
            f"HealthLake import {JOB_ID} COMPLETED_WITH_ERRORS: some resources were rejected, the others were "
            "imported: Some resources failed validation",
            "4 of 9 resources imported, 5 rejected as invalid, 0 files unreadable",
        ],
    )


def test_a_failed_job_reports_the_service_message(healthlake: tuple[Any, Stubber]) -> None:
    client, stubber = healthlake
    stubber.add_response(
        "describe_fhir_import_job",
        described("FAILED", message="Access denied to the input S3 location"),
        DESCRIBE_REQUEST,
    )

    assert job_status(client, datastore_id=DATASTORE, job_id=JOB_ID) == (
        "FAILED",
        [f"HealthLake import {JOB_ID} FAILED: the import failed: Access denied to the input S3 location"],
    )


def test_an_unknown_status_keeps_polling(healthlake: tuple[Any, Stubber]) -> None:
    # The Stubber does not check enum values in responses, so a status newer than the model can be served
    client, stubber = healthlake
    stubber.add_response("describe_fhir_import_job", described("PAUSED"), DESCRIBE_REQUEST)

    assert job_status(client, datastore_id=DATASTORE, job_id=JOB_ID) == ("IN_PROGRESS", [])


@pytest.mark.parametrize(("code", "status"), [("ThrottlingException", 400), ("InternalServerException", 500)])
def test_a_throttled_poll_is_transient(healthlake: tuple[Any, Stubber], code: str, status: int) -> None:
    client, stubber = healthlake
    stubber.add_client_error("describe_fhir_import_job", service_error_code=code, http_status_code=status)

    with pytest.raises(TransientError, match=f"DescribeFHIRImportJob: {code}"):
        job_status(client, datastore_id=DATASTORE, job_id=JOB_ID)


def test_an_unknown_job_is_not_transient(healthlake: tuple[Any, Stubber]) -> None:
    client, stubber = healthlake
    stubber.add_client_error(
        "describe_fhir_import_job", service_error_code="ResourceNotFoundException", http_status_code=400
    )

    with raises_unretried("ResourceNotFoundException"):
        job_status(client, datastore_id=DATASTORE, job_id=JOB_ID)
