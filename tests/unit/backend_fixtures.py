"""Helpers of the operational backend tests (HealthLake, HealthImaging, HealthOmics).

A plain module rather than a conftest: the tests import these by name and keep their own small fixtures
(`with stubbed("healthlake") as pair: yield pair`), so each test module still says what it drives.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from moto import mock_aws

from mmhealth.errors import TransientError

REGION = "us-east-1"
BUCKET = "mmpipe-lake"


@contextmanager
def stubbed(service: str) -> Iterator[tuple[Any, Stubber]]:
    """A `service` client under botocore's Stubber, as (client, stubber).

    The Stubber checks every request against the real service model and fails on a call nobody stubbed;
    leaving the block normally also fails on a stubbed response nobody asked for.
    """
    client = boto3.client(service, region_name=REGION)
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


@contextmanager
def stubbed_in_handlers(monkeypatch: pytest.MonkeyPatch, service: str) -> Iterator[Stubber]:
    """`stubbed(service)`, and the handlers' `storage.client(service)` returns it; other services stay moto."""
    from mmhealth import storage

    real_client = storage.client
    with stubbed(service) as (client, stubber):
        monkeypatch.setattr(storage, "client", lambda s: client if s == service else real_client(s))
        yield stubber


def service_model(service: str) -> Any:
    """The botocore service model of `service`, for tests that check our constants against it."""
    return boto3.client(service, region_name=REGION).meta.service_model


@contextmanager
def moto_bucket(bucket: str = BUCKET) -> Iterator[Any]:
    """An S3 client on moto (in process) with `bucket` created."""
    with mock_aws():
        client = boto3.client("s3", region_name=REGION)
        client.create_bucket(Bucket=bucket)
        yield client


def put(s3: Any, key: str, body: str | bytes, *, bucket: str = BUCKET) -> None:
    """Write one object; a str body is UTF-8 encoded."""
    s3.put_object(Bucket=bucket, Key=key, Body=body.encode() if isinstance(body, str) else body)


def ndjson(*records: dict[str, Any]) -> str:
    """One JSON document a line, each line newline-terminated."""
    return "".join(json.dumps(r) + "\n" for r in records)


@contextmanager
def raises_unretried(code: str) -> Iterator[None]:
    """Expects the block to raise the ClientError `code` as is, not as a TransientError to retry on."""
    with pytest.raises(ClientError) as caught:
        yield
    assert not isinstance(caught.value, TransientError)
    assert caught.value.response["Error"]["Code"] == code
