"""Staging NDJSON for HealthLake and reading a job's output back, on moto's S3.

The output folders below follow HealthLake's documented layout (`<datastore>-FHIR_IMPORT-<job>/` with a
manifest, SUCCESS/ and FAILURE/) and the FAILURE line shape observed in real output
(`lineId`, `resourceId`, `resourceType`, `UpdateResourceResponse.jsonBlob` = OperationOutcome).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config

from mmhealth.clinical.healthlake import ImportManifest, import_outcome, stage_ndjson
from mmhealth.errors import BackendJobFailed, TransientError
from tests.unit.backend_fixtures import BUCKET, moto_bucket, ndjson, put, stubbed

DATASTORE = "9f2c4e7a1b3d5f60718293a4b5c6d7e8"
JOB_ID = "c145fbb27b192af392f8ce6e7838e34f"
OTHER_JOB = "0d1e2f3a4b5c6d7e8f90a1b2c3d4e5f6"
OUTPUT = f"s3://{BUCKET}/healthlake-output/"
FOLDER = f"healthlake-output/{DATASTORE}-FHIR_IMPORT-{JOB_ID}/"

# A patient name that must never reach a failure message.
SECRET_NAME = "Wilhelmina Okonkwo-Barrett"


@pytest.fixture
def s3() -> Iterator[Any]:
    with moto_bucket() as client:
        yield client


def manifest(scanned: int, imported: int, customer_errors: int, server_errors: int = 0) -> str:
    folder = f"{OUTPUT}{DATASTORE}-FHIR_IMPORT-{JOB_ID}/"
    return json.dumps(
        {
            "inputDataConfig": {"s3Uri": f"s3://{BUCKET}/staging/run-1/clinical/healthlake/clinical-0000/"},
            "outputDataConfig": {
                "s3Uri": folder,
                "encryptionKeyID": "arn:aws:kms:us-east-1:123456789012:key/fbbbfee3-20b3-42a5-a99d-c48c655ed545",
            },
            "successOutput": {"successOutputS3Uri": f"{folder}SUCCESS/"},
            "failureOutput": {"failureOutputS3Uri": f"{folder}FAILURE/"},
            "numberOfScannedFiles": 1,
            "numberOfFilesImported": 1,
            "sizeOfScannedFilesInMB": 0.023627,
            "sizeOfDataImportedSuccessfullyInMB": 0.011232,
            "numberOfResourcesScanned": scanned,
            "numberOfResourcesImportedSuccessfully": imported,
            "numberOfResourcesWithCustomerError": customer_errors,
            "numberOfResourcesWithServerError": server_errors,
        }
    )


def success_line(line_id: int, resource_type: str, resource_id: str) -> dict[str, Any]:
    return {
        "lineId": line_id,
        "resourceId": resource_id,
        "resourceType": resource_type,
        "UpdateResourceResponse": {
            "jsonBlob": {"resourceType": resource_type, "id": resource_id},
            "statusCode": 201,
        },
    }


def failure_line(
    line_id: int, resource_type: str, resource_id: str, *issues: dict[str, Any], status: int = 400
) -> dict[str, Any]:
    return {
        "lineId": line_id,
        "resourceId": resource_id,
        "resourceType": resource_type,
        "UpdateResourceResponse": {
            "jsonBlob": {"resourceType": "OperationOutcome", "issue": list(issues)},
            "statusCode": status,
        },
    }


def issue(severity: str, code: str, diagnostics: str, *expression: str) -> dict[str, Any]:
    found: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        found["expression"] = list(expression)
    return found


# ------------------------------------------------------------------------------------------ staging


def test_stage_writes_one_compact_utf8_json_per_line(s3: Any) -> None:
    # Given valid resources, one with non-ASCII text
    resources: list[dict[str, Any]] = [
        {"resourceType": "Patient", "id": "pt-0001", "gender": "female"},
        {
            "resourceType": "Condition",
            "id": "cond-7",
            "subject": {"reference": "Patient/pt-0001"},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "59621000"}], "text": "Ménière"},
        },
    ]
    key = "staging/run-1/clinical/healthlake/clinical-0000/resources.ndjson"

    # When staged
    count = stage_ndjson(s3, BUCKET, key, iter(resources))

    # Then the object holds exactly one JSON document per line, UTF-8 encoded, newline-terminated
    obj = s3.get_object(Bucket=BUCKET, Key=key)
    body = obj["Body"].read()
    assert count == 2
    assert body.endswith(b"\n")
    assert body.count(b"\n") == 2
    assert "Ménière".encode() in body
    assert [json.loads(line) for line in body.decode("utf-8").splitlines()] == resources
    assert obj["ContentType"] == "application/fhir+ndjson"


def test_staging_nothing_writes_nothing(s3: Any) -> None:
    key = "staging/run-1/clinical/healthlake/clinical-0000/resources.ndjson"

    assert stage_ndjson(s3, BUCKET, key, []) == 0
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET)


@pytest.mark.parametrize(
    ("key", "resources", "match"),
    [
        ("staged/resources.json", [{"resourceType": "Patient"}], r"\.ndjson"),
        (
            "staged/resources.ndjson",
            [{"resourceType": "Patient"}, {"id": "x"}],
            "item 2 is not a FHIR resource",
        ),
        (
            "staged/resources.ndjson",
            [{"resourceType": "Observation", "valueQuantity": float("nan")}],
            "item 1",
        ),
    ],
)
def test_staging_refuses_what_healthlake_cannot_import(
    s3: Any, key: str, resources: list[dict[str, Any]], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        stage_ndjson(s3, BUCKET, key, resources)

    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET)


# ------------------------------------------------------------------------------------------ outcome


def test_completed_with_errors_lists_each_rejected_resource(s3: Any) -> None:
    # Given the output of a job that imported 3 resources and rejected 2, next to another job's output
    put(s3, f"{FOLDER}Manifest.json", manifest(scanned=5, imported=3, customer_errors=2))
    put(
        s3,
        f"{FOLDER}SUCCESS/resources.ndjson",
        ndjson(
            success_line(1, "Patient", "pt-0001"),
            success_line(2, "Patient", "pt-0002"),
            success_line(4, "Observation", "obs-9"),
        ),
    )
    put(
        s3,
        f"{FOLDER}FAILURE/resources.ndjson",
        ndjson(
            failure_line(
                3,
                "Condition",
                "cond-7",
                issue("error", "required", "Condition.subject: minimum required = 1", "Condition.subject"),
                issue("warning", "informational", "Best practice: code.text should be present"),
            ),
            failure_line(
                5, "Encounter", "enc-2", issue("error", "code-invalid", "Unknown code 'XYZ' for class")
            ),
        ),
    )
    put(
        s3,
        f"healthlake-output/{DATASTORE}-FHIR_IMPORT-{OTHER_JOB}/FAILURE/resources.ndjson",
        ndjson({"x": 1}),
    )
    put(s3, "healthlake-output/.healthlake_write_access_check_file.temp", b"")

    # When the outcome is read
    outcome = import_outcome(s3, OUTPUT, JOB_ID)

    # Then successes are counted and every failure names the resource and HealthLake's reason
    assert outcome.output_uri == f"s3://{BUCKET}/{FOLDER}"
    assert (outcome.succeeded, outcome.failed, outcome.unreported_failures, outcome.clean) == (3, 2, 0, False)
    assert [f.detail for f in outcome.failures] == [
        "Condition/cond-7: HTTP 400: error required: Condition.subject: minimum required = 1 (at Condition.subject)",
        "Encounter/enc-2: HTTP 400: error code-invalid: Unknown code 'XYZ' for class",
    ]
    first = outcome.failures[0]
    assert (first.file, first.line, first.input_line, first.status_code) == (
        "FAILURE/resources.ndjson",
        1,
        3,
        400,
    )
    assert outcome.manifest == ImportManifest(
        files_scanned=1,
        files_imported=1,
        resources_scanned=5,
        resources_imported=3,
        resources_with_customer_error=2,
        resources_with_server_error=0,
    )


def test_a_completed_job_can_hide_rejected_resources(s3: Any) -> None:
    # Given a job DescribeFHIRImportJob reported COMPLETED, whose output still has a FAILURE line, and a
    # manifest counting one more server-side failure than the FAILURE files explain
    put(s3, f"{FOLDER}Manifest.json", manifest(scanned=4, imported=2, customer_errors=1, server_errors=1))
    put(
        s3,
        f"{FOLDER}SUCCESS/resources.ndjson",
        ndjson(success_line(1, "Patient", "pt-1"), success_line(2, "Patient", "pt-2")),
    )
    put(
        s3,
        f"{FOLDER}FAILURE/resources.ndjson",
        ndjson(
            failure_line(3, "Observation", "obs-3", issue("error", "invalid", "Observation.status: required"))
        ),
    )

    # When the outcome is read
    outcome = import_outcome(s3, OUTPUT, JOB_ID)

    # Then the hidden failures surface: one listed, one only counted by the manifest
    assert (outcome.succeeded, outcome.failed, outcome.unreported_failures) == (2, 1, 1)
    assert not outcome.clean
    assert (
        outcome.failures[0].detail
        == "Observation/obs-3: HTTP 400: error invalid: Observation.status: required"
    )


def test_failure_messages_never_carry_resource_content(s3: Any) -> None:
    # Given FAILURE lines in every accepted variant, some carrying the whole rejected resource
    patient = {
        "resourceType": "Patient",
        "id": "pt-0042",
        "name": [{"family": "Okonkwo-Barrett", "given": ["Wilhelmina"], "text": SECRET_NAME}],
        "telecom": [{"system": "phone", "value": "+44 20 7946 0958"}],
    }
    lines = [
        # observed shape, jsonBlob serialised as a string, resource echoed alongside
        {**failure_line(1, "Patient", "pt-0042", status=400), "resource": patient}
        | {
            "UpdateResourceResponse": {
                "jsonBlob": json.dumps(
                    {
                        "resourceType": "OperationOutcome",
                        "issue": [issue("error", "invalid", "Patient.birthDate: invalid date")],
                    }
                ),
                "statusCode": 400,
            }
        },
        # the failed resource itself plus a plain error string
        {**patient, "id": "pt-0043", "errorMessage": "Resource id collides with an existing Group"},
        # an OperationOutcome on its own line
        {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "fatal", "code": "exception", "details": {"text": "Internal error"}}],
        },
        # a status and nothing else
        {"resourceType": "Patient", "resourceId": "pt-0044", "UpdateResourceResponse": {"statusCode": 409}},
        # the resource, no reason at all
        {**patient, "id": "pt-0045"},
    ]
    put(
        s3,
        f"{FOLDER}FAILURE/v1-0/Patient.ndjson",
        ndjson(*lines) + 'not json, but {"name": "' + SECRET_NAME + '"}\n',
    )
    put(s3, f"{FOLDER}manifest.json", manifest(scanned=6, imported=0, customer_errors=6))

    # When the outcome is read
    outcome = import_outcome(s3, OUTPUT, JOB_ID)

    # Then each failure has a type, an id and a reason where the line gives them, and nothing else
    assert [f.detail for f in outcome.failures] == [
        "Patient/pt-0042: HTTP 400: error invalid: Patient.birthDate: invalid date",
        "Patient/pt-0043: Resource id collides with an existing Group",
        "?/?: fatal exception: Internal error",
        "Patient/pt-0044: HTTP 409",
        "Patient/pt-0045: rejected by HealthLake without a reason",
        "?/?: unreadable FAILURE line (not a JSON object)",
    ]
    assert {f.file for f in outcome.failures} == {"FAILURE/v1-0/Patient.ndjson"}
    dumped = json.dumps([f.model_dump() for f in outcome.failures])
    for secret in (SECRET_NAME, "Okonkwo", "Wilhelmina", "7946"):
        assert secret not in dumped
    assert (outcome.failed, outcome.unreported_failures) == (6, 0)


def test_a_clean_job_has_no_failure_folder(s3: Any) -> None:
    # HealthLake writes no FAILURE/ when nothing failed; an empty folder marker is ignored too
    put(s3, f"{FOLDER}Manifest.json", manifest(scanned=2, imported=2, customer_errors=0))
    put(s3, f"{FOLDER}SUCCESS/", b"")
    put(
        s3,
        f"{FOLDER}SUCCESS/resources.ndjson",
        ndjson(success_line(1, "Patient", "a"), success_line(2, "Patient", "b")) + "\n",
    )

    outcome = import_outcome(s3, OUTPUT, JOB_ID)

    assert (outcome.succeeded, outcome.failed, outcome.failures, outcome.clean) == (2, 0, [], True)


def test_the_job_folder_itself_and_a_known_datastore_are_accepted(s3: Any) -> None:
    put(s3, f"{FOLDER}SUCCESS/resources.ndjson", ndjson(success_line(1, "Patient", "a")))

    # the folder as DescribeFHIRImportJob reports it (with or without the trailing slash)
    assert import_outcome(s3, f"s3://{BUCKET}/{FOLDER}", JOB_ID).succeeded == 1
    assert import_outcome(s3, f"s3://{BUCKET}/{FOLDER.rstrip('/')}", JOB_ID).succeeded == 1
    # the output URI plus the data store id: no folder search
    outcome = import_outcome(s3, OUTPUT.rstrip("/"), JOB_ID, datastore_id=DATASTORE)
    assert (outcome.succeeded, outcome.manifest) == (1, None)


def test_only_the_first_failures_are_listed_but_all_are_counted(s3: Any) -> None:
    lines = [
        failure_line(n, "Observation", f"obs-{n}", issue("error", "invalid", "bad value"))
        for n in range(1, 26)
    ]
    put(s3, f"{FOLDER}FAILURE/a.ndjson", ndjson(*lines[:10]))
    put(s3, f"{FOLDER}FAILURE/b.ndjson", ndjson(*lines[10:]))

    outcome = import_outcome(s3, OUTPUT, JOB_ID, max_failures=12)

    assert outcome.failed == 25
    assert [f.resource_id for f in outcome.failures] == [f"obs-{n}" for n in range(1, 13)]
    assert [(f.file, f.line) for f in outcome.failures[9:11]] == [
        ("FAILURE/a.ndjson", 10),
        ("FAILURE/b.ndjson", 1),
    ]


def test_a_job_without_output_is_a_backend_failure(s3: Any) -> None:
    # Given only another job's output under the output URI
    put(s3, f"healthlake-output/{DATASTORE}-FHIR_IMPORT-{OTHER_JOB}/Manifest.json", manifest(1, 1, 0))

    # When / Then the caller learns which job and where it looked
    with pytest.raises(BackendJobFailed, match=f"{JOB_ID}: no output folder .* under {OUTPUT}"):
        import_outcome(s3, OUTPUT, JOB_ID)


def test_an_unreadable_manifest_is_left_out(s3: Any) -> None:
    put(s3, f"{FOLDER}Manifest.json", "{truncated")
    put(s3, f"{FOLDER}SUCCESS/resources.ndjson", ndjson(success_line(1, "Patient", "a")))

    outcome = import_outcome(s3, OUTPUT, JOB_ID)

    assert (outcome.succeeded, outcome.manifest, outcome.clean) == (1, None, True)


def test_s3_throttling_and_an_unreachable_s3_are_transient() -> None:
    # Given S3 throttling the listing of the output folder
    with stubbed("s3") as (s3, stubber):
        stubber.add_client_error("list_objects_v2", service_error_code="SlowDown", http_status_code=503)

        # When / Then the state machine gets a TransientError to retry on
        with pytest.raises(TransientError, match="S3 ListObjectsV2: SlowDown"):
            import_outcome(s3, OUTPUT, JOB_ID, datastore_id=DATASTORE)

    # and likewise when S3 cannot be reached at all (nothing listens on port 9)
    unreachable = boto3.client(
        "s3",
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:9",
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=1),
    )
    with pytest.raises(TransientError, match="S3 ListObjectsV2: EndpointConnectionError"):
        import_outcome(unreachable, OUTPUT, JOB_ID)
