"""AWS HealthLake: the optional operational FHIR store of the clinical modality.

The lakehouse import (`clinical.<resource>` Iceberg tables) runs with or without this backend. When it is
enabled, the clinical importer stages the chunk's valid resources as NDJSON (`stage_ndjson`; HealthLake
imports NDJSON files, not Bundles), starts an import job (`start_fhir_import`), the state machine polls it
(Wait -> `job_status` -> Choice, never `.sync`), and once it has ended `import_outcome` reads what HealthLake
wrote to S3 to learn which resources it rejected. Every function takes its boto3 client as an argument, so
tests drive HealthLake with botocore's Stubber against the real service model and S3 with moto.

Idempotency: StartFHIRImportJob takes a ClientToken (1-64 characters of `[a-zA-Z0-9-]`). HealthLake
documents it only as "a client-provided idempotency token"; under the AWS-wide idempotency contract a
repeated request with the same token and the same parameters returns the job the first request started
(same JobId) instead of starting another, the same token with different parameters is refused with an
error rather than starting a job, and the service forgets a token after a period it does not document
for HealthLake. Step Functions retries a failed Import within minutes, well inside any such window.
`import_client_token` derives the token from run + chunk, so a Lambda retried after its first attempt
started the job gets that job back. The token must always be passed: the service model marks ClientToken
as an idempotency token, so botocore fills in a random one when it is missing, which defeats the purpose.
A deliberate re-drive of a failed chunk needs a new job, hence `redrive` (Step Functions'
`$$.Execution.RedriveCount`) in the token.

Job output in S3 (HealthLake developer guide, "Manifest JSON file", and its DescribeFHIRImportJob
examples): for each job HealthLake writes a folder `<datastore id>-FHIR_IMPORT-<job id>/` under the output
URI, holding a manifest (`manifest.json` in the guide; reported as `Manifest.json` in practice) with
counters, and `SUCCESS/` and `FAILURE/` folders of NDJSON files, one line per resource. AWS does not
document the line format. What `import_outcome` assumes, from code that parses real output: a FAILURE
line is `{"lineId", "resourceId", "resourceType", "UpdateResourceResponse": {"jsonBlob": <OperationOutcome>,
"statusCode": <http status>}}`. It also accepts a line that is an OperationOutcome itself, `jsonBlob` as a
JSON string, plain `error`/`message` strings, files nested in version folders (`FAILURE/v1-0/...`), no
FAILURE folder at all when nothing failed, and the zero-byte write-access probe HealthLake leaves at
submission. A job can end COMPLETED and still have FAILURE lines: call `import_outcome` after every
terminal status, not only after a failure.

A failure keeps the resource type, the resource id and HealthLake's error message, never the resource's
content (names, identifiers, values): FAILURE files can hold whole resources, and what we keep ends up in
quarantine records and logs.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from mmhealth.backend_io import ServiceIO, as_int, as_str, idempotency_token, split_s3_uri
from mmhealth.contracts import JobHandle
from mmhealth.storage import TRANSIENT_CODES

if TYPE_CHECKING:
    from mypy_boto3_healthlake import HealthLakeClient
    from mypy_boto3_s3 import S3Client
else:
    HealthLakeClient = Any
    S3Client = Any

__all__ = [
    "BACKEND",
    "ImportManifest",
    "ImportOutcome",
    "ResourceFailure",
    "import_client_token",
    "import_job_name",
    "import_outcome",
    "job_status",
    "stage_ndjson",
    "start_fhir_import",
]

log = logging.getLogger(__name__)

BACKEND = "healthlake"

# DescribeFHIRImportJob JobStatus (every value of the service model's enum) -> the ChunkStatus vocabulary.
RUNNING = frozenset({"SUBMITTED", "QUEUED", "IN_PROGRESS"})
SUCCEEDED = frozenset({"COMPLETED"})
# Why each of these fails the chunk; the sentence goes into the failure message for on-call.
FAILED: dict[str, str] = {
    # The job ended and imported the resources HealthLake accepted; the chunk is not complete.
    "COMPLETED_WITH_ERRORS": "some resources were rejected, the others were imported",
    "FAILED": "the import failed",
    # Someone asked to cancel: the import must not be relied on, so the chunk fails now rather than after
    # the cancellation settles. Whatever the job had imported so far stays in the data store.
    "CANCEL_SUBMITTED": "a cancellation was requested; resources imported so far stay in the data store",
    "CANCEL_IN_PROGRESS": "the job is being cancelled; resources imported so far stay in the data store",
    "CANCEL_COMPLETED": "the job was cancelled; resources imported before that stay in the data store",
    "CANCEL_FAILED": "a cancellation was requested and failed; the job may still import resources",
}

ValidationLevel = Literal["strict", "structure-only", "minimal"]

# Request constraints from the service model (botocore checks types and minimum lengths, not these).
CLIENT_TOKEN = re.compile(r"[a-zA-Z0-9-]{1,64}")
JOB_NAME_MAX = 64
_JOB_NAME_UNSAFE = re.compile(r"[^\w .:/=+%@-]")  # the model's [\p{L}\p{Z}\p{N}_.:/=+\-%@], near enough

NDJSON_CONTENT_TYPE = "application/fhir+ndjson"
SPOOL_BYTES = 32 * 1024 * 1024  # stage_ndjson keeps up to this much in memory, then spills to /tmp

FOLDER_MARKER = "-FHIR_IMPORT-"
WRITE_PROBE = ".healthlake_write_access_check"
MAX_MESSAGE = 500  # characters of one failure message
DEFAULT_MAX_FAILURES = 1000  # failures listed one by one; the rest are only counted

# HealthLake's retryable codes on top of the shared ones (throttling is already there).
_TRANSIENT = TRANSIENT_CODES | {"InternalServerException"}
_IO = ServiceIO("HealthLake", _TRANSIENT)


# ---------------------------------------------------------------------------------------------- models


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ResourceFailure(_Model):
    """One resource HealthLake rejected: what it was and why, never its content."""

    resource_type: str | None
    resource_id: str | None
    message: str
    status_code: int | None = None
    file: str  # the FAILURE file, relative to the job folder ("FAILURE/Condition.ndjson")
    line: int  # 1-based line in that file
    input_line: int | None = None  # HealthLake's lineId (assumed: the line of the staged input file)

    @property
    def detail(self) -> str:
        """`<type>/<id>: <message>`, the shape of a quarantine record's detail."""
        return f"{self.resource_type or '?'}/{self.resource_id or '?'}: {self.message}"


