"""Reading a HealthImaging import job's output back, on moto's S3.

The output folders below follow the HealthImaging Developer Guide, "Understanding import jobs":
`<output>/<datastore>-DicomImport-<job>/` holding `job-output-manifest.json` (`jobSummary`),
`SUCCESS/success.ndjson` (`inputFile` + `importResponse.imageSetId/isPrimary`),
`FAILURE/failure.ndjson` (`inputFile` + `exception.exceptionType/message`) and `WARNING/warning.ndjson`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from mmhealth.errors import BackendJobFailed, TransientError
from mmhealth.imaging.healthimaging import ImageSetResult, ImportManifest, import_outcome, job_status
from tests.unit.backend_fixtures import BUCKET, moto_bucket, ndjson, put, stubbed

DATASTORE = "9f2c4e7a1b3d5f60718293a4b5c6d7e8"
OTHER_DATASTORE = "00112233445566778899aabbccddeeff"
JOB_ID = "c145fbb27b192af392f8ce6e7838e34f"
OTHER_JOB = "0d1e2f3a4b5c6d7e8f90a1b2c3d4e5f6"
OUTPUT = f"s3://{BUCKET}/healthimaging-output/"
FOLDER = f"healthimaging-output/{DATASTORE}-DicomImport-{JOB_ID}/"
INPUT_PREFIX = "staging/run-1/imaging/healthimaging/imaging-0000/"

SET_1 = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
SET_2 = "1b2c3d4e5f60718293a4b5c6d7e8f90a"
SET_3 = "2c3d4e5f60718293a4b5c6d7e8f90a1b"

# Personal values that must never reach a failure.
SECRET_NAME = "Okonkwo-Barrett^Wilhelmina"
SECRET_BIRTH_DATE = "19470312"


@pytest.fixture
def s3() -> Iterator[Any]:
    with moto_bucket() as client:
        yield client


def key(n: int) -> str:
    return f"{INPUT_PREFIX}{n:04d}.dcm"


def manifest(
    *image_sets: dict[str, Any],
    scanned: int,
    imported: int,
    customer_errors: int,
    server_errors: int = 0,
    folder: str = FOLDER,
) -> str:
    """A job-output-manifest.json in the guide's shape."""
    uri = f"s3://{BUCKET}/{folder}"
    return json.dumps(
        {
            "jobSummary": {
                "jobId": JOB_ID,
                "datastoreId": DATASTORE,
                "inputS3Uri": f"s3://{BUCKET}/{INPUT_PREFIX}",
                "outputS3Uri": uri,
                "successOutputS3Uri": f"{uri}SUCCESS/",
                "failureOutputS3Uri": f"{uri}FAILURE/",
                "warningsOutputS3Uri": f"{uri}WARNING/",
                "numberOfScannedFiles": scanned,
                "numberOfImportedFiles": imported,
                "numberOfFilesWithCustomerError": customer_errors,
                "numberOfFilesWithServerError": server_errors,
                "numberOfGeneratedImageSets": len(image_sets),
                "imageSetsSummary": list(image_sets),
            }
        }
    )


def image_set(image_set_id: str, instances: int, **extra: Any) -> dict[str, Any]:
    return {"imageSetId": image_set_id, "numberOfMatchedSOPInstances": instances, **extra}


def success(n: int, image_set_id: str, *, primary: bool = True) -> dict[str, Any]:
    return {"inputFile": key(n), "importResponse": {"imageSetId": image_set_id, "isPrimary": primary}}


def failure(n: int, exception_type: str, message: str) -> dict[str, Any]:
    return {"inputFile": key(n), "exception": {"exceptionType": exception_type, "message": message}}


def warning(n: int, image_set_id: str, *warnings: tuple[int, str]) -> dict[str, Any]:
    return {
        "inputFile": key(n),
        "importResponse": {
            "imageSetId": image_set_id,
            "imageSetVersion": 1,
            "isPrimary": True,
            "warnings": [
                {"warning_reason_code": code, "type": kind, "message": "The file was imported but ..."}
                for code, kind in warnings
            ],
        },
    }


# ------------------------------------------------------------------------------------------ outcome


