"""How the operational backends (HealthLake, HealthImaging, HealthOmics) call AWS and read their S3 output.

Each backend module makes one `ServiceIO` with its name (used in error messages) and its own set of
retryable error codes, and calls the service and S3 through it. Every call maps failures the same way:
a ClientError whose code is in the set, or a network error (connection, read timeout), becomes
TransientError, the name the state machine retries on; any other ClientError propagates unchanged.

The rest are small helpers the backends share: splitting s3:// URIs, lenient int/str coercion of
service output, and the idempotency token derived from a run and a chunk.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from botocore.exceptions import ClientError, ReadTimeoutError
from botocore.exceptions import ConnectionError as BotocoreConnectionError

from mmhealth.errors import BackendJobFailed, TransientError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any

__all__ = [
    "S3_URI",
    "ServiceIO",
    "as_int",
    "as_str",
    "idempotency_token",
    "network_error",
    "split_s3_uri",
]

S3_URI = re.compile(r"s3://(?P<bucket>[a-z0-9][.\-a-z0-9]{1,61}[a-z0-9])(?:/(?P<prefix>.*))?")

_NETWORK_ERRORS = (BotocoreConnectionError, ReadTimeoutError)

F = TypeVar("F")


@dataclass(frozen=True)
class ServiceIO:
    """One backend's way of calling AWS: `name` for messages, `transient` the codes worth a retry.

    `transient` applies to the backend's S3 calls as well as to the service's own.
    """

    name: str
    transient: Collection[str]

    # ---------------------------------------------------------------------------------- calls

    def call(self, operation: str, method: Callable[..., Any], /, **kwargs: Any) -> Any:
        """`method(**kwargs)` of the service. Raises TransientError on a transient code or a network
        error ("<name> <operation>: <code> (retry later)"); any other ClientError propagates."""
        return _guarded_call(self.name, operation, self.transient, method, kwargs)

    def pages(self, operation: str, pages: Iterable[Any]) -> Iterator[Any]:
        """The pages of a service paginator; a failing page raises as `call` does."""
        return _guarded_pages(self.name, operation, self.transient, pages)

    def s3_call(self, operation: str, method: Callable[..., Any], /, **kwargs: Any) -> Any:
        """`call` for an S3 method, reported as "S3 <operation>"."""
        return _guarded_call("S3", operation, self.transient, method, kwargs)

    # ---------------------------------------------------------------------------------- S3 reads

    def objects(
        self, s3_client: S3Client, bucket: str, prefix: str, max_keys: int = 1000
    ) -> Iterator[tuple[str, int]]:
        """(key, size) of every object under `prefix`, every page (`max_keys` a page), in S3's order.

        Raises as `s3_call` does, from the page that failed."""
        paginator = s3_client.get_paginator("list_objects_v2")
        pages = paginator.paginate(Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": max_keys})
        for page in _guarded_pages("S3", "ListObjectsV2", self.transient, pages):
            for item in page.get("Contents", []):
                yield item["Key"], int(item.get("Size", 0))

    def subfolders(self, s3_client: S3Client, bucket: str, prefix: str) -> Iterator[str]:
        """The "folders" right under `prefix` (common prefixes ending in "/"), every page.

        Raises as `s3_call` does."""
        paginator = s3_client.get_paginator("list_objects_v2")
        pages = paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/")
        for page in _guarded_pages("S3", "ListObjectsV2", self.transient, pages):
            for item in page.get("CommonPrefixes", []):
                yield item["Prefix"]

    def body(self, s3_client: S3Client, bucket: str, key: str) -> Any:
        """The object's streaming body (GetObject). Raises as `s3_call` does; reading it is unguarded."""
        return self.s3_call("GetObject", s3_client.get_object, Bucket=bucket, Key=key)["Body"]

    def lines(self, s3_client: S3Client, bucket: str, key: str) -> Iterator[bytes]:
        """The object's lines, streamed, without line ends. Raises as `s3_call` does on GetObject, and
        TransientError ("S3 GetObject s3://<bucket>/<key>: ...") on a network error while streaming."""
        body = self.body(s3_client, bucket, key)
        try:
            yield from body.iter_lines()
        except _NETWORK_ERRORS as exc:
            raise network_error("S3", f"GetObject s3://{bucket}/{key}", exc) from exc

    def failure_lines(
        self,
        s3_client: S3Client,
        bucket: str,
        folder: str,
        keys: Iterable[str],
        parse: Callable[[bytes, str, int], F],
        max_failures: int,
    ) -> tuple[int, list[F]]:
        """(count, parsed) of the non-blank lines of the failure files `keys` under `folder`, in order.

        Every line is counted; only the first `max_failures` are parsed, as `parse(line, key relative to
        `folder`, 1-based line number in its file)`. Raises as `lines` does.
        """
        failures: list[F] = []
        failed = 0
        for key in keys:
            for n, line in enumerate(self.lines(s3_client, bucket, key), start=1):
                if not line.strip():
                    continue
                failed += 1
                if len(failures) < max_failures:
                    failures.append(parse(line, key[len(folder) :], n))
        return failed, failures

    def job_folder(
        self,
        s3_client: S3Client,
        bucket: str,
        prefix: str,
        *,
        marker: str,
        job_id: str,
        datastore_id: str | None,
        bare_job_id: bool = False,
    ) -> str:
        """The key prefix (ending in "/") of a job's output folder `<datastore id><marker><job id>/`.

        `prefix` is either that folder itself (with or without the "/") or the folder it was written
        under. With `datastore_id` the folder's name is known and only checked for objects; otherwise the
        folders right under `prefix` are searched. `bare_job_id`: a folder named after the job id alone
        counts too. Raises BackendJobFailed when no folder, or more than one, is the job's; S3 errors as
        `s3_call`.
        """
        suffix = f"{marker}{job_id}"

        def is_job_folder(path: str) -> bool:  # path: a key prefix without its trailing "/"
            return path.endswith(suffix) or (bare_job_id and path.rsplit("/", 1)[-1] == job_id)

        if prefix.rstrip("/") and is_job_folder(prefix.rstrip("/").rsplit("/", 1)[-1]):
            return prefix.rstrip("/") + "/"
        base = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        if datastore_id is not None:
            folder = f"{base}{datastore_id}{suffix}/"
            if next(self.objects(s3_client, bucket, folder, max_keys=1), None) is not None:
                return folder
        folders = [p for p in self.subfolders(s3_client, bucket, base) if is_job_folder(p.rstrip("/"))]
        if len(folders) == 1:
            return folders[0]
        where = f"s3://{bucket}/{base}"
        if not folders:
            raise BackendJobFailed(
                f"{self.name} import {job_id}: no output folder '*{suffix}/' under {where}"
            )
        raise BackendJobFailed(
            f"{self.name} import {job_id}: several output folders under {where}: {folders}"
        )