class ImportManifest(_Model):
    """The counters of the job's manifest; None where the manifest lacks one."""

    files_scanned: int | None = None
    files_imported: int | None = None
    resources_scanned: int | None = None
    resources_imported: int | None = None
    resources_with_customer_error: int | None = None
    resources_with_server_error: int | None = None

    @property
    def resources_failed(self) -> int:
        return (self.resources_with_customer_error or 0) + (self.resources_with_server_error or 0)


class ImportOutcome(_Model):
    """What an ended import job did, read from its output folder."""

    job_id: str
    output_uri: str  # s3://<bucket>/<prefix><datastore id>-FHIR_IMPORT-<job id>/
    succeeded: int  # SUCCESS lines
    failed: int  # FAILURE lines (all of them, even past the listed ones)
    failures: list[ResourceFailure]  # the first `max_failures`, in file order
    manifest: ImportManifest | None = None

    @property
    def unreported_failures(self) -> int:
        """Failures the manifest counts but no FAILURE line explains (0 without a manifest)."""
        return max(0, self.manifest.resources_failed - self.failed) if self.manifest else 0

    @property
    def clean(self) -> bool:
        """True when nothing was rejected, by the FAILURE files' account and the manifest's."""
        return self.failed == 0 and self.unreported_failures == 0


# ------------------------------------------------------------------------------------------ naming


def import_client_token(run_id: str, chunk_id: str, *, redrive: int = 0) -> str:
    """The ClientToken of a chunk's import: `mmpipe-` + 40 hex digits of sha256(run, chunk[, redrive]).

    The same run and chunk always give the same token, so a retried start returns the job already
    started. `redrive` > 0 (a deliberate re-drive of a failed chunk) gives a new token, hence a new job.
    """
    return idempotency_token(run_id, chunk_id, redrive=redrive)


