"""AWS HealthImaging: the optional operational DICOM store of the imaging modality.

The lakehouse import (`imaging.instances`, `imaging.series`) runs with or without this backend. When it is
enabled, the imaging importer asks the data store which of the chunk's series it already holds
(`series_already_imported`, and `instances_in_store` for the instances of those series), stages only what
is missing under a chunk prefix, starts a DICOM import job (`start_dicom_import`), the state machine polls
it (Wait -> `job_status` -> Choice, never `.sync`), and once it has ended `import_outcome` reads what
HealthImaging wrote to S3: the image sets it created or updated, and the files it rejected. Every function
takes its boto3 client as an argument, so tests drive HealthImaging with botocore's Stubber against the
real `medical-imaging` service model and S3 with moto.

Sources (read 2026-01; the botocore service model `medical-imaging` 2023-07-19 is the authority for
request and response shapes):
  [IJ] HealthImaging Developer Guide, "Understanding import jobs",
       https://docs.aws.amazon.com/healthimaging/latest/devguide/understanding-import-jobs.html
  [IS] HealthImaging Developer Guide, "Understanding image sets",
       https://docs.aws.amazon.com/healthimaging/latest/devguide/understanding-image-sets.html
  [GJ] API Reference, GetDICOMImportJob,
       https://docs.aws.amazon.com/healthimaging/latest/APIReference/API_GetDICOMImportJob.html
  [SJ] API Reference, StartDICOMImportJob,
       https://docs.aws.amazon.com/healthimaging/latest/APIReference/API_StartDICOMImportJob.html
  [CLI] AWS CLI reference, `medical-imaging get-dicom-import-job` and `search-image-sets` examples,
       https://docs.aws.amazon.com/cli/latest/reference/medical-imaging/
  [TL] HealthImaging Developer Guide, "Throttling limits",
       https://docs.aws.amazon.com/healthimaging/latest/devguide/throttling-limits.html

Idempotency: StartDICOMImportJob requires a clientToken (1-64 characters of `[A-Za-z0-9._-]`), documented
only as "a unique identifier for API idempotency" [SJ]. Under the AWS-wide idempotency contract a repeated
request with the same token and parameters returns the job the first request started (same jobId); the
same token with other parameters is refused (the model has no IdempotentParameterMismatch error: expect a
ConflictException or ValidationException, which propagate), and the service forgets a token after a window
it does not document. `import_client_token` derives the token from run + chunk, so a Lambda retried after
its first attempt started the job gets that job back; `redrive` (Step Functions'
`$$.Execution.RedriveCount`) gives a deliberate re-drive a new job. The token must always be passed: the
model marks it as an idempotency token, so botocore fills in a random one when it is missing.

Re-imports, what HealthImaging does [IJ][IS]: it sorts imported instances by Study / Series / SOP Instance
UID. Instances of one series imported by one job or by several jobs end up in one *primary* image set as
long as their metadata does not conflict with what the data store holds; an instance imported again
overwrites the stored one and increments the primary image set's version. Data whose Patient / Study /
Series level elements conflict with the existing primary image set goes into a *non-primary* image set
("imported P10 data that conflicts with primary image sets already in the store will be persisted as
non-primary"; its success line says `"isPrimary": false`). So HealthImaging never makes a second primary
image set for a series, but re-importing a delivery still (a) writes a new version of each primary image
set (and is billed as an import), and (b) creates a non-primary duplicate of every series whose re-sent
files differ in any such element (a corrected name, a re-anonymised date).

What we guarantee on top - re-importing the same delivery creates no duplicate image set and no new
version: (1) the clientToken makes a retried start return the job already started, never a second job for
the same chunk; (2) before staging, the importer asks `series_already_imported` (SearchImageSets, EQUAL on
DICOMSeriesInstanceUID, every page) which series the data store already holds and `instances_in_store`
(GetImageSetMetadata) which of their SOP instances it holds; instances already there are not imported
again and their series keep the image set ids found, so a re-delivery imports nothing, while the missing
instances of a series that straddles two deliveries are imported into its existing primary image set (as
[IJ] describes). (3) `import_outcome` reports every non-primary image set and every image set whose version
is above 1, so anything that slipped through (a concurrent run importing the same series, which neither
search can see before that job ends) is visible, never silent. Search sees only ended imports: two runs
importing the same new series at the same time are not deduplicated here (the trigger's bucket+key+etag
dedupe keeps the same file out of two runs).

Job output in S3 [IJ][CLI]: for each job HealthImaging writes a folder
`<outputS3Uri><datastore id>-DicomImport-<job id>/` (GetDICOMImportJob reports that folder as the job's
`outputS3Uri` [CLI]) holding
  job-output-manifest.json   {"jobSummary": {"jobId", "datastoreId", "inputS3Uri", "outputS3Uri",
                             "successOutputS3Uri", "failureOutputS3Uri", "warningsOutputS3Uri",
                             "numberOfScannedFiles", "numberOfImportedFiles", "numberOfFilesWithCustomerError",
                             "numberOfFilesWithServerError", "numberOfGeneratedImageSets",
                             "imageSetsSummary": [{"imageSetId", "numberOfMatchedSOPInstances"}]}}
                             (code that parses live output also sees "imageSetVersion" and "isPrimary" in
                             each image set summary)
  SUCCESS/success.ndjson     {"inputFile": <input key>, "importResponse": {"imageSetId", "isPrimary"}}
  FAILURE/failure.ndjson     {"inputFile": <input key>, "exception": {"exceptionType", "message"}}
  WARNING/warning.ndjson     {"inputFile", "importResponse": {"imageSetId", "imageSetVersion", "isPrimary",
                             "warnings": [{"warning_reason_code", "type", "message"}]}}
`inputFile` is the object key in the input bucket (no bucket). The output names no series or study UID:
`ImportOutcome.image_sets_by_series` joins the input keys with the series the importer read from each file.
The guide's own success.ndjson example writes `True` (not JSON); such lines are read too. A job can end
COMPLETED while files failed ("an import job can return a jobStatus as COMPLETED even if validation issues
are discovered" [GJ]): call `import_outcome` after every terminal status. A FAILED job may have written no
output at all (`import_outcome` then raises BackendJobFailed, naming where it looked).

A failure keeps the input key, HealthImaging's exception type and its message with quoted literals, DICOM
person names (`^`-separated) and `key=value` values redacted; nothing else of a FAILURE line is read.
Series UIDs are never logged (the service model marks them sensitive); logs carry counts only.

Throttling: StartDICOMImportJob is limited to 0.25 requests/s (burst 1), GetDICOMImportJob and
SearchImageSets to 25/s, GetImageSetMetadata to 50/s [TL]; a ThrottlingException (or a service-side or
quota error) becomes TransientError, the name the state machine retries with backoff.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from botocore.exceptions import ConnectionError as BotocoreConnectionError
from botocore.exceptions import ReadTimeoutError
from pydantic import BaseModel, ConfigDict, Field

from mmhealth.backend_io import (
    S3_URI,
    ServiceIO,
    as_int,
    as_str,
    idempotency_token,
    network_error,
    split_s3_uri,
)
from mmhealth.contracts import JobHandle
from mmhealth.errors import BackendJobFailed
from mmhealth.storage import TRANSIENT_CODES

if TYPE_CHECKING:
    from mypy_boto3_medical_imaging import HealthImagingClient
    from mypy_boto3_s3 import S3Client
else:
    HealthImagingClient = Any
    S3Client = Any

__all__ = [
    "BACKEND",
    "FileFailure",
    "ImageSetResult",
    "ImportManifest",
    "ImportOutcome",
    "import_client_token",
    "import_job_name",
    "import_outcome",
    "instances_in_store",
    "job_status",
    "series_already_imported",
    "start_dicom_import",
]

log = logging.getLogger(__name__)

BACKEND = "healthimaging"

ChunkState = Literal["IN_PROGRESS", "COMPLETED", "FAILED"]

# GetDICOMImportJob jobStatus (every value of the service model's enum) -> the ChunkStatus vocabulary.
RUNNING = frozenset({"SUBMITTED", "IN_PROGRESS"})
SUCCEEDED = frozenset({"COMPLETED"})  # may still hide rejected files: read import_outcome
# Why each of these fails the chunk; the sentence goes into the failure message for on-call.
FAILED: dict[str, str] = {
    "FAILED": "the import failed; image sets it created before failing stay in the data store",
}

# Request constraints from the service model (botocore checks types and minimum lengths, not these).
CLIENT_TOKEN = re.compile(r"[A-Za-z0-9._-]{1,64}")
JOB_NAME_MAX = 64
_JOB_NAME = re.compile(r"[A-Za-z0-9._/#-]{1,64}")
_JOB_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._/#-]")
_DATASTORE_ID = re.compile(r"[0-9a-z]{32}")
_IMAGE_SET_ID = re.compile(r"[0-9a-z]{32}")
_JOB_ID = re.compile(r"[0-9a-z]{1,32}")
_ROLE_ARN = re.compile(r"arn:aws(-[^:]+)?:iam::[0-9]{12}:role/.+")
_ROLE_ARN_LENGTH = (20, 2048)
_ACCOUNT_ID = re.compile(r"\d{12}")
S3_URI_MAX = 1024
_SERIES_UID = re.compile(r"[0-9.]{1,512}")

FOLDER_MARKER = "-DicomImport-"
MANIFEST_NAME = "job-output-manifest.json"
# Top folders of the job folder -> what their lines are ("WARNINGS/" as well, should the name vary).
_OUTPUT_FOLDERS = {"SUCCESS": "SUCCESS", "WARNING": "WARNING", "WARNINGS": "WARNING", "FAILURE": "FAILURE"}
SEARCH_PAGE_SIZE = 50  # SearchImageSets maxResults: the model's maximum
MAX_MESSAGE = 500  # characters of one failure message
DEFAULT_MAX_FAILURES = 1000  # failures listed one by one; the rest are only counted

# HealthImaging's retryable codes on top of the shared ones (throttling is already there). A service quota
# (concurrent import jobs per data store) frees up as running jobs end, so it is retried too; a quota that
# never frees up exhausts the state machine's bounded retries and fails the chunk with this code.
_TRANSIENT = TRANSIENT_CODES | {"InternalServerException", "ServiceQuotaExceededException"}
_IO = ServiceIO("HealthImaging", _TRANSIENT)


# ---------------------------------------------------------------------------------------------- models


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileFailure(_Model):
    """One file HealthImaging rejected: which one and why, never its content."""

    input_file: str | None  # the object key in the input bucket, as HealthImaging reports it
    exception_type: str | None
    message: str  # HealthImaging's message, literals redacted
    file: str  # the FAILURE file, relative to the job folder ("FAILURE/failure.ndjson")
    line: int  # 1-based line in that file

    @property
    def detail(self) -> str:
        """`<input key>: <exception type>: <message>`, the shape of a quarantine record's detail."""
        return f"{self.input_file or '?'}: {self.exception_type or 'error'}: {self.message}"


