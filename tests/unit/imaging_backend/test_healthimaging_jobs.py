"""HealthImaging import jobs and data store look-ups, contract-tested with Stubber on the real model.

The Stubber checks every request against the `medical-imaging` service model (names, types, required
members, tagged unions), compares it with the expected parameters, validates every stubbed response
against the model's output shape, and fails on a call nobody stubbed (a second StartDICOMImportJob, a
search for a series already searched).
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError
from botocore.response import StreamingBody
from botocore.stub import Stubber

from mmhealth.contracts import JobHandle
from mmhealth.errors import BackendJobFailed, TransientError
from mmhealth.imaging.healthimaging import (
    FAILED,
    RUNNING,
    SUCCEEDED,
    import_client_token,
    import_job_name,
    instances_in_store,
    job_status,
    series_already_imported,
    start_dicom_import,
)
from tests.unit.backend_fixtures import raises_unretried, service_model, stubbed

DATASTORE = "9f2c4e7a1b3d5f60718293a4b5c6d7e8"
JOB_ID = "c145fbb27b192af392f8ce6e7838e34f"
ROLE = "arn:aws:iam::123456789012:role/mmpipe-healthimaging-import"
RUN_ID = "d1-0a1b2c3d4e5f60718293"
CHUNK_ID = "imaging-0003"
INPUT = f"s3://mmpipe-lake/staging/{RUN_ID}/imaging/healthimaging/{CHUNK_ID}/"
OUTPUT = "s3://mmpipe-lake/healthimaging-output/"
JOB_FOLDER = f"{OUTPUT}{DATASTORE}-DicomImport-{JOB_ID}/"
SUBMITTED_AT = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

SERIES_A = "1.2.826.0.1.3680043.8.498.10001"
SERIES_B = "1.2.826.0.1.3680043.8.498.10002"
SERIES_C = "1.2.826.0.1.3680043.8.498.10003"
SET_1 = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
SET_2 = "1b2c3d4e5f60718293a4b5c6d7e8f90a"
SET_3 = "2c3d4e5f60718293a4b5c6d7e8f90a1b"
SET_4 = "3d4e5f60718293a4b5c6d7e8f90a1b2c"

# A patient name the data store returns in DICOMTags; it must never reach a log line.
SECRET_NAME = "Okonkwo-Barrett^Wilhelmina"


@pytest.fixture
def imaging() -> Iterator[tuple[Any, Stubber]]:
    with stubbed("medical-imaging") as pair:
        yield pair


def model() -> Any:
    return service_model("medical-imaging")


def start_request(**overrides: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "jobName": import_job_name(RUN_ID, CHUNK_ID),
        "dataAccessRoleArn": ROLE,
        "clientToken": import_client_token(RUN_ID, CHUNK_ID),
        "datastoreId": DATASTORE,
        "inputS3Uri": INPUT,
        "outputS3Uri": OUTPUT,
    }
    return {**request, **overrides}


def started(status: str = "SUBMITTED") -> dict[str, Any]:
    """A StartDICOMImportJob response (validated by the Stubber against the model's output shape)."""
    return {"datastoreId": DATASTORE, "jobId": JOB_ID, "jobStatus": status, "submittedAt": SUBMITTED_AT}


def start(client: Any, **overrides: Any) -> JobHandle:
    arguments: dict[str, Any] = {
        "datastore_id": DATASTORE,
        "input_s3_uri": INPUT,
        "output_s3_uri": OUTPUT,
        "role_arn": ROLE,
        "job_name": import_job_name(RUN_ID, CHUNK_ID),
        "client_token": import_client_token(RUN_ID, CHUNK_ID),
    }
    return start_dicom_import(client, **{**arguments, **overrides})


def described(status: str, *, message: str | None = None) -> dict[str, Any]:
    """A GetDICOMImportJob response, the job folder as the job's outputS3Uri (AWS CLI example)."""
    job: dict[str, Any] = {
        "jobId": JOB_ID,
        "jobName": import_job_name(RUN_ID, CHUNK_ID),
        "jobStatus": status,
        "datastoreId": DATASTORE,
        "dataAccessRoleArn": ROLE,
        "submittedAt": SUBMITTED_AT,
        "inputS3Uri": INPUT,
        "outputS3Uri": JOB_FOLDER,
    }
    if message is not None:
        job["message"] = message
    return {"jobProperties": job}


GET_REQUEST = {"datastoreId": DATASTORE, "jobId": JOB_ID}


# ------------------------------------------------------------------------------------------ start


def test_starts_an_import_of_the_staged_dicom(imaging: tuple[Any, Stubber]) -> None:
    # Given HealthImaging accepting the job
    client, stubber = imaging
    stubber.add_response("start_dicom_import_job", started(), start_request())

    # When the chunk's import is started
    handle = start(client)

    # Then the request names the staged folder, the role, the output folder and our token (checked by
    # the Stubber against `start_request`), and the job's handle comes back
    assert handle == JobHandle(backend="healthimaging", job_id=JOB_ID)


def test_the_input_owner_account_is_sent_only_when_given(imaging: tuple[Any, Stubber]) -> None:
    client, stubber = imaging
    stubber.add_response(
        "start_dicom_import_job", started(), start_request(inputOwnerAccountId="210987654321")
    )

    assert start(client, input_owner_account_id="210987654321").job_id == JOB_ID


def test_a_retried_start_sends_the_same_token_and_gets_the_same_job(imaging: tuple[Any, Stubber]) -> None:
    # Given a first attempt that started the job, and HealthImaging answering the repeat with that job
    client, stubber = imaging
    stubber.add_response("start_dicom_import_job", started("SUBMITTED"), start_request())
    stubber.add_response("start_dicom_import_job", started("IN_PROGRESS"), start_request())
    first = start(client)

    # When the Lambda is retried with the token derived again from the same run and chunk
    retried = start(client, client_token=import_client_token(RUN_ID, CHUNK_ID))

    # Then the identical request (same clientToken) is sent and the same job is polled
    assert retried == first


def test_the_client_token_is_deterministic_per_run_chunk_and_redrive() -> None:
    token = import_client_token(RUN_ID, CHUNK_ID)

    assert token == import_client_token(RUN_ID, CHUNK_ID)
    others = {
        import_client_token(RUN_ID, "imaging-0004"),
        import_client_token("d1-ffffffffffffffffffff", CHUNK_ID),
        import_client_token(RUN_ID, CHUNK_ID, redrive=1),
        import_client_token(RUN_ID, CHUNK_ID, redrive=2),
    }
    assert token not in others
    assert len(others) == 4
    with pytest.raises(ValueError, match="redrive"):
        import_client_token(RUN_ID, CHUNK_ID, redrive=-1)


def test_the_client_token_meets_the_service_model_constraints() -> None:
    # The model's own constraints, so a tightened model fails this test
    member = model().operation_model("StartDICOMImportJob").input_shape.members["clientToken"]
    pattern = re.compile(member.metadata["pattern"])
    long_run = "a-very-long-delivery-name-with-many-words-in-it-x-" + "0" * 20

    assert member.metadata["idempotencyToken"]  # botocore would fill in a random token if we sent none
    for token in (
        import_client_token(RUN_ID, CHUNK_ID),
        import_client_token(long_run, "imaging-9999", redrive=12),
        import_client_token("run with spaces/and:colons", "c"),
    ):
        assert member.metadata["min"] <= len(token) <= member.metadata["max"]
        assert pattern.fullmatch(token)


def test_the_job_name_fits_the_model_and_keeps_the_distinguishing_tail() -> None:
    shape = model().shape_for("JobName")
    pattern = re.compile(shape.metadata["pattern"])
    long_run = "a-very-long-delivery-name-with-many-words-in-it-x-0a1b2c3d4e5f60718293"

    name = import_job_name(long_run, "imaging-0012")
    odd = import_job_name("run with spaces:and+plus", "imaging-0001")

    assert len(name) == shape.metadata["max"]
    assert name.endswith("0a1b2c3d4e5f60718293/imaging-0012")
    assert import_job_name(RUN_ID, CHUNK_ID) == f"{RUN_ID}/{CHUNK_ID}"
    assert odd == "run-with-spaces-and-plus/imaging-0001"
    assert pattern.fullmatch(name)
    assert pattern.fullmatch(odd)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"client_token": "run_1/chunk"}, "clientToken"),
        ({"client_token": "x" * 65}, "clientToken"),
        ({"client_token": ""}, "clientToken"),
        ({"job_name": "x" * 65}, "jobName"),
        ({"job_name": "chunk 1"}, "jobName"),
        ({"datastore_id": "9F2C4E7A1B3D5F60718293A4B5C6D7E8"}, "data store id"),
        ({"role_arn": "arn:aws:iam::123456789012:user/someone"}, "dataAccessRoleArn"),
        ({"input_owner_account_id": "12345"}, "inputOwnerAccountId"),
        ({"input_s3_uri": "/tmp/staged/"}, "s3://"),
        ({"input_s3_uri": INPUT.rstrip("/")}, "input URI must be a folder"),
        ({"output_s3_uri": OUTPUT.rstrip("/")}, "output URI must be a folder"),
        ({"output_s3_uri": f"s3://mmpipe-lake/{'x' * 1020}/"}, "longer than 1024"),
        ({"output_s3_uri": f"{INPUT}reports/"}, "inside the input folder"),
    ],
)
def test_a_request_the_service_would_refuse_is_a_programming_error(
    imaging: tuple[Any, Stubber], overrides: dict[str, Any], match: str
) -> None:
    client, _ = imaging  # nothing stubbed: a call would fail the test

    with pytest.raises(ValueError, match=match):
        start(client, **overrides)