def test_a_completed_job_lists_its_image_sets_and_each_rejected_file(s3: Any) -> None:
    # Given the guide's example: 5 files scanned, 3 imported into 2 image sets, 2 rejected - next to
    # another job's output and a folder marker
    put(
        s3,
        f"{FOLDER}job-output-manifest.json",
        manifest(image_set(SET_1, 2), image_set(SET_2, 1), scanned=5, imported=3, customer_errors=2),
    )
    put(s3, f"{FOLDER}SUCCESS/", b"")
    put(
        s3, f"{FOLDER}SUCCESS/success.ndjson", ndjson(success(5, SET_1), success(4, SET_1), success(2, SET_2))
    )
    put(
        s3,
        f"{FOLDER}FAILURE/failure.ndjson",
        ndjson(
            failure(1, "ValidationException", "DICOM attribute TransferSyntaxUID does not exist"),
            failure(3, "ValidationException", "DICOM attribute SOPClassUID does not exist"),
        ),
    )
    put(
        s3,
        f"healthimaging-output/{DATASTORE}-DicomImport-{OTHER_JOB}/FAILURE/failure.ndjson",
        ndjson({"x": 1}),
    )

    # When the outcome is read
    outcome = import_outcome(s3, OUTPUT, JOB_ID)

    # Then the image sets carry their instance counts and input files, and every failure names the file
    # and HealthImaging's reason
    assert outcome.output_uri == f"s3://{BUCKET}/{FOLDER}"
    assert (outcome.imported, outcome.failed, outcome.unreported_failures, outcome.clean) == (3, 2, 0, False)
    assert outcome.image_sets == [
        ImageSetResult(image_set_id=SET_1, is_primary=True, instances=2, input_files=[key(4), key(5)]),
        ImageSetResult(image_set_id=SET_2, is_primary=True, instances=1, input_files=[key(2)]),
    ]
    assert [f.detail for f in outcome.failures] == [
        f"{key(1)}: ValidationException: DICOM attribute TransferSyntaxUID does not exist",
        f"{key(3)}: ValidationException: DICOM attribute SOPClassUID does not exist",
    ]
    assert (outcome.failures[1].file, outcome.failures[1].line) == ("FAILURE/failure.ndjson", 2)
    assert outcome.manifest == ImportManifest(
        files_scanned=5,
        files_imported=3,
        files_with_customer_error=2,
        files_with_server_error=0,
        image_sets_generated=2,
    )


def test_a_completed_job_can_hide_rejected_files(s3: Any) -> None:
    # Given a job GetDICOMImportJob reported COMPLETED, whose manifest counts one server-side failure that
    # no FAILURE line explains
    put(
        s3,
        f"{FOLDER}job-output-manifest.json",
        manifest(image_set(SET_1, 2), scanned=3, imported=2, customer_errors=0, server_errors=1),
    )
    put(s3, f"{FOLDER}SUCCESS/success.ndjson", ndjson(success(1, SET_1), success(2, SET_1)))

    # When the outcome is read
    outcome = import_outcome(s3, OUTPUT, JOB_ID)

    # Then the hidden failure surfaces and the job is not clean
    assert (outcome.imported, outcome.failed, outcome.unreported_failures) == (2, 0, 1)
    assert not outcome.clean


def test_a_clean_job_is_clean(s3: Any) -> None:
    # HealthImaging writes no FAILURE/ when nothing failed
    put(
        s3,
        f"{FOLDER}job-output-manifest.json",
        manifest(image_set(SET_1, 2), scanned=2, imported=2, customer_errors=0),
    )
    put(s3, f"{FOLDER}SUCCESS/success.ndjson", ndjson(success(1, SET_1), success(2, SET_1)) + "\n")

    outcome = import_outcome(s3, OUTPUT, JOB_ID)

    assert (outcome.imported, outcome.failed, outcome.failures, outcome.non_primary, outcome.clean) == (
        2,
        0,
        [],
        [],
        True,
    )


