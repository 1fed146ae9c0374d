"""Where bytes come from and go to: local paths or s3:// URIs (boto3 honours AWS_ENDPOINT_URL, e.g. moto).

The only module that touches boto3.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from functools import cache
from pathlib import Path
from typing import Any

S3_SCHEME = "s3://"


def file_version(path: Path) -> str:
    """`<file name>:<first 12 hex digits of its sha256>`: the version string of weights and parameters."""
    return f"{path.name}:{hashlib.sha256(path.read_bytes()).hexdigest()[:12]}"


def is_s3(uri: str) -> bool:
    return uri.startswith(S3_SCHEME)


def split_s3(uri: str) -> tuple[str, str]:
    """`s3://bucket/key` -> (bucket, key); ValueError without a bucket."""
    bucket, _, key = uri[len(S3_SCHEME) :].partition("/")
    if not bucket:
        raise ValueError(f"{uri!r} has no bucket")
    return bucket, key


@cache
def s3_client() -> Any:
    import boto3

    # boto3 reads AWS_ENDPOINT_URL itself; passing it keeps older botocore versions honest too.
    return boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None)


def download(uri: str, destination: Path) -> Path:
    """Copy an s3:// object to `destination`; botocore's ClientError / OSError on failure."""
    bucket, key = split_s3(uri)
    destination.parent.mkdir(parents=True, exist_ok=True)
    s3_client().download_file(bucket, key, str(destination))
    return destination


def list_json(prefix_uri: str) -> list[str]:
    """s3:// URIs of the .json objects under a prefix, sorted."""
    bucket, prefix = split_s3(prefix_uri)
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    uris = []
    for page in s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        uris += [f"s3://{bucket}/{o['Key']}" for o in page.get("Contents", []) if o["Key"].endswith(".json")]
    return sorted(uris)


class OutputSink:
    """The job's output location: a local folder, or an s3:// prefix (files are uploaded as they are made)."""

    def __init__(self, location: str, scratch: Path) -> None:
        self.location = location
        self.remote = is_s3(location)
        # Masks are written by workers to a local folder: the output itself, or scratch before upload.
        self.local_root = scratch / "output" if self.remote else Path(location)
        self.local_root.mkdir(parents=True, exist_ok=True)
        (self.local_root / "features").mkdir(exist_ok=True)
        (self.local_root / "masks").mkdir(exist_ok=True)

    def local_path(self, relative: str) -> Path:
        return self.local_root / relative

    def put_json(self, relative: str, document: dict[str, Any]) -> None:
        """Write (and upload) a document as strict JSON: ValueError for a NaN or infinity (none must get
        this far), and then nothing is written. The file appears whole or not at all (written beside it,
        then renamed), so a reader of the output never sees half a document."""
        text = json.dumps(document, indent=2, allow_nan=False) + "\n"
        path = self.local_path(relative)
        partial = path.with_name(f".{path.name}.partial")
        try:
            partial.write_text(text)
            partial.replace(path)
        finally:
            partial.unlink(missing_ok=True)
        self.publish(relative)

    def publish(self, relative: str) -> None:
        """Upload a file already written at local_path(relative) (no-op for a local output)."""
        if not self.remote:
            return
        bucket, prefix = split_s3(self.location)
        key = f"{prefix.rstrip('/')}/{relative}" if prefix else relative
        s3_client().upload_file(str(self.local_path(relative)), bucket, key)
        self.local_path(relative).unlink()


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