@pytest.mark.parametrize(
    ("code", "status"),
    [("ThrottlingException", 429), ("InternalServerException", 500), ("ServiceQuotaExceededException", 402)],
)
def test_a_throttled_start_is_transient(imaging: tuple[Any, Stubber], code: str, status: int) -> None:
    # Given the service refusing the call for a while (StartDICOMImportJob allows 0.25 requests/s)
    client, stubber = imaging
    stubber.add_client_error(
        "start_dicom_import_job",
        service_error_code=code,
        service_message="slow down",
        http_status_code=status,
    )

    # When / Then the state machine gets a TransientError to retry on
    with pytest.raises(TransientError, match=f"StartDICOMImportJob: {code}"):
        start(client)


@pytest.mark.parametrize(
    "code", ["ValidationException", "AccessDeniedException", "ResourceNotFoundException", "ConflictException"]
)
def test_other_start_errors_propagate_unretried(imaging: tuple[Any, Stubber], code: str) -> None:
    client, stubber = imaging
    stubber.add_client_error("start_dicom_import_job", service_error_code=code, http_status_code=400)

    with raises_unretried(code):
        start(client)


def test_a_network_failure_is_transient() -> None:
    def unreachable(**_: Any) -> Any:
        raise EndpointConnectionError(endpoint_url="https://medical-imaging.us-east-1.amazonaws.com")

    client = SimpleNamespace(start_dicom_import_job=unreachable, get_dicom_import_job=unreachable)

    with pytest.raises(TransientError, match="StartDICOMImportJob: EndpointConnectionError"):
        start(client)
    with pytest.raises(TransientError, match="GetDICOMImportJob: EndpointConnectionError"):
        job_status(client, datastore_id=DATASTORE, job_id=JOB_ID)


