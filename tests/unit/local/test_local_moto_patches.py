"""The local runtime's fixes to moto's hot paths give moto's answers, without moto's per-message cost."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws
from moto.core.utils import unix_time, utcfromtimestamp
from moto.sqs.models import SQSBackend

from mmpipe.local import moto_patches


@pytest.fixture
def sqs():  # type: ignore[no-untyped-def]
    moto_patches.apply()
    with mock_aws():
        yield boto3.client("sqs", region_name="eu-west-1")


def test_a_message_past_the_retention_period_is_not_received(sqs, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    url = sqs.create_queue(QueueName="short", Attributes={"MessageRetentionPeriod": "60"})["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="old")
    later = unix_time() + 61  # the retention check's clock, 61 s on
    monkeypatch.setattr(moto_patches, "_unix_time", lambda dt=None: later)

    assert sqs.receive_message(QueueUrl=url).get("Messages", []) == []


def test_a_message_within_the_retention_period_is_received(sqs) -> None:  # type: ignore[no-untyped-def]
    url = sqs.create_queue(QueueName="default")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="fresh")

    assert [m["Body"] for m in sqs.receive_message(QueueUrl=url)["Messages"]] == ["fresh"]


def test_receiving_does_not_build_the_queue_attributes_per_message(sqs, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    url = sqs.create_queue(QueueName="busy")["QueueUrl"]
    for start in range(0, 50, 10):
        sqs.send_message_batch(
            QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": str(start + i)} for i in range(10)]
        )
    calls = []
    original = SQSBackend.get_queue_attributes
    monkeypatch.setattr(
        SQSBackend, "get_queue_attributes", lambda self, *a: calls.append(a) or original(self, *a)
    )

    received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]

    assert len(received) == 10
    assert calls == []  # moto 5.2.5 called it once per received message (each call scans the queue 3 times)


def test_the_sqs_clock_reads_the_same_instant_as_motos() -> None:
    import moto.sqs.models

    moto_patches.apply()
    assert moto.sqs.models.unix_time() == pytest.approx(unix_time(), abs=0.05)
    assert moto.sqs.models.unix_time_millis() == pytest.approx(unix_time() * 1000, abs=50)
    assert moto.sqs.models.unix_time(utcfromtimestamp(1_700_000_000)) == 1_700_000_000


def test_a_delayed_message_stays_hidden_until_its_delay_has_passed(sqs) -> None:  # type: ignore[no-untyped-def]
    url = sqs.create_queue(QueueName="delayed")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=1)

    assert sqs.receive_message(QueueUrl=url).get("Messages", []) == []
    assert [m["Body"] for m in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=3)["Messages"]] == ["later"]


HOSTS = [
    "s3.us-east-1.amazonaws.com",
    "mmpipe-dev-lake-123456789012-us-east-1.s3.amazonaws.com",
    "sqs.eu-west-1.amazonaws.com",
    "dynamodb.us-east-1.amazonaws.com",
    "states.us-east-1.amazonaws.com",
    "lambda.us-east-1.amazonaws.com",
    "moto_api",
    None,
]


def test_the_server_routes_each_host_to_the_backend_moto_would(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication
    from moto.server import create_backend_app

    moto_patches.apply()
    app = DomainDispatcherApplication(create_backend_app)
    routed = {host: app.get_backend_for_host(host) for host in HOSTS}
    assert routed == {
        "s3.us-east-1.amazonaws.com": "s3",
        "mmpipe-dev-lake-123456789012-us-east-1.s3.amazonaws.com": "s3",
        "sqs.eu-west-1.amazonaws.com": "sqs",
        "dynamodb.us-east-1.amazonaws.com": "dynamodb",
        "states.us-east-1.amazonaws.com": "stepfunctions",
        "lambda.us-east-1.amazonaws.com": "awslambda",
        "moto_api": "moto_api",
        None: None,
    }

    # A host seen before does not walk moto's package folder again.
    import moto.backends

    walks = []
    monkeypatch.setattr(moto.backends, "list_of_moto_modules", lambda: walks.append(1) or iter(()))
    assert app.get_backend_for_host("s3.us-east-1.amazonaws.com") == "s3"
    assert walks == []