def test_a_conflicting_reimport_shows_as_a_non_primary_and_an_updated_image_set(s3: Any) -> None:
    # Given a job that added an instance to an existing primary image set (version 2) and put files
    # whose metadata conflicted with the store into a non-primary image set - which the manifest's
    # summary calls primary but the success line does not
    put(
        s3,
        f"{FOLDER}job-output-manifest.json",
        manifest(
            image_set(SET_1, 3, imageSetVersion=2, isPrimary=True),
            image_set(SET_3, 1, imageSetVersion=1, isPrimary=True),
            scanned=2,
            imported=2,
            customer_errors=0,
        ),
    )
    put(s3, f"{FOLDER}SUCCESS/success.ndjson", ndjson(success(1, SET_1), success(2, SET_3, primary=False)))

    # When the outcome is read
    outcome = import_outcome(s3, OUTPUT, JOB_ID)

    # Then the conflict is not hidden: the duplicate is listed, the job is not clean, the update is seen
    assert outcome.non_primary == [SET_3]
    assert outcome.updated == [SET_1]
    assert [(s.image_set_id, s.created, s.updated) for s in outcome.image_sets] == [
        (SET_1, False, True),
        (SET_3, True, False),
    ]
    assert not outcome.clean
    assert outcome.failed == 0


def test_the_guides_python_literals_are_read(s3: Any) -> None:
    # The guide's success.ndjson example writes `True`, which is not JSON
    put(
        s3,
        f"{FOLDER}SUCCESS/success.ndjson",
        f'{{"inputFile":"{key(1)}","importResponse":{{"imageSetId":"{SET_1}", "isPrimary": True}}}}\n'
        f'{{"inputFile":"{key(2)}","importResponse":{{"imageSetId":"{SET_2}", "isPrimary": False}}}}\n',
    )

    outcome = import_outcome(s3, OUTPUT, JOB_ID)

    assert [(s.image_set_id, s.is_primary) for s in outcome.image_sets] == [(SET_1, True), (SET_2, False)]
    assert outcome.imported == 2


def test_files_imported_with_warnings_count_once_and_name_their_warnings(s3: Any) -> None:
    # Given two files imported with warnings, one of them also listed in success.ndjson
    put(s3, f"{FOLDER}SUCCESS/success.ndjson", ndjson(success(1, SET_1), success(2, SET_1)))
    put(
        s3,
        f"{FOLDER}WARNING/warning.ndjson",
        ndjson(
            warning(2, SET_1, (45330, "InvalidOffsetTable")),
            warning(3, SET_1, (45312, "TRANSCODING_EXCEPTION"), (45330, "InvalidOffsetTable")),
        ),
    )

    outcome = import_outcome(s3, OUTPUT, JOB_ID)

    assert (outcome.imported, outcome.warnings) == (3, 2)
    assert outcome.warning_types == {"InvalidOffsetTable (45330)": 2, "TRANSCODING_EXCEPTION (45312)": 1}
    assert outcome.image_sets[0].input_files == [key(1), key(2), key(3)]
    assert outcome.image_sets[0].version == 1
    assert outcome.clean  # warnings are not rejections


def test_failure_messages_never_carry_personal_values(s3: Any) -> None:
    # Given FAILURE lines whose messages quote DICOM values, one echoing the rejected data set, and a
    # line that is not JSON at all
    lines = [
        failure(1, "ValidationException", f"PatientName '{SECRET_NAME}' exceeds the maximum length of 64"),
        failure(2, "ValidationException", f'Element (0010,0030) value "{SECRET_BIRTH_DATE}" is not a date'),
        failure(3, "ValidationException", f"PatientName {SECRET_NAME} exceeds the maximum length"),
        failure(4, "ValidationException", f"PatientBirthDate={SECRET_BIRTH_DATE} invalid"),
        {
            **failure(5, "ValidationException", "DICOM attribute SOPClassUID does not exist"),
            "dataset": {"PatientName": SECRET_NAME, "PatientBirthDate": SECRET_BIRTH_DATE},
        },
        {"inputFile": key(6), "exception": "InternalServerException"},
        {"inputFile": key(7)},
    ]
    put(
        s3,
        f"{FOLDER}FAILURE/failure.ndjson",
        ndjson(*lines) + f'not json, but {{"PatientName": "{SECRET_NAME}"}}\n',
    )

    # When the outcome is read
    outcome = import_outcome(s3, OUTPUT, JOB_ID)

    # Then each failure keeps the file and HealthImaging's reason, with the values redacted
    assert [f.detail for f in outcome.failures] == [
        f"{key(1)}: ValidationException: PatientName <value> exceeds the maximum length of 64",
        f"{key(2)}: ValidationException: Element (0010,0030) value <value> is not a date",
        f"{key(3)}: ValidationException: PatientName <value> exceeds the maximum length",
        f"{key(4)}: ValidationException: PatientBirthDate=<value> invalid",
        f"{key(5)}: ValidationException: DICOM attribute SOPClassUID does not exist",
        f"{key(6)}: error: InternalServerException",
        f"{key(7)}: error: rejected by HealthImaging without a reason",
        "?: error: unreadable FAILURE line (not a JSON object)",
    ]
    dumped = json.dumps([f.model_dump() for f in outcome.failures])
    for secret in (SECRET_NAME, "Okonkwo", "Wilhelmina", SECRET_BIRTH_DATE):
        assert secret not in dumped
    assert outcome.failed == 8