class ImageSetResult(_Model):
    """An image set the job created or added instances to."""

    image_set_id: str
    version: int | None = None  # imageSetVersion where the output gives it
    is_primary: bool | None = None  # False: the data conflicted with the store's primary image set
    instances: int | None = None  # numberOfMatchedSOPInstances (manifest)
    input_files: list[str] = Field(default_factory=list)  # input keys imported into it, sorted

    @property
    def created(self) -> bool:
        return self.version == 1

    @property
    def updated(self) -> bool:
        """An existing image set the job wrote a new version of (instances added or overwritten)."""
        return self.version is not None and self.version > 1


class ImportManifest(_Model):
    """The counters of the job's manifest; None where the manifest lacks one."""

    files_scanned: int | None = None
    files_imported: int | None = None
    files_with_customer_error: int | None = None
    files_with_server_error: int | None = None
    image_sets_generated: int | None = None

    @property
    def files_failed(self) -> int:
        return (self.files_with_customer_error or 0) + (self.files_with_server_error or 0)


class ImportOutcome(_Model):
    """What an ended import job did, read from its output folder."""

    job_id: str
    output_uri: str  # s3://<bucket>/<prefix><datastore id>-DicomImport-<job id>/
    imported: int  # distinct input files in SUCCESS and WARNING lines
    failed: int  # FAILURE lines (all of them, even past the listed ones)
    failures: list[FileFailure]  # the first `max_failures`, in file order
    warnings: int = 0  # files imported with warnings (WARNING lines)
    warning_types: dict[str, int] = Field(default_factory=dict)  # "<type> (<code>)" -> files
    image_sets: list[ImageSetResult] = Field(default_factory=list)  # sorted by id
    manifest: ImportManifest | None = None

    @property
    def unreported_failures(self) -> int:
        """Failed files the manifest counts but no FAILURE line explains (0 without a manifest)."""
        return max(0, self.manifest.files_failed - self.failed) if self.manifest else 0

    @property
    def non_primary(self) -> list[str]:
        """Image sets that conflicted with data already in the store (duplicates to reconcile)."""
        return [s.image_set_id for s in self.image_sets if s.is_primary is False]

    @property
    def updated(self) -> list[str]:
        """Existing image sets this job wrote a new version of."""
        return [s.image_set_id for s in self.image_sets if s.updated]

    @property
    def clean(self) -> bool:
        """No file rejected (by the FAILURE files' account and the manifest's) and no non-primary set."""
        return self.failed == 0 and self.unreported_failures == 0 and not self.non_primary

    def image_sets_by_series(self, series_of_file: Mapping[str, str]) -> dict[str, list[str]]:
        """Series UID -> image set ids, joining input keys with the series the importer read from them.

        `series_of_file` maps an input key (as staged, no bucket) to its Series Instance UID. Keys the
        mapping lacks are left out. Primary image sets come first. The shape is that of
        `series_already_imported`, so the two merge into one record of where each series lives.
        """
        found: dict[str, list[str]] = {}
        for image_set in sorted(self.image_sets, key=_primary_first):
            for key in image_set.input_files:
                series = series_of_file.get(key)
                if series is not None and image_set.image_set_id not in found.setdefault(series, []):
                    found[series].append(image_set.image_set_id)
        return found


