"""The imaging Import / Poll / Catalog handlers with ImagingBackend=healthimaging: S3 in moto, HealthImaging in
a Stubber against the real `medical-imaging` model.

Checked: only instances the data store lacks are staged and imported (a re-delivery starts no job, so no
duplicate image set), the job is polled with backoff, a file HealthImaging rejected is quarantined against
the delivered object, and the series' image set id lands in imaging.series.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber
from pydicom import dcmread

from mmhealth import quarantine, storage
from mmhealth.contracts import ChunkRef, RunConfig, RunManifest
from mmhealth.handlers import imaging_catalog, imaging_import, imaging_poll
from mmhealth.imaging.healthimaging import import_client_token, import_job_name
from mmhealth.imaging.importer import healthimaging_prefix
from mmhealth.lakehouse.catalog import read_table
from mmhealth.lakehouse.layout import RunPaths
from tests.conftest import REPO
from tests.unit.backend_fixtures import stubbed_in_handlers

SERIES_DIR = REPO / "tests" / "data" / "delivery" / "imaging" / "mr-brain"
DATASTORE = "9f2c4e7a1b3d5f60718293a4b5c6d7e8"
JOB_ID = "c145fbb27b192af392f8ce6e7838e34f"
IMAGE_SET = "0123456789abcdef0123456789abcdef"
ROLE = "arn:aws:iam::123456789012:role/mmpipe-dev-HealthImagingImportRole"
RUN_ID = "d1-0a1b2c3d4e5f60718293"
AT = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
FILES = sorted(SERIES_DIR.glob("*.dcm"))
SERIES_UID = str(dcmread(FILES[0]).SeriesInstanceUID)
SOP_UIDS = [str(dcmread(f).SOPInstanceUID) for f in FILES]


@pytest.fixture
def chunk(aws: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> ChunkRef:
    """The sample series delivered, its chunk and run manifest written as the trigger writes them."""
    files = []
    for path in FILES:
        key = f"incoming/d1/mr-brain/{path.name}"
        aws.s3.put_object(Bucket=aws.landing, Key=key, Body=path.read_bytes())
        etag = aws.s3.head_object(Bucket=aws.landing, Key=key)["ETag"].strip('"')
        files.append({"object": {"bucket": aws.landing, "key": key, "etag": etag}, "kind": "imaging"})
    paths = RunPaths(RUN_ID)
    ref = ChunkRef(
        run_id=RUN_ID, modality="imaging", chunk_id="imaging-0000", key=paths.chunk("imaging", 0), files=6
    )
    storage.write_json(aws.lake, ref.key, {"chunk_id": ref.chunk_id, "modality": "imaging", "files": files})
    manifest = RunManifest(
        run_id=RUN_ID, created_at=AT.isoformat(), landing_bucket=aws.landing, lake_bucket=aws.lake,
        deliveries=["d1"], chunks=[ref],
    )  # fmt: skip
    storage.write_json(aws.lake, paths.manifest, manifest.model_dump())
    monkeypatch.setenv("HEALTHIMAGING_DATASTORE_ID", DATASTORE)
    monkeypatch.setenv("HEALTHIMAGING_ROLE_ARN", ROLE)
    return ref


@pytest.fixture
def healthimaging(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubber]:
    """HealthImaging as a Stubber (any call nobody stubbed fails); every other service stays moto."""
    with stubbed_in_handlers(monkeypatch, "medical-imaging") as stubber:
        yield stubber


def import_event(ref: ChunkRef) -> dict[str, Any]:
    config = RunConfig(poll_seconds=5, imaging_backend="healthimaging", series_stable_seconds=0)
    return {"chunk": ref.model_dump(), "config": config.model_dump(), "execution_started_at": AT.isoformat()}


def search(found: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    request = {
        "datastoreId": DATASTORE,
        "searchCriteria": {
            "filters": [{"values": [{"DICOMSeriesInstanceUID": SERIES_UID}], "operator": "EQUAL"}]
        },
        "maxResults": 50,
    }
    return {"imageSetsMetadataSummaries": found}, request


def stored_set() -> dict[str, Any]:
    return {
        "imageSetId": IMAGE_SET, "version": 1, "isPrimary": True, "createdAt": AT, "updatedAt": AT,
        "DICOMTags": {"DICOMPatientId": "pt-0001", "DICOMSeriesInstanceUID": SERIES_UID},
    }  # fmt: skip


def metadata(sops: list[str]) -> dict[str, Any]:
    document = {
        "SchemaVersion": "1.1",
        "DatastoreID": DATASTORE,
        "ImageSetID": IMAGE_SET,
        "Study": {"Series": {SERIES_UID: {"Instances": {s: {"DICOM": {"SOPInstanceUID": s}} for s in sops}}}},
    }
    blob = gzip.compress(json.dumps(document).encode())
    return {
        "imageSetMetadataBlob": StreamingBody(io.BytesIO(blob), len(blob)),
        "contentType": "application/json",
        "contentEncoding": "gzip",
    }


def start_request(ref: ChunkRef, lake: str) -> dict[str, Any]:
    prefix = f"s3://{lake}/{healthimaging_prefix(ref)}"
    return {
        "jobName": import_job_name(RUN_ID, ref.chunk_id),
        "dataAccessRoleArn": ROLE,
        "clientToken": import_client_token(RUN_ID, ref.chunk_id),
        "datastoreId": DATASTORE,
        "inputS3Uri": f"{prefix}input/",
        "outputS3Uri": f"{prefix}output/",
    }


def job(status: str, ref: ChunkRef, lake: str) -> dict[str, Any]:
    prefix = f"s3://{lake}/{healthimaging_prefix(ref)}"
    return {
        "jobProperties": {
            "jobId": JOB_ID, "jobName": import_job_name(RUN_ID, ref.chunk_id), "jobStatus": status,
            "datastoreId": DATASTORE, "dataAccessRoleArn": ROLE, "submittedAt": AT,
            "inputS3Uri": f"{prefix}input/", "outputS3Uri": f"{prefix}output/{DATASTORE}-DicomImport-{JOB_ID}/",
        }
    }  # fmt: skip


def test_new_instances_are_imported_polled_and_their_image_set_recorded(
    aws: SimpleNamespace, chunk: ChunkRef, healthimaging: Stubber, lambda_context: Any
) -> None:
    # Given a data store that does not hold the series yet
    healthimaging.add_response("search_image_sets", *search([]))
    healthimaging.add_response(
        "start_dicom_import_job",
        {"datastoreId": DATASTORE, "jobId": JOB_ID, "jobStatus": "SUBMITTED", "submittedAt": AT},
        start_request(chunk, aws.lake),
    )

    # When the chunk is imported
    started = imaging_import.lambda_handler(import_event(chunk), lambda_context)

    # Then the six instances are indexed, copied for HealthImaging, and the chunk waits for the job
    assert (started["status"], started["rows"], started["job"]["job_id"]) == ("IN_PROGRESS", 6, JOB_ID)
    copied = sorted(storage.list_keys(aws.lake, f"{healthimaging_prefix(chunk)}input/"))
    assert len(copied) == 6

    # When the job is still running, then has ended with one file rejected
    get = {"datastoreId": DATASTORE, "jobId": JOB_ID}
    healthimaging.add_response("get_dicom_import_job", job("IN_PROGRESS", chunk, aws.lake), get)
    polled = imaging_poll.lambda_handler(started, lambda_context)
    assert (polled["status"], polled["attempt"]) == ("IN_PROGRESS", 1)
    folder = f"{healthimaging_prefix(chunk)}output/{DATASTORE}-DicomImport-{JOB_ID}/"
    success = [
        {"inputFile": k, "importResponse": {"imageSetId": IMAGE_SET, "isPrimary": True}} for k in copied[1:]
    ]
    failure = [
        {"inputFile": copied[0], "exception": {"exceptionType": "ValidationException", "message": "bad tag"}}
    ]
    aws.s3.put_object(
        Bucket=aws.lake, Key=f"{folder}SUCCESS/success.ndjson", Body="\n".join(map(json.dumps, success))
    )
    aws.s3.put_object(Bucket=aws.lake, Key=f"{folder}FAILURE/failure.ndjson", Body=json.dumps(failure[0]))
    healthimaging.add_response("get_dicom_import_job", job("COMPLETED", chunk, aws.lake), get)
    ended = imaging_poll.lambda_handler(polled, lambda_context)

    # Then the rejected file is quarantined against the object delivered in the landing bucket
    assert (ended["status"], ended["quarantined"]) == ("COMPLETED", 1)
    [record] = [r for r in quarantine.load_run_records(aws.lake, RUN_ID) if r.stage == "poll"]
    assert (record.bucket, record.reason) == (aws.landing, "healthimaging-rejected")
    assert record.key.startswith("incoming/d1/mr-brain/")
    assert "bad tag" in record.detail

    # And the catalog step writes the image set id into the series row
    catalogued = imaging_catalog.lambda_handler(
        {"run_id": RUN_ID, "modality": "imaging", "config": import_event(chunk)["config"], "chunks": [ended]},
        lambda_context,
    )
    assert {c["table"] for c in catalogued["commits"]} == {"imaging.instances", "imaging.series"}
    series = read_table("imaging.series")
    assert series is not None
    assert series.select(["series_uid", "image_set_id"]).to_pylist() == [
        {"series_uid": SERIES_UID, "image_set_id": IMAGE_SET}
    ]


def test_a_redelivery_of_instances_already_stored_starts_no_job(
    aws: SimpleNamespace, chunk: ChunkRef, healthimaging: Stubber, lambda_context: Any
) -> None:
    # Given a data store whose image set already holds every instance of the series
    healthimaging.add_response("search_image_sets", *search([stored_set()]))
    healthimaging.add_response(
        "get_image_set_metadata", metadata(SOP_UIDS), {"datastoreId": DATASTORE, "imageSetId": IMAGE_SET}
    )

    # When the same files are imported again (the Stubber fails on any StartDICOMImportJob)
    status = imaging_import.lambda_handler(import_event(chunk), lambda_context)

    # Then the chunk is complete without a job, nothing was copied, and the image set is remembered
    assert (status["status"], status["job"]) == ("COMPLETED", None)
    assert list(storage.list_keys(aws.lake, f"{healthimaging_prefix(chunk)}input/")) == []
    recorded = storage.read_json(aws.lake, f"{healthimaging_prefix(chunk)}image_sets.json")
    assert recorded == {SERIES_UID: [IMAGE_SET]}


def test_only_the_instances_the_store_lacks_are_imported(
    aws: SimpleNamespace, chunk: ChunkRef, healthimaging: Stubber, lambda_context: Any, tmp_path: Path
) -> None:
    # Given a data store holding the first four instances of the series (the rest came in a later delivery)
    healthimaging.add_response("search_image_sets", *search([stored_set()]))
    healthimaging.add_response(
        "get_image_set_metadata", metadata(SOP_UIDS[:4]), {"datastoreId": DATASTORE, "imageSetId": IMAGE_SET}
    )
    healthimaging.add_response(
        "start_dicom_import_job",
        {"datastoreId": DATASTORE, "jobId": JOB_ID, "jobStatus": "SUBMITTED", "submittedAt": AT},
        start_request(chunk, aws.lake),
    )

    # When the chunk is imported
    status = imaging_import.lambda_handler(import_event(chunk), lambda_context)

    # Then only the two missing instances were staged for the import
    assert status["status"] == "IN_PROGRESS"
    assert len(list(storage.list_keys(aws.lake, f"{healthimaging_prefix(chunk)}input/"))) == 2