def test_only_the_first_failures_are_listed_but_all_are_counted(s3: Any) -> None:
    lines = [
        failure(n, "ValidationException", "DICOM attribute SOPClassUID does not exist") for n in range(25)
    ]
    put(s3, f"{FOLDER}FAILURE/failure-1.ndjson", ndjson(*lines[:10]))
    put(s3, f"{FOLDER}FAILURE/failure-2.ndjson", ndjson(*lines[10:]))

    outcome = import_outcome(s3, OUTPUT, JOB_ID, max_failures=12)

    assert outcome.failed == 25
    assert [f.input_file for f in outcome.failures] == [key(n) for n in range(12)]
    assert [(f.file, f.line) for f in outcome.failures[9:11]] == [
        ("FAILURE/failure-1.ndjson", 10),
        ("FAILURE/failure-2.ndjson", 1),
    ]


def test_the_image_sets_of_each_series_come_from_the_files_the_importer_staged(s3: Any) -> None:
    # Given a series split by HealthImaging into a primary and a non-primary image set, and a second series
    put(
        s3,
        f"{FOLDER}SUCCESS/success.ndjson",
        ndjson(success(1, SET_2, primary=False), success(2, SET_1), success(3, SET_1), success(4, SET_3)),
    )
    series_of_file = {key(1): "1.2.3", key(2): "1.2.3", key(3): "1.2.3", key(4): "1.2.4"}

    # When joined with the series the importer read from each staged file
    by_series = import_outcome(s3, OUTPUT, JOB_ID).image_sets_by_series(series_of_file)

    # Then each series names its image sets, primary first
    assert by_series == {"1.2.3": [SET_1, SET_2], "1.2.4": [SET_3]}


# ------------------------------------------------------------------------------------------ the folder


def test_the_output_folder_is_found_by_job_id_among_others(s3: Any) -> None:
    # Given folders of other jobs, one of them with an id that ends like ours, and ours
    put(
        s3,
        f"healthimaging-output/{DATASTORE}-DicomImport-{OTHER_JOB}/SUCCESS/success.ndjson",
        ndjson(success(9, SET_3)),
    )
    put(
        s3,
        f"healthimaging-output/{DATASTORE}-DicomImport-ab{JOB_ID}/SUCCESS/success.ndjson",
        ndjson(success(8, SET_3)),
    )
    put(s3, f"{FOLDER}SUCCESS/success.ndjson", ndjson(success(1, SET_1)))

    # When the outcome is read from the output URI the job was started with (no data store id)
    outcome = import_outcome(s3, OUTPUT, JOB_ID)

    # Then only our folder was read
    assert outcome.output_uri == f"s3://{BUCKET}/{FOLDER}"
    assert [s.image_set_id for s in outcome.image_sets] == [SET_1]


def test_the_job_folder_itself_a_known_datastore_and_a_job_id_folder_are_accepted(s3: Any) -> None:
    put(s3, f"{FOLDER}SUCCESS/success.ndjson", ndjson(success(1, SET_1)))
    put(s3, f"by-job/{JOB_ID}/SUCCESS/success.ndjson", ndjson(success(2, SET_2)))

    # the folder as GetDICOMImportJob reports it (with or without the trailing slash)
    assert import_outcome(s3, f"s3://{BUCKET}/{FOLDER}", JOB_ID).imported == 1
    assert import_outcome(s3, f"s3://{BUCKET}/{FOLDER.rstrip('/')}", JOB_ID).imported == 1
    # the output URI plus the data store id: no folder search
    outcome = import_outcome(s3, OUTPUT.rstrip("/"), JOB_ID, datastore_id=DATASTORE)
    assert (outcome.imported, outcome.manifest) == (1, None)
    # a folder named after the job id alone
    by_job = import_outcome(s3, f"s3://{BUCKET}/by-job/", JOB_ID)
    assert (by_job.output_uri, [s.image_set_id for s in by_job.image_sets]) == (
        f"s3://{BUCKET}/by-job/{JOB_ID}/",
        [SET_2],
    )