# ------------------------------------------------------------------------------------------ status

# Every jobStatus of the service model, mapped deliberately (the test below proves none is missing).
STATUS_MAP = {
    "SUBMITTED": "IN_PROGRESS",
    "IN_PROGRESS": "IN_PROGRESS",
    "COMPLETED": "COMPLETED",
    "FAILED": "FAILED",
}


def test_every_status_of_the_service_model_is_mapped() -> None:
    enum = set(model().shape_for("JobStatus").enum)

    assert set(STATUS_MAP) == enum
    assert RUNNING | SUCCEEDED | set(FAILED) == enum
    assert not (RUNNING & SUCCEEDED)
    assert not (RUNNING & set(FAILED))
    assert not (SUCCEEDED & set(FAILED))


@pytest.mark.parametrize(("service_status", "expected"), sorted(STATUS_MAP.items()))
def test_each_status_maps_to_the_chunk_vocabulary(
    imaging: tuple[Any, Stubber], service_status: str, expected: str
) -> None:
    client, stubber = imaging
    stubber.add_response("get_dicom_import_job", described(service_status), GET_REQUEST)

    state, messages = job_status(client, datastore_id=DATASTORE, job_id=JOB_ID)

    assert state == expected
    if expected == "FAILED":
        assert messages == [f"HealthImaging import {JOB_ID} FAILED: {FAILED['FAILED']}: no message"]
    else:
        assert messages == []