def import_job_name(run_id: str, chunk_id: str) -> str:
    """A JobName on-call can read: `<run_id>/<chunk_id>`, cut from the left to 64 characters.

    The right end is kept: it holds the run id's digest and the chunk, which tell jobs apart.
    """
    return _JOB_NAME_UNSAFE.sub("-", f"{run_id}/{chunk_id}")[-JOB_NAME_MAX:]


# ------------------------------------------------------------------------------------------ import


def stage_ndjson(s3_client: S3Client, bucket: str, key: str, resources: Iterable[dict[str, Any]]) -> int:
    """Write `resources` to s3://bucket/key as NDJSON (one compact JSON per line, UTF-8); return the count.

    Nothing is written when there are no resources (0 is returned; do not start an import then). The
    same resources give the same bytes, so a retry overwrites. Raises ValueError on an item that is not
    a FHIR resource (a dict with a `resourceType`) or not JSON-serialisable, or on a key not ending in
    `.ndjson`; TransientError on S3 throttling; any other ClientError propagates.
    """
    if not key.endswith(".ndjson"):
        raise ValueError(f"stage_ndjson: HealthLake imports .ndjson files; {key!r} does not end so")
    count = 0
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as body:
        for count, resource in enumerate(resources, start=1):
            if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
                raise ValueError(f"stage_ndjson: item {count} is not a FHIR resource (no resourceType)")
            try:
                line = json.dumps(resource, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"stage_ndjson: item {count} is not JSON-serialisable: {exc}") from exc
            body.write(line.encode("utf-8"))
            body.write(b"\n")
        if count == 0:
            return 0
        body.seek(0)
        _IO.s3_call(
            "PutObject",
            s3_client.put_object,
            Bucket=bucket,
            Key=key,
            Body=body,
            ContentType=NDJSON_CONTENT_TYPE,
        )
    log.info("staged %d resources for HealthLake at s3://%s/%s", count, bucket, key)
    return count


def start_fhir_import(
    client: HealthLakeClient,
    *,
    datastore_id: str,
    input_s3_uri: str,
    output_s3_uri: str,
    kms_key_id: str,
    role_arn: str,
    job_name: str,
    client_token: str,
    validation_level: ValidationLevel | None = None,
) -> JobHandle:
    """Start importing the NDJSON under `input_s3_uri` into the data store; idempotent per `client_token`.

    A repeat with the same token and parameters returns the job the first call started (module
    docstring). HealthLake writes the job's report under `output_s3_uri` (a folder: it must end in "/"),
    encrypted with `kms_key_id`. Raises ValueError on a token, job name or URI the service would refuse;
    TransientError on throttling / service errors (the state machine retries); any other ClientError
    (validation, access, missing data store, a token reused with other parameters) propagates.
    """
    if not CLIENT_TOKEN.fullmatch(client_token):
        raise ValueError(f"ClientToken must be 1-64 characters of [a-zA-Z0-9-], not {client_token!r}")
    if not 1 <= len(job_name) <= JOB_NAME_MAX or _JOB_NAME_UNSAFE.search(job_name):
        raise ValueError(f"JobName must be 1-{JOB_NAME_MAX} characters of [\\w .:/=+%@-], not {job_name!r}")
    split_s3_uri(input_s3_uri)
    split_s3_uri(output_s3_uri)
    if not output_s3_uri.endswith("/"):
        raise ValueError(f"the output URI must be a folder ending in '/', not {output_s3_uri!r}")
    request: dict[str, Any] = {
        "JobName": job_name,
        "DatastoreId": datastore_id,
        "InputDataConfig": {"S3Uri": input_s3_uri},
        "JobOutputDataConfig": {"S3Configuration": {"S3Uri": output_s3_uri, "KmsKeyId": kms_key_id}},
        "DataAccessRoleArn": role_arn,
        "ClientToken": client_token,
    }
    if validation_level is not None:
        request["ValidationLevel"] = validation_level
    response = _IO.call("StartFHIRImportJob", client.start_fhir_import_job, **request)
    log.info(
        "HealthLake import %s (%s) for %s: %s",
        response["JobId"],
        job_name,
        input_s3_uri,
        response.get("JobStatus"),
    )
    return JobHandle(backend=BACKEND, job_id=response["JobId"])


