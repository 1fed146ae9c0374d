"""Shared fixtures: an in-process moto server (the same engine the local runtime uses) and a seeded account.

moto's server mode rather than `mock_aws`: pyiceberg writes through pyarrow's C++ S3 client, which only an
HTTP endpoint can serve.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[1]

# Before any mmhealth import: Powertools reads these at import time.
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "mmpipe")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "mmpipe")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    from mmpipe.local.glue_locking import register_glue_locking_hook

    register_glue_locking_hook()  # moto's Glue ignores VersionId; the local runtime enforces it too
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def aws(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """A clean moto account with the pipeline's buckets, ledger table and Glue databases; env set."""
    import boto3
    import requests

    requests.post(f"{moto_endpoint}/moto-api/reset", timeout=10)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    env = {
        "LAKE_BUCKET": "mmpipe-test-lake",
        "GLUE_DATABASE_PREFIX": "mmpipe_test_",
        "LEDGER_TABLE": "mmpipe-test-ledger",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    landing = "mmpipe-test-landing"
    s3.create_bucket(Bucket=landing)
    s3.create_bucket(Bucket=env["LAKE_BUCKET"])
    ddb = boto3.client("dynamodb", endpoint_url=moto_endpoint)
    ddb.create_table(
        TableName=env["LEDGER_TABLE"],
        AttributeDefinitions=[
            {"AttributeName": "delivery", "AttributeType": "S"},
            {"AttributeName": "item", "AttributeType": "S"},
        ],
        KeySchema=[
            {"AttributeName": "delivery", "KeyType": "HASH"},
            {"AttributeName": "item", "KeyType": "RANGE"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    from mmhealth.lakehouse.catalog import NAMESPACES

    glue = boto3.client("glue", endpoint_url=moto_endpoint)
    for namespace in NAMESPACES:
        glue.create_database(DatabaseInput={"Name": f"{env['GLUE_DATABASE_PREFIX']}{namespace}"})
    return SimpleNamespace(
        endpoint=moto_endpoint, landing=landing, lake=env["LAKE_BUCKET"], ledger=env["LEDGER_TABLE"], s3=s3
    )


def stand_in_state_machine(aws: SimpleNamespace, name: str) -> str:
    """A one-state machine for unit tests that only need StartExecution / ListExecutions to work."""
    import boto3

    aws.sfn = boto3.client("stepfunctions", endpoint_url=aws.endpoint)
    definition = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}})
    arn = aws.sfn.create_state_machine(
        name=name, definition=definition, roleArn="arn:aws:iam::123456789012:role/sfn"
    )["stateMachineArn"]
    aws.state_machine = arn
    return str(arn)


class FakeLambdaContext:
    """The attributes Powertools reads from the Lambda context."""

    function_name = "mmpipe-test"
    function_version = "$LATEST"
    memory_limit_in_mb = "1024"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:mmpipe-test"
    aws_request_id = "00000000-0000-0000-0000-000000000000"
    log_group_name = "/mmpipe/test"
    log_stream_name = "test"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


@pytest.fixture
def lambda_context() -> FakeLambdaContext:
    return FakeLambdaContext()