def test_a_failed_job_reports_the_service_message(imaging: tuple[Any, Stubber]) -> None:
    # Given a job that could not read its input
    client, stubber = imaging
    stubber.add_response(
        "get_dicom_import_job",
        described("FAILED", message="Access denied to the input S3 location"),
        GET_REQUEST,
    )

    # When polled / Then the chunk fails with the job's message for on-call
    assert job_status(client, datastore_id=DATASTORE, job_id=JOB_ID) == (
        "FAILED",
        [
            f"HealthImaging import {JOB_ID} FAILED: the import failed; image sets it created before failing "
            "stay in the data store: Access denied to the input S3 location"
        ],
    )


def test_an_unknown_status_keeps_polling(imaging: tuple[Any, Stubber]) -> None:
    # The Stubber does not check enum values in responses, so a status newer than the model can be served
    client, stubber = imaging
    stubber.add_response("get_dicom_import_job", described("CANCELLED"), GET_REQUEST)

    assert job_status(client, datastore_id=DATASTORE, job_id=JOB_ID) == ("IN_PROGRESS", [])


@pytest.mark.parametrize(("code", "status"), [("ThrottlingException", 429), ("InternalServerException", 500)])
def test_a_throttled_poll_is_transient(imaging: tuple[Any, Stubber], code: str, status: int) -> None:
    client, stubber = imaging
    stubber.add_client_error("get_dicom_import_job", service_error_code=code, http_status_code=status)

    with pytest.raises(TransientError, match=f"GetDICOMImportJob: {code}"):
        job_status(client, datastore_id=DATASTORE, job_id=JOB_ID)


def test_an_unknown_job_is_not_transient(imaging: tuple[Any, Stubber]) -> None:
    client, stubber = imaging
    stubber.add_client_error(
        "get_dicom_import_job", service_error_code="ResourceNotFoundException", http_status_code=404
    )

    with raises_unretried("ResourceNotFoundException"):
        job_status(client, datastore_id=DATASTORE, job_id=JOB_ID)


# ------------------------------------------------------------------------------------------ series


def search_request(uid: str, token: str | None = None) -> dict[str, Any]:
    request: dict[str, Any] = {
        "datastoreId": DATASTORE,
        "searchCriteria": {"filters": [{"values": [{"DICOMSeriesInstanceUID": uid}], "operator": "EQUAL"}]},
        "maxResults": 50,
    }
    if token is not None:
        request["nextToken"] = token
    return request


def summary(image_set_id: str, uid: str, *, primary: bool | None = True, version: int = 1) -> dict[str, Any]:
    """One image set as SearchImageSets returns it, DICOM tags (with a patient name) included."""
    found: dict[str, Any] = {
        "imageSetId": image_set_id,
        "version": version,
        "createdAt": SUBMITTED_AT,
        "updatedAt": SUBMITTED_AT,
        "DICOMTags": {
            "DICOMPatientId": "pt-0042",
            "DICOMPatientName": SECRET_NAME,
            "DICOMStudyInstanceUID": "1.2.826.0.1.3680043.8.498.1",
            "DICOMSeriesInstanceUID": uid,
            "DICOMSeriesModality": "CT",
        },
    }
    if primary is not None:
        found["isPrimary"] = primary
    return found