def job_status(client: HealthLakeClient, *, datastore_id: str, job_id: str) -> tuple[str, list[str]]:
    """("IN_PROGRESS" | "COMPLETED" | "FAILED", messages) of a FHIR import job.

    SUBMITTED, QUEUED, IN_PROGRESS -> IN_PROGRESS; COMPLETED -> COMPLETED (which may still hide rejected
    resources: read `import_outcome`); COMPLETED_WITH_ERRORS, FAILED and every CANCEL_* -> FAILED, with
    the job's message and progress counters. An unknown status counts as IN_PROGRESS (the poll loop is
    bounded). Raises TransientError on throttling / service errors; any other ClientError propagates.
    """
    response = _IO.call(
        "DescribeFHIRImportJob", client.describe_fhir_import_job, DatastoreId=datastore_id, JobId=job_id
    )
    job = response["ImportJobProperties"]
    status = job["JobStatus"]
    if status in SUCCEEDED:
        return "COMPLETED", []
    if status in FAILED:
        return "FAILED", _failure_messages(job_id, status, job)
    if status not in RUNNING:
        log.warning("HealthLake import %s has unknown status %s; polling on", job_id, status)
    return "IN_PROGRESS", []


def _failure_messages(job_id: str, status: str, job: Any) -> list[str]:
    messages = [
        f"HealthLake import {job_id} {status}: {FAILED[status]}: {job.get('Message') or 'no message'}"
    ]
    report = job.get("JobProgressReport") or {}
    if report:
        messages.append(
            f"{report.get('TotalNumberOfResourcesImported', '?')} of "
            f"{report.get('TotalNumberOfResourcesScanned', '?')} resources imported, "
            f"{report.get('TotalNumberOfResourcesWithCustomerError', '?')} rejected as invalid, "
            f"{report.get('TotalNumberOfFilesReadWithCustomerError', '?')} files unreadable"
        )
    return messages


# ------------------------------------------------------------------------------------------ outcome


def import_outcome(
    s3_client: S3Client,
    output_s3_uri: str,
    job_id: str,
    *,
    datastore_id: str | None = None,
    max_failures: int = DEFAULT_MAX_FAILURES,
) -> ImportOutcome:
    """Read an ended job's output: count SUCCESS lines, parse FAILURE lines, read the manifest.

    `output_s3_uri` is the URI given to `start_fhir_import` (the job folder is found under it by its
    `-FHIR_IMPORT-<job id>` suffix; pass `datastore_id` to skip the search) or the job folder itself, as
    DescribeFHIRImportJob reports it. Raises BackendJobFailed when no (or more than one) folder of the
    job exists; TransientError on S3 throttling; any other ClientError propagates. A missing or
    unreadable manifest is logged and left out, not an error.
    """
    bucket, prefix = split_s3_uri(output_s3_uri)
    folder = _IO.job_folder(
        s3_client, bucket, prefix, marker=FOLDER_MARKER, job_id=job_id, datastore_id=datastore_id
    )
    manifest_key: str | None = None
    success: list[str] = []
    failure: list[str] = []
    for key, size in sorted(_IO.objects(s3_client, bucket, folder)):
        parts = key[len(folder) :].split("/")
        name = parts[-1]
        if not name or size == 0 or name.startswith(WRITE_PROBE):
            continue
        if len(parts) == 1 and name.lower() == "manifest.json":
            manifest_key = manifest_key or key
        elif len(parts) > 1 and parts[0].upper() == "SUCCESS":
            success.append(key)
        elif len(parts) > 1 and parts[0].upper() == "FAILURE":
            failure.append(key)
    succeeded = sum(1 for key in success for line in _IO.lines(s3_client, bucket, key) if line.strip())
    failed, failures = _IO.failure_lines(s3_client, bucket, folder, failure, _parse_failure, max_failures)
    outcome = ImportOutcome(
        job_id=job_id,
        output_uri=f"s3://{bucket}/{folder}",
        succeeded=succeeded,
        failed=failed,
        failures=failures,
        manifest=_read_manifest(s3_client, bucket, manifest_key) if manifest_key else None,
    )
    if manifest_key is None:
        log.warning("HealthLake import %s: no manifest in %s", job_id, outcome.output_uri)
    if not outcome.clean:
        log.warning(
            "HealthLake import %s rejected resources: %d listed, %d counted only by the manifest",
            job_id,
            outcome.failed,
            outcome.unreported_failures,
        )
    return outcome


