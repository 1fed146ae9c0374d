"""HealthOmics variant-store backend, contract-tested with botocore's Stubber against the real `omics` model.

The Stubber checks every request against the service model (names, types, required members) and that the
calls happen in the stubbed order; an unexpected call (say, a second StartVariantImportJob) fails the test.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.stub import Stubber

from mmhealth.contracts import JobHandle
from mmhealth.errors import TransientError
from mmhealth.genomic.healthomics import job_status, start_variant_import
from tests.unit.backend_fixtures import raises_unretried, stubbed

STORE = "cohort_variants"
ROLE = "arn:aws:iam::123456789012:role/mmpipe-healthomics-import"
RUN_STARTED = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
SOURCES = [
    "s3://mmpipe-landing/incoming/d1/pt-0002.vcf.gz",
    "s3://mmpipe-landing/incoming/d1/pt-0001.vcf.gz",
]
SORTED_SOURCES = sorted(SOURCES)
JOB = "0123abcd-0000-4000-8000-00000000000{}"


@pytest.fixture
def omics() -> Iterator[tuple[Any, Stubber]]:
    with stubbed("omics") as pair:
        yield pair


def listed(job_id: str, status: str, created: datetime) -> dict[str, Any]:
    return {
        "id": job_id,
        "destinationName": STORE,
        "roleArn": ROLE,
        "status": status,
        "creationTime": created,
        "updateTime": created,
    }


def job(job_id: str, status: str, sources: list[str], **items: Any) -> dict[str, Any]:
    """A GetVariantImportJob response; `items` maps a source to (jobStatus, statusMessage)."""
    return {
        "id": job_id,
        "destinationName": STORE,
        "roleArn": ROLE,
        "status": status,
        "statusMessage": items.pop("message", ""),
        "creationTime": RUN_STARTED,
        "updateTime": RUN_STARTED,
        "runLeftNormalization": False,
        "items": [
            {
                "source": s,
                "jobStatus": items.get(s, ("COMPLETED", ""))[0],
                "statusMessage": items.get(s, ("", ""))[1],
            }
            for s in sources
        ],
    }


LIST_REQUEST = {"maxResults": 100, "filter": {"storeName": STORE}}
START_REQUEST = {"destinationName": STORE, "roleArn": ROLE, "items": [{"source": s} for s in SORTED_SOURCES]}


def start(client: Any, **overrides: Any) -> JobHandle:
    arguments: dict[str, Any] = {
        "store_name": STORE,
        "role_arn": ROLE,
        "source_uris": SOURCES,
        "run_id": "run-1/genomic-0000",
        "not_before": RUN_STARTED,
    }
    return start_variant_import(client, **{**arguments, **overrides})


# ------------------------------------------------------------------------------------------ start


def test_starts_an_import_of_the_chunk_files_when_none_exists(omics: tuple[Any, Stubber]) -> None:
    # Given a store whose only import is another chunk's
    client, stubber = omics
    stubber.add_response(
        "list_variant_import_jobs",
        {"variantImportJobs": [listed(JOB.format(1), "IN_PROGRESS", RUN_STARTED + timedelta(minutes=1))]},
        LIST_REQUEST,
    )
    stubber.add_response(
        "get_variant_import_job",
        job(JOB.format(1), "IN_PROGRESS", ["s3://mmpipe-landing/incoming/d1/pt-0003.vcf.gz"]),
        {"jobId": JOB.format(1)},
    )
    stubber.add_response("start_variant_import_job", {"jobId": JOB.format(2)}, START_REQUEST)

    # When the chunk's import is started
    handle = start(client)

    # Then one job is started with the sorted, de-duplicated sources, and its handle is returned
    assert handle == JobHandle(backend="healthomics", job_id=JOB.format(2))


def test_a_retried_start_adopts_the_job_its_first_attempt_started(omics: tuple[Any, Stubber]) -> None:
    # Given jobs of this store: the chunk's own (SUBMITTED), plus ones that must not be adopted
    client, stubber = omics
    after = RUN_STARTED + timedelta(minutes=5)
    stubber.add_response(
        "list_variant_import_jobs",
        {
            "variantImportJobs": [
                listed(JOB.format(1), "FAILED", after),  # same files but failed: a re-drive starts anew
                listed(JOB.format(2), "COMPLETED", RUN_STARTED - timedelta(days=1)),  # an earlier run's
                listed(JOB.format(3), "SUBMITTED", after),  # this chunk's, from the first attempt
                listed(JOB.format(4), "IN_PROGRESS", after + timedelta(minutes=1)),  # another chunk's
            ],
            "nextToken": "page-2",
        },
        LIST_REQUEST,
    )
    stubber.add_response(
        "list_variant_import_jobs", {"variantImportJobs": []}, {**LIST_REQUEST, "nextToken": "page-2"}
    )
    # newest candidate first: job 4 (different files), then job 3 (the same files, in another order)
    stubber.add_response(
        "get_variant_import_job", job(JOB.format(4), "IN_PROGRESS", SOURCES[:1]), {"jobId": JOB.format(4)}
    )
    stubber.add_response(
        "get_variant_import_job", job(JOB.format(3), "SUBMITTED", SOURCES[::-1]), {"jobId": JOB.format(3)}
    )

    # When the Lambda retries the start (no StartVariantImportJob is stubbed: calling it would fail)
    handle = start(client, source_uris=[*SOURCES, SOURCES[0]])

    # Then the existing job is handed back
    assert handle.job_id == JOB.format(3)


def test_without_not_before_only_recent_jobs_are_adopted(omics: tuple[Any, Stubber]) -> None:
    # Given the chunk's files imported by a job two days ago
    client, stubber = omics
    two_days_ago = datetime.now(UTC) - timedelta(days=2)
    stubber.add_response(
        "list_variant_import_jobs",
        {"variantImportJobs": [listed(JOB.format(1), "COMPLETED", two_days_ago)]},
        LIST_REQUEST,
    )
    stubber.add_response("start_variant_import_job", {"jobId": JOB.format(2)}, START_REQUEST)

    # When started without a run start time / Then a new job starts (the old one is out of the window)
    assert start(client, not_before=None).job_id == JOB.format(2)


def test_without_not_before_a_job_from_minutes_ago_is_adopted(omics: tuple[Any, Stubber]) -> None:
    client, stubber = omics
    minutes_ago = datetime.now(UTC) - timedelta(minutes=10)
    stubber.add_response(
        "list_variant_import_jobs",
        {"variantImportJobs": [listed(JOB.format(1), "IN_PROGRESS", minutes_ago)]},
        LIST_REQUEST,
    )
    stubber.add_response(
        "get_variant_import_job", job(JOB.format(1), "IN_PROGRESS", SOURCES), {"jobId": JOB.format(1)}
    )

    assert start(client, not_before=None).job_id == JOB.format(1)


def test_an_empty_chunk_is_a_programming_error(omics: tuple[Any, Stubber]) -> None:
    client, _ = omics

    with pytest.raises(ValueError, match="at least one source"):
        start(client, source_uris=[])


@pytest.mark.parametrize(
    ("operation", "code", "status"),
    [
        ("list_variant_import_jobs", "ThrottlingException", 429),
        ("start_variant_import_job", "ThrottlingException", 429),
        ("start_variant_import_job", "ServiceQuotaExceededException", 402),
        ("start_variant_import_job", "InternalServerException", 500),
    ],
)
def test_throttling_and_service_errors_are_transient(
    omics: tuple[Any, Stubber], operation: str, code: str, status: int
) -> None:
    # Given the service refusing the call for a while
    client, stubber = omics
    if operation == "start_variant_import_job":
        stubber.add_response("list_variant_import_jobs", {"variantImportJobs": []}, LIST_REQUEST)
    stubber.add_client_error(
        operation, service_error_code=code, service_message="slow down", http_status_code=status
    )

    # When / Then the state machine gets a TransientError to retry on
    with pytest.raises(TransientError, match=code):
        start(client)


def test_a_validation_error_is_not_retried(omics: tuple[Any, Stubber]) -> None:
    client, stubber = omics
    stubber.add_response("list_variant_import_jobs", {"variantImportJobs": []}, LIST_REQUEST)
    stubber.add_client_error(
        "start_variant_import_job", service_error_code="ValidationException", http_status_code=400
    )

    with raises_unretried("ValidationException"):
        start(client)


# ------------------------------------------------------------------------------------------ status


@pytest.mark.parametrize(
    ("service_status", "expected"),
    [
        ("SUBMITTED", "IN_PROGRESS"),
        ("IN_PROGRESS", "IN_PROGRESS"),
        ("CANCELLING", "IN_PROGRESS"),  # not in today's model, mapped defensively
        ("SOMETHING_NEW", "IN_PROGRESS"),  # unknown: keep polling (the loop is bounded)
        ("COMPLETED", "COMPLETED"),
    ],
)
def test_running_and_completed_statuses(
    omics: tuple[Any, Stubber], service_status: str, expected: str
) -> None:
    client, stubber = omics
    stubber.add_response(
        "get_variant_import_job", job(JOB.format(1), service_status, SOURCES), {"jobId": JOB.format(1)}
    )

    assert job_status(client, JOB.format(1)) == (expected, [])


def test_completed_with_failures_names_each_failed_file(omics: tuple[Any, Stubber]) -> None:
    # Given an import where one of two files failed
    client, stubber = omics
    response = job(
        JOB.format(1),
        "COMPLETED_WITH_FAILURES",
        SORTED_SOURCES,
        **{SORTED_SOURCES[1]: ("FAILED", "VCF header is missing the FORMAT/GT definition")},
    )
    stubber.add_response("get_variant_import_job", response, {"jobId": JOB.format(1)})

    # When polled / Then the chunk fails with that file's message only
    assert job_status(client, JOB.format(1)) == (
        "FAILED",
        [f"{SORTED_SOURCES[1]}: FAILED: VCF header is missing the FORMAT/GT definition"],
    )


@pytest.mark.parametrize("service_status", ["FAILED", "CANCELLED"])
def test_failed_and_cancelled_jobs_fail_with_their_messages(
    omics: tuple[Any, Stubber], service_status: str
) -> None:
    client, stubber = omics
    items = {s: (service_status, "") for s in SORTED_SOURCES}
    response = job(JOB.format(1), service_status, SORTED_SOURCES, message="Job cancelled by user", **items)
    stubber.add_response("get_variant_import_job", response, {"jobId": JOB.format(1)})

    state, messages = job_status(client, JOB.format(1))

    assert state == "FAILED"
    assert messages == [f"{s}: {service_status}: no message" for s in SORTED_SOURCES]


def test_a_failed_job_without_item_failures_reports_the_job_message(omics: tuple[Any, Stubber]) -> None:
    client, stubber = omics
    response = job(JOB.format(1), "FAILED", SOURCES, message="Role cannot read the source bucket")
    stubber.add_response("get_variant_import_job", response, {"jobId": JOB.format(1)})

    assert job_status(client, JOB.format(1)) == ("FAILED", ["job FAILED: Role cannot read the source bucket"])


@pytest.mark.parametrize(("code", "status"), [("ThrottlingException", 429), ("InternalServerException", 500)])
def test_a_throttled_poll_is_transient(omics: tuple[Any, Stubber], code: str, status: int) -> None:
    client, stubber = omics
    stubber.add_client_error("get_variant_import_job", service_error_code=code, http_status_code=status)

    with pytest.raises(TransientError):
        job_status(client, JOB.format(1))


def test_an_unknown_job_is_not_transient(omics: tuple[Any, Stubber]) -> None:
    client, stubber = omics
    stubber.add_client_error(
        "get_variant_import_job", service_error_code="ResourceNotFoundException", http_status_code=404
    )

    with raises_unretried("ResourceNotFoundException"):
        job_status(client, JOB.format(1))