def page(*summaries: dict[str, Any], next_token: str | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"imageSetsMetadataSummaries": list(summaries)}
    if next_token is not None:
        response["nextToken"] = next_token
    return response


def test_series_in_the_store_are_found_across_pages_primary_first(
    imaging: tuple[Any, Stubber], caplog: pytest.LogCaptureFixture
) -> None:
    # Given a data store holding series A as a non-primary and a primary image set (on two pages), an
    # older primary image set of A on a third page, and nothing of series B
    client, stubber = imaging
    stubber.add_response(
        "search_image_sets",
        page(summary(SET_2, SERIES_A, primary=False), next_token="page-2"),
        search_request(SERIES_A),
    )
    stubber.add_response(
        "search_image_sets",
        page(summary(SET_1, SERIES_A, version=3), next_token="page-3"),
        search_request(SERIES_A, "page-2"),
    )
    stubber.add_response(
        "search_image_sets", page(summary(SET_3, SERIES_A)), search_request(SERIES_A, "page-3")
    )
    stubber.add_response("search_image_sets", page(), search_request(SERIES_B))

    # When the importer asks which of its series (one listed twice) are already imported
    with caplog.at_level(logging.DEBUG, logger="mmhealth"):
        found = series_already_imported(
            client, datastore_id=DATASTORE, series_uids=[SERIES_A, SERIES_B, SERIES_A]
        )

    # Then every page was read, each series searched once (the Stubber refuses a fourth A search), the
    # absent series is left out, primary image sets come first, and no UID or name reached the logs
    assert found == {SERIES_A: [SET_1, SET_3, SET_2]}
    assert "1 of 2 series (3 image sets)" in caplog.text
    for secret in (SERIES_A, SERIES_B, "Okonkwo", "Wilhelmina"):
        assert secret not in caplog.text


def test_an_image_set_of_another_series_is_not_taken(imaging: tuple[Any, Stubber]) -> None:
    client, stubber = imaging
    stubber.add_response(
        "search_image_sets",
        page(summary(SET_4, SERIES_C), summary(SET_1, SERIES_A, primary=None)),
        search_request(SERIES_A),
    )

    assert series_already_imported(client, datastore_id=DATASTORE, series_uids=[SERIES_A]) == {
        SERIES_A: [SET_1]
    }


def test_a_throttled_search_page_is_transient(imaging: tuple[Any, Stubber]) -> None:
    # Given a search whose second page is throttled
    client, stubber = imaging
    stubber.add_response(
        "search_image_sets", page(summary(SET_1, SERIES_A), next_token="page-2"), search_request(SERIES_A)
    )
    stubber.add_client_error(
        "search_image_sets", service_error_code="ThrottlingException", http_status_code=429
    )

    # When / Then the whole look-up is retried by the state machine, never answered with half a page set
    with pytest.raises(TransientError, match="SearchImageSets: ThrottlingException"):
        series_already_imported(client, datastore_id=DATASTORE, series_uids=[SERIES_A])


def test_a_refused_search_propagates(imaging: tuple[Any, Stubber]) -> None:
    client, stubber = imaging
    stubber.add_client_error(
        "search_image_sets", service_error_code="AccessDeniedException", http_status_code=403
    )

    with raises_unretried("AccessDeniedException"):
        series_already_imported(client, datastore_id=DATASTORE, series_uids=[SERIES_A])


@pytest.mark.parametrize("uids", [[""], ["1.2.3", "1.2.x"], ["1.2." + "3" * 600]])
def test_a_series_uid_the_service_would_refuse_is_a_programming_error(
    imaging: tuple[Any, Stubber], uids: list[str]
) -> None:
    client, _ = imaging

    with pytest.raises(ValueError, match="Series Instance UID") as caught:
        series_already_imported(client, datastore_id=DATASTORE, series_uids=uids)

    assert "1.2.x" not in str(caught.value)  # a UID is not echoed (the model marks UIDs sensitive)


def test_no_series_asks_nothing(imaging: tuple[Any, Stubber]) -> None:
    client, _ = imaging

    assert series_already_imported(client, datastore_id=DATASTORE, series_uids=iter(())) == {}