# ------------------------------------------------------------------------------------------ naming


def import_client_token(run_id: str, chunk_id: str, *, redrive: int = 0) -> str:
    """The clientToken of a chunk's import: `mmpipe-` + 40 hex digits of sha256(run, chunk[, redrive]).

    The same run and chunk always give the same token, so a retried start returns the job already
    started. `redrive` > 0 (a deliberate re-drive of a failed chunk) gives a new token, hence a new job.
    """
    return idempotency_token(run_id, chunk_id, redrive=redrive)


def import_job_name(run_id: str, chunk_id: str) -> str:
    """A jobName on-call can read: `<run_id>/<chunk_id>`, other characters as "-", cut from the left to 64.

    The right end is kept: it holds the run id's digest and the chunk, which tell jobs apart.
    """
    return _JOB_NAME_UNSAFE.sub("-", f"{run_id}/{chunk_id}")[-JOB_NAME_MAX:]


# ------------------------------------------------------------------------------------------ import


def start_dicom_import(
    client: HealthImagingClient,
    *,
    datastore_id: str,
    input_s3_uri: str,
    output_s3_uri: str,
    role_arn: str,
    job_name: str,
    client_token: str,
    input_owner_account_id: str | None = None,
) -> JobHandle:
    """Import the DICOM P10 files under `input_s3_uri` into the data store; idempotent per `client_token`.

    A repeat with the same token and parameters returns the job the first call started (module
    docstring). Both URIs must be folders ending in "/": HealthImaging imports every object under the
    input prefix (without the "/", `.../chunk-1` would also take `.../chunk-10/`), and writes the job's
    folder under the output prefix, which must not lie inside the input prefix (a later import of that
    prefix would read the reports as DICOM). `input_owner_account_id` names the input bucket's owner when
    it is another account. Raises ValueError on a value the service would refuse; TransientError on
    throttling / service / quota errors (the state machine retries); any other ClientError (validation,
    access, a missing or inactive data store, a token reused with other parameters) propagates.
    """
    _check_datastore(datastore_id)
    if not CLIENT_TOKEN.fullmatch(client_token):
        raise ValueError(f"clientToken must be 1-64 characters of [A-Za-z0-9._-], not {client_token!r}")
    if not _JOB_NAME.fullmatch(job_name):
        raise ValueError(f"jobName must be 1-{JOB_NAME_MAX} characters of [A-Za-z0-9._/#-], not {job_name!r}")
    if not (_ROLE_ARN_LENGTH[0] <= len(role_arn) <= _ROLE_ARN_LENGTH[1] and _ROLE_ARN.fullmatch(role_arn)):
        raise ValueError(f"dataAccessRoleArn must be an IAM role ARN, not {role_arn!r}")
    if input_owner_account_id is not None and not _ACCOUNT_ID.fullmatch(input_owner_account_id):
        raise ValueError(f"inputOwnerAccountId must be 12 digits, not {input_owner_account_id!r}")
    for name, uri in (("input", input_s3_uri), ("output", output_s3_uri)):
        split_s3_uri(uri)
        if len(uri) > S3_URI_MAX:
            raise ValueError(f"the {name} URI is longer than {S3_URI_MAX} characters")
        if not uri.endswith("/"):
            raise ValueError(f"the {name} URI must be a folder ending in '/', not {uri!r}")
    if output_s3_uri.startswith(input_s3_uri):
        raise ValueError(f"the output folder {output_s3_uri!r} lies inside the input folder {input_s3_uri!r}")
    request: dict[str, Any] = {
        "jobName": job_name,
        "dataAccessRoleArn": role_arn,
        "clientToken": client_token,
        "datastoreId": datastore_id,
        "inputS3Uri": input_s3_uri,
        "outputS3Uri": output_s3_uri,
    }
    if input_owner_account_id is not None:
        request["inputOwnerAccountId"] = input_owner_account_id
    response = _IO.call("StartDICOMImportJob", client.start_dicom_import_job, **request)
    log.info(
        "HealthImaging import %s (%s) for %s: %s",
        response["jobId"],
        job_name,
        input_s3_uri,
        response.get("jobStatus"),
    )
    return JobHandle(backend=BACKEND, job_id=response["jobId"])


