"""`mmpipe redrive --dlq` on moto's SQS (the engine the local runtime uses), which lacks StartMessageMoveTask:
the fallback moves every message, body and attributes intact, and says which way it went."""

from __future__ import annotations

import json
import uuid

import boto3
import pytest
from botocore.exceptions import ClientError

from mmpipe.redrive import redrive_dlq, render, unsupported
from mmpipe.targets import Target


@pytest.fixture
def target(moto_endpoint: str) -> Target:
    session = boto3.session.Session(aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1")
    sqs = session.client("sqs", endpoint_url=moto_endpoint)
    suffix = uuid.uuid4().hex[:8]
    ingest = sqs.create_queue(QueueName=f"ingest-{suffix}")["QueueUrl"]
    dead_letter = sqs.create_queue(QueueName=f"dlq-{suffix}")["QueueUrl"]
    return Target(
        description="moto",
        session=session,
        endpoint_url=moto_endpoint,
        state_machine_arn="arn:aws:states:us-east-1:123456789012:stateMachine:unused",
        lake_bucket="lake",
        landing_bucket="landing",
        ingest_queue_url=ingest,
        dead_letter_queue_url=dead_letter,
        local=True,
    )


def _bodies(sqs: object, url: str) -> list[str]:
    bodies = []
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get(
            "Messages", []
        )  # type: ignore[attr-defined]
        if not messages:
            return sorted(bodies)
        bodies.extend(m["Body"] for m in messages)


def test_moto_does_not_implement_start_message_move_task(target: Target) -> None:
    sqs = target.client("sqs")
    arn = sqs.get_queue_attributes(QueueUrl=target.dead_letter_queue_url, AttributeNames=["QueueArn"])
    with pytest.raises(ClientError) as raised:
        sqs.start_message_move_task(SourceArn=arn["Attributes"]["QueueArn"])

    assert unsupported(raised.value, local=True)
    assert not unsupported(raised.value, local=False)  # from AWS, a 500 is a service error


def test_the_dead_letter_messages_go_back_to_the_ingest_queue(target: Target) -> None:
    sqs = target.client("sqs")
    sent = [json.dumps({"Records": [{"s3": {"object": {"key": f"incoming/d/{n}.vcf"}}}]}) for n in range(23)]
    for body in sent:
        sqs.send_message(QueueUrl=target.dead_letter_queue_url, MessageBody=body)

    planned = redrive_dlq(target, dry_run=True)
    assert (planned["messages"], "method" in planned) == (23, False)

    result = redrive_dlq(target)

    assert result["method"] == "ReceiveMessage/SendMessage/DeleteMessage"
    assert (result["moved"], result["failed"]) == (23, 0)
    assert "does not implement StartMessageMoveTask" in render(result)
    assert _bodies(sqs, target.ingest_queue_url) == sorted(sent)
    assert _bodies(sqs, target.dead_letter_queue_url) == []


def test_an_empty_dead_letter_queue_moves_nothing(target: Target) -> None:
    result = redrive_dlq(target)

    assert result["messages"] == 0
    assert render(result).endswith("nothing to move")