def test_a_failed_job_without_output_is_a_backend_failure(s3: Any) -> None:
    # Given a job HealthImaging reports FAILED, which wrote nothing, next to another job's output
    put(s3, f"healthimaging-output/{DATASTORE}-DicomImport-{OTHER_JOB}/job-output-manifest.json", "{}")
    with stubbed("medical-imaging") as (imaging, stubber):
        stubber.add_response(
            "get_dicom_import_job",
            {
                "jobProperties": {
                    "jobId": JOB_ID,
                    "jobName": "run-1/imaging-0000",
                    "jobStatus": "FAILED",
                    "datastoreId": DATASTORE,
                    "dataAccessRoleArn": "arn:aws:iam::123456789012:role/mmpipe-healthimaging-import",
                    "inputS3Uri": f"s3://{BUCKET}/{INPUT_PREFIX}",
                    "outputS3Uri": f"s3://{BUCKET}/{FOLDER}",
                    "endedAt": datetime(2026, 1, 5, 9, 1, tzinfo=UTC),
                    "message": "Access denied to the input S3 location",
                }
            },
            {"datastoreId": DATASTORE, "jobId": JOB_ID},
        )

        # When polled, and the output is read as after every terminal status
        state, messages = job_status(imaging, datastore_id=DATASTORE, job_id=JOB_ID)

    # Then the chunk fails with the service's message, and the missing output names the job and the place
    assert state == "FAILED"
    assert messages[0].endswith("Access denied to the input S3 location")
    with pytest.raises(BackendJobFailed, match=f"{JOB_ID}: no output folder .* under {OUTPUT}"):
        import_outcome(s3, OUTPUT, JOB_ID)


def test_two_folders_of_one_job_are_ambiguous(s3: Any) -> None:
    put(s3, f"{FOLDER}SUCCESS/success.ndjson", ndjson(success(1, SET_1)))
    put(
        s3,
        f"healthimaging-output/{OTHER_DATASTORE}-DicomImport-{JOB_ID}/SUCCESS/success.ndjson",
        ndjson(success(1, SET_2)),
    )

    with pytest.raises(BackendJobFailed, match="several output folders"):
        import_outcome(s3, OUTPUT, JOB_ID)
    # the data store id settles it
    assert import_outcome(s3, OUTPUT, JOB_ID, datastore_id=DATASTORE).image_sets[0].image_set_id == SET_1


def test_an_unreadable_manifest_is_left_out(s3: Any) -> None:
    put(s3, f"{FOLDER}job-output-manifest.json", "{truncated")
    put(s3, f"{FOLDER}SUCCESS/success.ndjson", ndjson(success(1, SET_1)))

    outcome = import_outcome(s3, OUTPUT, JOB_ID)

    assert (outcome.imported, outcome.manifest, outcome.clean) == (1, None, True)


@pytest.mark.parametrize("job_id", ["", "C145FBB2", "../" + JOB_ID, "x" * 33])
def test_a_job_id_the_service_would_not_issue_is_refused(s3: Any, job_id: str) -> None:
    # An empty or odd id would match other jobs' folders
    put(s3, f"{FOLDER}SUCCESS/success.ndjson", ndjson(success(1, SET_1)))

    with pytest.raises(ValueError, match="job id"):
        import_outcome(s3, OUTPUT, job_id)


def test_s3_throttling_is_transient() -> None:
    with stubbed("s3") as (s3, stubber):
        stubber.add_client_error("list_objects_v2", service_error_code="SlowDown", http_status_code=503)

        with pytest.raises(TransientError, match="S3 ListObjectsV2: SlowDown"):
            import_outcome(s3, OUTPUT, JOB_ID, datastore_id=DATASTORE)
