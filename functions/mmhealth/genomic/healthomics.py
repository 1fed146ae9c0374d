"""AWS HealthOmics variant store: the optional operational backend of the genomic modality.

For existing HealthOmics customers only. AWS closed HealthOmics variant and annotation stores to new
customers on 2025-11-07 and recommends Apache Iceberg tables (Amazon S3 Tables) for variant analytics
instead, which is what `genomic.variants` already is. The lakehouse import runs with or without this backend.

Imports are started here and polled by the state machine (Wait -> `job_status` -> Choice), never `.sync`.
Every function takes a boto3 `omics` client, so tests drive them with botocore's Stubber against the real
service model.

Idempotency: StartVariantImportJob has no client token and import jobs cannot be tagged, so a Lambda
retried after the job started would start a second import of the same files. Before starting, we look for
a job on the same store whose sources are exactly this chunk's, created since `not_before` and not failed
or cancelled, and hand that one back instead. Chunks of one run never share a file, so the source set
identifies the chunk; `not_before` (the run's start) keeps an earlier run's import of the same keys out.
Without it only the last hour is searched: enough for Step Functions retries, short enough that a
re-delivery of the same keys is unlikely to be mistaken for a retry (pass `not_before` to be sure).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from mmhealth.backend_io import ServiceIO
from mmhealth.contracts import JobHandle
from mmhealth.storage import TRANSIENT_CODES

if TYPE_CHECKING:
    from mypy_boto3_omics import OmicsClient
else:
    OmicsClient = Any

__all__ = ["BACKEND", "job_status", "start_variant_import"]

log = logging.getLogger(__name__)

BACKEND = "healthomics"

# GetVariantImportJob status -> the ChunkStatus vocabulary the Choice state reads. CANCELLING is not in
# the current service model; it is mapped in case the service reports it (as its other job APIs do).
RUNNING = frozenset({"SUBMITTED", "IN_PROGRESS", "CANCELLING"})
SUCCEEDED = frozenset({"COMPLETED"})
FAILED = frozenset({"FAILED", "CANCELLED", "COMPLETED_WITH_FAILURES"})

# Jobs that a retried start may adopt: still running, or finished cleanly.
REUSABLE = frozenset({"SUBMITTED", "IN_PROGRESS", "COMPLETED"})
# Without `not_before`, a job older than this is never adopted (retries come within minutes).
DEFAULT_LOOKBACK = timedelta(hours=1)
# Bounds on the duplicate search, so a store with a long import history cannot stall the Lambda.
MAX_LIST_PAGES = 10
MAX_CANDIDATES = 20

# HealthOmics' own retryable codes on top of the shared ones: a 500, and the limit on concurrent imports.
_TRANSIENT = TRANSIENT_CODES | {"InternalServerException", "ServiceQuotaExceededException"}
_IO = ServiceIO("HealthOmics", _TRANSIENT)


def start_variant_import(
    client: OmicsClient,
    *,
    store_name: str,
    role_arn: str,
    source_uris: list[str],
    run_id: str,
    not_before: datetime | None = None,
) -> JobHandle:
    """Start importing `source_uris` (s3:// VCFs) into the variant store, or adopt the same import
    already started by an earlier attempt (see the module docstring).

    Raises TransientError on throttling / service errors (the state machine retries), ValueError on an
    empty source list; any other ClientError (validation, access, missing store) propagates.
    """
    sources = sorted(set(source_uris))
    if not sources:
        raise ValueError("start_variant_import needs at least one source URI")
    since = not_before or datetime.now(UTC) - DEFAULT_LOOKBACK
    existing = _existing_import(client, store_name, sources, since)
    if existing is not None:
        log.info("adopting HealthOmics import %s for %s (already started)", existing, run_id)
        return JobHandle(backend=BACKEND, job_id=existing)
    response = _IO.call(
        "StartVariantImportJob",
        client.start_variant_import_job,
        destinationName=store_name,
        roleArn=role_arn,
        items=[{"source": uri} for uri in sources],
    )
    log.info("started HealthOmics import %s for %s (%d files)", response["jobId"], run_id, len(sources))
    return JobHandle(backend=BACKEND, job_id=response["jobId"])


def job_status(client: OmicsClient, job_id: str) -> tuple[str, list[str]]:
    """("IN_PROGRESS" | "COMPLETED" | "FAILED", failure messages) of a variant import job.

    FAILED carries one message per failed file ("<s3 uri>: <status>: <message>"), or the job's message.
    An unknown status counts as IN_PROGRESS (the poll loop is bounded). Raises TransientError on
    throttling / service errors.
    """
    job = _IO.call("GetVariantImportJob", client.get_variant_import_job, jobId=job_id)
    status = job["status"]
    if status in SUCCEEDED:
        return "COMPLETED", []
    if status in FAILED:
        return "FAILED", _failure_messages(job)
    if status not in RUNNING:
        log.warning("HealthOmics import %s has unknown status %s; polling on", job_id, status)
    return "IN_PROGRESS", []


def _failure_messages(job: Any) -> list[str]:
    items = [
        f"{item['source']}: {item['jobStatus']}: {item.get('statusMessage') or 'no message'}"
        for item in job.get("items", [])
        if item.get("jobStatus") != "COMPLETED"
    ]
    return items or [f"job {job['status']}: {job.get('statusMessage') or 'no message'}"]


def _existing_import(client: OmicsClient, store_name: str, sources: list[str], since: datetime) -> str | None:
    """The id of a reusable job on `store_name` importing exactly `sources`, newest first; else None."""
    candidates = sorted(
        (
            job
            for job in _import_jobs(client, store_name)
            if job["status"] in REUSABLE and job["creationTime"] >= since
        ),
        key=lambda job: job["creationTime"],
        reverse=True,
    )
    for job in candidates[:MAX_CANDIDATES]:
        detail = _IO.call("GetVariantImportJob", client.get_variant_import_job, jobId=job["id"])
        if sorted(item["source"] for item in detail["items"]) == sources:
            return str(job["id"])
    return None


def _import_jobs(client: OmicsClient, store_name: str) -> Iterator[Any]:
    """The store's variant import jobs (at most MAX_LIST_PAGES pages of 100)."""
    token: str | None = None
    for _ in range(MAX_LIST_PAGES):
        kwargs: dict[str, Any] = {"maxResults": 100, "filter": {"storeName": store_name}}
        if token:
            kwargs["nextToken"] = token
        page = _IO.call("ListVariantImportJobs", client.list_variant_import_jobs, **kwargs)
        yield from page.get("variantImportJobs", [])
        token = page.get("nextToken")
        if not token:
            return