def job_status(
    client: HealthImagingClient, *, datastore_id: str, job_id: str
) -> tuple[ChunkState, list[str]]:
    """("IN_PROGRESS" | "COMPLETED" | "FAILED", messages) of a DICOM import job.

    SUBMITTED, IN_PROGRESS -> IN_PROGRESS; COMPLETED -> COMPLETED (which may still hide rejected files:
    read `import_outcome`); FAILED -> FAILED, with the job's message. An unknown status counts as
    IN_PROGRESS (the poll loop is bounded). Raises TransientError on throttling / service errors; any
    other ClientError (an unknown job: ResourceNotFoundException) propagates.
    """
    response = _IO.call(
        "GetDICOMImportJob", client.get_dicom_import_job, datastoreId=datastore_id, jobId=job_id
    )
    job = response["jobProperties"]
    status = job["jobStatus"]
    if status in SUCCEEDED:
        return "COMPLETED", []
    if status in FAILED:
        message = job.get("message") or "no message"
        return "FAILED", [f"HealthImaging import {job_id} {status}: {FAILED[status]}: {message}"]
    if status not in RUNNING:
        log.warning("HealthImaging import %s has unknown status %s; polling on", job_id, status)
    return "IN_PROGRESS", []


# ------------------------------------------------------------------------------------------ what is there