def _read_manifest(s3_client: S3Client, bucket: str, key: str) -> ImportManifest | None:
    body = _IO.body(s3_client, bucket, key).read()
    try:
        raw = json.loads(body)
    except ValueError:
        log.warning("HealthLake manifest s3://%s/%s is not JSON; ignored", bucket, key)
        return None
    if not isinstance(raw, dict):
        log.warning("HealthLake manifest s3://%s/%s is not a JSON object; ignored", bucket, key)
        return None
    return ImportManifest(
        files_scanned=as_int(raw.get("numberOfScannedFiles")),
        files_imported=as_int(raw.get("numberOfFilesImported")),
        resources_scanned=as_int(raw.get("numberOfResourcesScanned")),
        resources_imported=as_int(raw.get("numberOfResourcesImportedSuccessfully")),
        resources_with_customer_error=as_int(raw.get("numberOfResourcesWithCustomerError")),
        resources_with_server_error=as_int(raw.get("numberOfResourcesWithServerError")),
    )


def _parse_failure(line: bytes, file: str, n: int) -> ResourceFailure:
    """One FAILURE line -> type, id, message. Only those fields are read; the rest of the line is ignored."""
    try:
        record = json.loads(line)
    except ValueError:
        record = None
    if not isinstance(record, dict):
        message = "unreadable FAILURE line (not a JSON object)"
        return ResourceFailure(resource_type=None, resource_id=None, message=message, file=file, line=n)
    outcome, status = _embedded_outcome(record)
    is_outcome = record.get("resourceType") == "OperationOutcome"
    messages = _issue_messages(outcome) if outcome is not None else []
    if not messages and outcome is None:
        messages = _plain_errors(record)
    if not messages:
        messages = [f"HTTP {status}" if status else "rejected by HealthLake without a reason"]
    elif status and status >= 400:
        messages[0] = f"HTTP {status}: {messages[0]}"
    message = "; ".join(messages)
    return ResourceFailure(
        resource_type=None if is_outcome else as_str(record.get("resourceType")),
        resource_id=None if is_outcome else as_str(record.get("resourceId") or record.get("id")),
        message=message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 1] + "…",
        status_code=status,
        file=file,
        line=n,
        input_line=as_int(record.get("lineId")),
    )


def _embedded_outcome(record: dict[str, Any]) -> tuple[dict[str, Any] | None, int | None]:
    """The OperationOutcome of a FAILURE line and the HTTP status HealthLake gave the resource."""
    if record.get("resourceType") == "OperationOutcome":
        return record, None
    for value in record.values():  # "UpdateResourceResponse" in observed output; any *Response alike
        if isinstance(value, dict) and ("jsonBlob" in value or "statusCode" in value):
            blob = value.get("jsonBlob")
            if isinstance(blob, str):
                try:
                    blob = json.loads(blob)
                except ValueError:
                    blob = None
            return (blob if isinstance(blob, dict) else None), as_int(value.get("statusCode"))
    for name in ("operationOutcome", "OperationOutcome", "outcome"):
        if isinstance(record.get(name), dict):
            return record[name], None
    return None, None


def _issue_messages(outcome: dict[str, Any]) -> list[str]:
    """`<severity> <code>: <diagnostics> (at <FHIRPath>)` per error issue (all issues if none is an error)."""
    issues = [i for i in outcome.get("issue") or [] if isinstance(i, dict)]
    errors = [i for i in issues if i.get("severity") in ("fatal", "error")] or issues
    messages = []
    for issue in errors:
        details = issue.get("details")
        text = issue.get("diagnostics") or (details.get("text") if isinstance(details, dict) else None)
        where = [w for w in (issue.get("expression") or issue.get("location") or []) if isinstance(w, str)]
        head = " ".join(str(p) for p in (issue.get("severity"), issue.get("code")) if p) or "issue"
        messages.append(
            f"{head}: {text or 'no diagnostics'}" + (f" (at {', '.join(where)})" if where else "")
        )
    return messages


def _plain_errors(record: dict[str, Any]) -> list[str]:
    """Error strings under the usual keys. Only strings: a failed resource's own fields are never read."""
    return [v for k in ("errorMessage", "error", "message") if isinstance(v := record.get(k), str) and v]