# ------------------------------------------------------------------------------------------ instances


def metadata(image_set_id: str, series: dict[str, list[str]], *, compress: bool = True) -> dict[str, Any]:
    """A GetImageSetMetadata response: the image set's JSON document, gzipped as the service sends it."""
    document = {
        "SchemaVersion": "1.1",
        "DatastoreID": DATASTORE,
        "ImageSetID": image_set_id,
        "Patient": {"DICOM": {"PatientName": SECRET_NAME, "PatientID": "pt-0042"}},
        "Study": {
            "DICOM": {"StudyInstanceUID": "1.2.826.0.1.3680043.8.498.1"},
            "Series": {
                uid: {
                    "DICOM": {"SeriesInstanceUID": uid, "Modality": "CT"},
                    "Instances": {sop: {"DICOM": {"SOPInstanceUID": sop}, "ImageFrames": []} for sop in sops},
                }
                for uid, sops in series.items()
            },
        },
    }
    blob = json.dumps(document).encode()
    if compress:
        blob = gzip.compress(blob)
    response: dict[str, Any] = {
        "imageSetMetadataBlob": StreamingBody(io.BytesIO(blob), len(blob)),
        "contentType": "application/json",
    }
    if compress:
        response["contentEncoding"] = "gzip"
    return response


def test_the_instances_held_for_each_series_are_read_from_the_metadata(imaging: tuple[Any, Stubber]) -> None:
    # Given series A split over a primary and a non-primary image set, and series B in a third
    client, stubber = imaging
    for image_set_id, series in (
        (SET_1, {SERIES_A: ["1.2.3.1", "1.2.3.2"]}),
        (SET_2, {SERIES_A: ["1.2.3.2", "1.2.3.3"]}),
    ):
        stubber.add_response(
            "get_image_set_metadata",
            metadata(image_set_id, series),
            {"datastoreId": DATASTORE, "imageSetId": image_set_id},
        )
    stubber.add_response(
        "get_image_set_metadata",
        metadata(SET_3, {SERIES_B: ["1.2.4.1"]}, compress=False),
        {"datastoreId": DATASTORE, "imageSetId": SET_3},
    )

    # When the importer asks what the store holds of those image sets (one listed twice)
    held = instances_in_store(client, datastore_id=DATASTORE, image_set_ids=[SET_1, SET_2, SET_3, SET_1])

    # Then each series maps to the union of its SOP instances, and each image set was read once
    assert held == {
        SERIES_A: frozenset({"1.2.3.1", "1.2.3.2", "1.2.3.3"}),
        SERIES_B: frozenset({"1.2.4.1"}),
    }


def test_a_metadata_document_that_is_not_json_is_a_backend_failure(imaging: tuple[Any, Stubber]) -> None:
    client, stubber = imaging
    blob = gzip.compress(b"<xml/>")
    stubber.add_response(
        "get_image_set_metadata",
        {"imageSetMetadataBlob": StreamingBody(io.BytesIO(blob), len(blob)), "contentEncoding": "gzip"},
        {"datastoreId": DATASTORE, "imageSetId": SET_1},
    )

    with pytest.raises(BackendJobFailed, match=f"image set {SET_1}: metadata is not gzipped JSON"):
        instances_in_store(client, datastore_id=DATASTORE, image_set_ids=[SET_1])


def test_a_throttled_metadata_read_is_transient(imaging: tuple[Any, Stubber]) -> None:
    client, stubber = imaging
    stubber.add_client_error(
        "get_image_set_metadata", service_error_code="ThrottlingException", http_status_code=429
    )

    with pytest.raises(TransientError, match="GetImageSetMetadata: ThrottlingException"):
        instances_in_store(client, datastore_id=DATASTORE, image_set_ids=[SET_1])


def test_an_image_set_id_the_service_would_refuse_is_a_programming_error(
    imaging: tuple[Any, Stubber],
) -> None:
    client, _ = imaging

    with pytest.raises(ValueError, match="image set id"):
        instances_in_store(client, datastore_id=DATASTORE, image_set_ids=["not-an-id"])