def series_already_imported(
    client: HealthImagingClient, *, datastore_id: str, series_uids: Iterable[str]
) -> dict[str, list[str]]:
    """Series Instance UID -> ids of the image sets holding it, for the series the data store has.

    One SearchImageSets per distinct series (EQUAL on DICOMSeriesInstanceUID, every page); series the
    store lacks are absent from the result. Primary image sets come first; non-primary ones (data that
    conflicted with the primary set) follow, since they hold the series too. A result whose DICOMTags
    name another series is ignored. Only ended imports are visible. Raises ValueError on a UID the
    service would refuse; TransientError on throttling / service errors; any other ClientError propagates.
    """
    _check_datastore(datastore_id)
    wanted = list(dict.fromkeys(series_uids))
    for uid in wanted:
        if not isinstance(uid, str) or not _SERIES_UID.fullmatch(uid):
            raise ValueError("a Series Instance UID must be 1-512 characters of [0-9.]")
    found: dict[str, list[str]] = {}
    for uid in wanted:
        image_sets = _image_sets_of_series(client, datastore_id, uid)
        if image_sets:
            found[uid] = image_sets
    log.info(
        "HealthImaging data store %s already holds %d of %d series (%d image sets)",
        datastore_id,
        len(found),
        len(wanted),
        sum(len(ids) for ids in found.values()),
    )
    return found


