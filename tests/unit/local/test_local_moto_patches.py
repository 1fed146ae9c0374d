"""The local runtime's fixes to moto's hot paths give moto's answers, without moto's per-message cost."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws
from moto.core.utils import unix_time
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
    monkeypatch.setattr(moto_patches, "unix_time", lambda: later)

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
