"""Every object is read at the version its event announced (storage.download_object), never at newer bytes."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from mmhealth import storage
from mmhealth.contracts import S3Object
from mmhealth.errors import SupersededObject


def put(aws: SimpleNamespace, body: bytes) -> S3Object:
    response = aws.s3.put_object(Bucket=aws.landing, Key="incoming/d/obs.ndjson", Body=body)
    return S3Object(
        bucket=aws.landing,
        key="incoming/d/obs.ndjson",
        etag=response["ETag"].strip('"'),
        version_id=response.get("VersionId"),
    )


def test_a_versioned_object_is_read_at_its_version_after_an_overwrite(
    aws: SimpleNamespace, tmp_path: Path
) -> None:
    aws.s3.put_bucket_versioning(Bucket=aws.landing, VersioningConfiguration={"Status": "Enabled"})
    first = put(aws, b"first\n")
    put(aws, b"second\n")
    assert first.version_id
    assert storage.download_object(first, tmp_path / "f").read_bytes() == b"first\n"


def test_without_a_version_an_overwritten_object_is_superseded_not_read(
    aws: SimpleNamespace, tmp_path: Path
) -> None:
    first = put(aws, b"first\n").model_copy(update={"version_id": None})
    second = put(aws, b"second\n").model_copy(update={"version_id": None})
    with pytest.raises(SupersededObject, match="no longer the object's"):
        storage.download_object(first, tmp_path / "f")
    assert storage.download_object(second, tmp_path / "g").read_bytes() == b"second\n"