def _image_sets_of_series(client: HealthImagingClient, datastore_id: str, uid: str) -> list[str]:
    paginator = client.get_paginator("search_image_sets")
    pages = paginator.paginate(
        datastoreId=datastore_id,
        searchCriteria={"filters": [{"values": [{"DICOMSeriesInstanceUID": uid}], "operator": "EQUAL"}]},
        PaginationConfig={"PageSize": SEARCH_PAGE_SIZE},
    )
    ranked: dict[str, bool | None] = {}
    for page in _IO.pages("SearchImageSets", pages):
        for summary in page.get("imageSetsMetadataSummaries", []):
            tagged = (summary.get("DICOMTags") or {}).get("DICOMSeriesInstanceUID")
            if tagged and tagged != uid:
                log.warning("SearchImageSets returned image set %s of another series", summary["imageSetId"])
                continue
            ranked.setdefault(summary["imageSetId"], summary.get("isPrimary"))
    return [image_set_id for image_set_id, _ in sorted(ranked.items(), key=lambda kv: _rank(kv[1]))]


def instances_in_store(
    client: HealthImagingClient, *, datastore_id: str, image_set_ids: Iterable[str]
) -> dict[str, frozenset[str]]:
    """Series Instance UID -> the SOP Instance UIDs the given image sets hold (GetImageSetMetadata).

    With it the importer stages only the instances of a known series the store lacks: none on a
    re-delivery, the late ones of a series straddling two deliveries. Only the `Study.Series.<uid>.
    Instances` keys of the (gzipped) metadata document are read, never its Patient or Study elements.
    Raises ValueError on an id the service would refuse, BackendJobFailed on a document that is not the
    documented JSON; TransientError on throttling / service errors; other ClientErrors propagate.
    """
    _check_datastore(datastore_id)
    ids = list(dict.fromkeys(image_set_ids))
    for image_set_id in ids:
        if not isinstance(image_set_id, str) or not _IMAGE_SET_ID.fullmatch(image_set_id):
            raise ValueError(f"an image set id is 32 characters of [0-9a-z], not {image_set_id!r}")
    held: dict[str, set[str]] = {}
    for image_set_id in ids:
        response = _IO.call(
            "GetImageSetMetadata",
            client.get_image_set_metadata,
            datastoreId=datastore_id,
            imageSetId=image_set_id,
        )
        document = _metadata_document(image_set_id, response)
        for series_uid, series in _dict(_dict(document.get("Study")).get("Series")).items():
            held.setdefault(series_uid, set()).update(_dict(_dict(series).get("Instances")))
    return {uid: frozenset(instances) for uid, instances in held.items()}


def _metadata_document(image_set_id: str, response: Any) -> dict[str, Any]:
    try:
        blob = response["imageSetMetadataBlob"].read()
    except (BotocoreConnectionError, ReadTimeoutError) as exc:
        raise network_error("HealthImaging", "GetImageSetMetadata", exc) from exc
    try:
        if blob[:2] == b"\x1f\x8b" or response.get("contentEncoding") == "gzip":
            blob = gzip.decompress(blob)
        document = json.loads(blob)
    except (OSError, EOFError, ValueError) as exc:
        raise BackendJobFailed(f"image set {image_set_id}: metadata is not gzipped JSON") from exc
    if not isinstance(document, dict):
        raise BackendJobFailed(f"image set {image_set_id}: metadata is not a JSON object")
    return document


# ------------------------------------------------------------------------------------------ outcome