def network_error(service: str, operation: str, exc: Exception) -> TransientError:
    """The TransientError for a network error: "<service> <operation>: <error type> (retry later)"."""
    return TransientError(f"{service} {operation}: {type(exc).__name__} (retry later)")


def _reraise_transient(service: str, operation: str, transient: Collection[str], exc: ClientError) -> None:
    code = exc.response.get("Error", {}).get("Code", "")
    if code in transient:
        raise TransientError(f"{service} {operation}: {code} (retry later)") from exc


def _guarded_call(
    service: str,
    operation: str,
    transient: Collection[str],
    method: Callable[..., Any],
    kwargs: dict[str, Any],
) -> Any:
    try:
        return method(**kwargs)
    except ClientError as exc:
        _reraise_transient(service, operation, transient, exc)
        raise
    except _NETWORK_ERRORS as exc:
        raise network_error(service, operation, exc) from exc


def _guarded_pages(
    service: str, operation: str, transient: Collection[str], pages: Iterable[Any]
) -> Iterator[Any]:
    try:
        yield from pages
    except ClientError as exc:
        _reraise_transient(service, operation, transient, exc)
        raise
    except _NETWORK_ERRORS as exc:
        raise network_error(service, operation, exc) from exc


# ---------------------------------------------------------------------------------------------- values


def split_s3_uri(uri: str) -> tuple[str, str]:
    """(bucket, key or prefix, "" when absent) of `s3://<bucket>[/<key>]`; ValueError on anything else."""
    match = S3_URI.fullmatch(uri)
    if match is None:
        raise ValueError(f"not an s3://<bucket>/<key> URI: {uri!r}")
    return match["bucket"], match["prefix"] or ""


def as_int(value: Any) -> int | None:
    """An int, a whole float or a string of digits as int; None for anything else (bools included)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def as_str(value: Any) -> str | None:
    """A non-empty string as is; None for anything else."""
    return value if isinstance(value, str) and value else None


def idempotency_token(run_id: str, chunk_id: str, *, redrive: int = 0) -> str:
    """`mmpipe-` + 40 hex digits of sha256(run, chunk[, redrive]): the same run and chunk, the same token.

    Fits every backend's client token pattern (letters, digits and "-", 47 characters). Raises
    ValueError on a negative `redrive`.
    """
    if redrive < 0:
        raise ValueError(f"redrive must be >= 0, not {redrive}")
    seed = f"{run_id}\n{chunk_id}" + (f"\nredrive={redrive}" if redrive else "")
    return f"mmpipe-{hashlib.sha256(seed.encode()).hexdigest()[:40]}"