def import_outcome(
    s3_client: S3Client,
    output_s3_uri: str,
    job_id: str,
    *,
    datastore_id: str | None = None,
    max_failures: int = DEFAULT_MAX_FAILURES,
) -> ImportOutcome:
    """Read an ended job's output: the manifest, the image sets of SUCCESS/WARNING lines, FAILURE lines.

    `output_s3_uri` is the URI given to `start_dicom_import` (the job folder is found under it by its
    `-DicomImport-<job id>` suffix, or a folder named after the job id alone; pass `datastore_id` to skip
    the search) or the job folder itself, as GetDICOMImportJob reports it. Raises ValueError on a job id
    the service would not issue; BackendJobFailed when no (or more than one) folder of the job exists;
    TransientError on S3 throttling; any other ClientError propagates. A missing or unreadable manifest
    is logged and left out, not an error.
    """
    if not _JOB_ID.fullmatch(job_id):
        raise ValueError(f"a job id is 1-32 characters of [0-9a-z], not {job_id!r}")
    bucket, prefix = split_s3_uri(output_s3_uri)
    folder = _IO.job_folder(
        s3_client,
        bucket,
        prefix,
        marker=FOLDER_MARKER,
        job_id=job_id,
        datastore_id=datastore_id,
        bare_job_id=True,
    )
    manifest_key: str | None = None
    parts_of: dict[str, list[str]] = {"SUCCESS": [], "WARNING": [], "FAILURE": []}
    for key, size in sorted(_IO.objects(s3_client, bucket, folder)):
        parts = key[len(folder) :].split("/")
        if not parts[-1] or size == 0:
            continue
        kind = _OUTPUT_FOLDERS.get(parts[0].upper()) if len(parts) > 1 else None
        if len(parts) == 1 and parts[0].lower() == MANIFEST_NAME:
            manifest_key = key
        elif kind is not None:
            parts_of[kind].append(key)
    manifest, summaries = _read_manifest(s3_client, bucket, manifest_key) if manifest_key else (None, [])

    sets: dict[str, dict[str, Any]] = {}
    for summary in summaries:
        _merge(sets, summary, None)
    imported: set[str] = set()
    anonymous_imports = 0
    warnings = 0
    warning_types: dict[str, int] = {}
    for kind in ("SUCCESS", "WARNING"):
        for key in parts_of[kind]:
            for line in _IO.lines(s3_client, bucket, key):
                record = _json_object(line)
                if record is None:
                    if line.strip():
                        log.warning("HealthImaging import %s: unreadable %s line in %s", job_id, kind, key)
                    continue
                input_file = _input_key(record.get("inputFile"))
                if input_file is None:
                    anonymous_imports += 1
                else:
                    imported.add(input_file)
                response = _dict(record.get("importResponse"))
                if response:
                    _merge(sets, response, input_file)
                if kind == "WARNING":
                    warnings += 1
                    for warning in response.get("warnings") or [{}]:
                        name = _warning_name(_dict(warning))
                        warning_types[name] = warning_types.get(name, 0) + 1

    failed, failures = _IO.failure_lines(
        s3_client, bucket, folder, parts_of["FAILURE"], _parse_failure, max_failures
    )

    outcome = ImportOutcome(
        job_id=job_id,
        output_uri=f"s3://{bucket}/{folder}",
        imported=len(imported) + anonymous_imports,
        failed=failed,
        failures=failures,
        warnings=warnings,
        warning_types=warning_types,
        image_sets=[
            ImageSetResult(
                image_set_id=image_set_id,
                version=acc["version"],
                is_primary=acc["is_primary"],
                instances=acc["instances"],
                input_files=sorted(acc["files"]),
            )
            for image_set_id, acc in sorted(sets.items())
        ],
        manifest=manifest,
    )
    if manifest_key is None:
        log.warning("HealthImaging import %s: no manifest in %s", job_id, outcome.output_uri)
    if not outcome.clean:
        log.warning(
            "HealthImaging import %s: %d files rejected, %d counted only by the manifest, "
            "%d non-primary image sets",
            job_id,
            outcome.failed,
            outcome.unreported_failures,
            len(outcome.non_primary),
        )
    return outcome


def _read_manifest(
    s3_client: S3Client, bucket: str, key: str
) -> tuple[ImportManifest | None, list[dict[str, Any]]]:
    body = _IO.body(s3_client, bucket, key).read()
    raw = _json_object(body)
    if raw is None:
        log.warning("HealthImaging manifest s3://%s/%s is not a JSON object; ignored", bucket, key)
        return None, []
    summary = _dict(raw.get("jobSummary")) or raw
    manifest = ImportManifest(
        files_scanned=as_int(summary.get("numberOfScannedFiles")),
        files_imported=as_int(summary.get("numberOfImportedFiles")),
        files_with_customer_error=as_int(summary.get("numberOfFilesWithCustomerError")),
        files_with_server_error=as_int(summary.get("numberOfFilesWithServerError")),
        image_sets_generated=as_int(summary.get("numberOfGeneratedImageSets")),
    )
    summaries = [s for s in summary.get("imageSetsSummary") or [] if isinstance(s, dict)]
    return manifest, summaries


def _merge(sets: dict[str, dict[str, Any]], record: dict[str, Any], input_file: str | None) -> None:
    """Fold a manifest image set summary or a line's importResponse into the image set it names."""
    image_set_id = as_str(record.get("imageSetId"))
    if image_set_id is None:
        return
    acc = sets.setdefault(
        image_set_id, {"version": None, "is_primary": None, "instances": None, "files": set()}
    )
    version = as_int(record.get("imageSetVersion"))
    if version is not None:
        acc["version"] = max(acc["version"] or 0, version)
    primary = record.get("isPrimary")
    if isinstance(primary, bool):  # one "not primary" anywhere wins: the conflict must not be hidden
        acc["is_primary"] = primary if acc["is_primary"] is None else acc["is_primary"] and primary
    instances = as_int(record.get("numberOfMatchedSOPInstances"))
    if instances is not None:
        acc["instances"] = instances
    if input_file is not None:
        acc["files"].add(input_file)


def _warning_name(warning: dict[str, Any]) -> str:
    kind = as_str(warning.get("type")) or "warning"
    code = as_int(warning.get("warning_reason_code"))
    return f"{kind} ({code})" if code is not None else kind


def _parse_failure(line: bytes, file: str, n: int) -> FileFailure:
    """One FAILURE line -> input key, exception type, redacted message. Nothing else of the line is read."""
    record = _json_object(line)
    if record is None:
        message = "unreadable FAILURE line (not a JSON object)"
        return FileFailure(input_file=None, exception_type=None, message=message, file=file, line=n)
    exception = record.get("exception")
    exception_type: str | None = None
    text: str | None = None
    if isinstance(exception, dict):
        exception_type = as_str(exception.get("exceptionType"))
        text = as_str(exception.get("message"))
    elif isinstance(exception, str):
        text = exception
    text = text or as_str(record.get("message")) or as_str(record.get("errorMessage"))
    return FileFailure(
        input_file=_input_key(record.get("inputFile")),
        exception_type=exception_type,
        message=_redact(text) if text else "rejected by HealthImaging without a reason",
        file=file,
        line=n,
    )


_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"|`[^`]*`")
_PERSON_NAME = re.compile(r"\S*\^\S*")  # DICOM PN values separate their components with '^'
_ASSIGNED = re.compile(r"(?<=[\w\]])\s*=\s*[^\s,;)]+")


def _redact(text: str) -> str:
    """HealthImaging's message with the literal values it may quote replaced by <value>."""
    text = _QUOTED.sub("<value>", text)
    text = _PERSON_NAME.sub("<value>", text)
    text = _ASSIGNED.sub("=<value>", text)
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


# ------------------------------------------------------------------------------------------ values


def _check_datastore(datastore_id: str) -> None:
    if not isinstance(datastore_id, str) or not _DATASTORE_ID.fullmatch(datastore_id):
        raise ValueError(f"a data store id is 32 characters of [0-9a-z], not {datastore_id!r}")


def _input_key(value: Any) -> str | None:
    """`inputFile` as a key: the guide reports keys; an s3:// URI is reduced to its key."""
    text = as_str(value)
    if text is not None and text.startswith("s3://"):
        match = S3_URI.fullmatch(text)
        return (match["prefix"] or None) if match else text
    return text


_PYTHON_BOOL = re.compile(r"(?<=[:,\[]) *(True|False)\b")


def _json_object(line: bytes) -> dict[str, Any] | None:
    """A JSON object, or None. Tolerates the Python `True`/`False` of the guide's success.ndjson example."""
    try:
        record = json.loads(line)
    except ValueError:
        text = line.decode("utf-8", "replace")
        try:
            record = json.loads(_PYTHON_BOOL.sub(lambda m: m[0].replace(m[1], m[1].lower()), text))
        except ValueError:
            return None
    return record if isinstance(record, dict) else None


def _rank(primary: bool | None) -> int:
    return {True: 0, None: 1, False: 2}[primary]


def _primary_first(image_set: ImageSetResult) -> tuple[int, str]:
    return _rank(image_set.is_primary), image_set.image_set_id


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
