"""The SQS event source: Lambda's event format and its partial-batch-failure rules."""

from __future__ import annotations

import json

import pytest

from mmpipe.local.event_sources import _batch_item_failures, sqs_record

QUEUE_ARN = "arn:aws:sqs:eu-west-1:123456789012:ingest"


def test_a_received_message_becomes_a_lambda_sqs_record() -> None:
    message = {
        "MessageId": "m-1",
        "ReceiptHandle": "rh-1",
        "MD5OfBody": "5d41402abc4b2a76b9719d911017c592",
        "Body": "hello",
        "Attributes": {
            "SenderId": "AIDA",
            "SentTimestamp": "1700000000000",
            "ApproximateReceiveCount": "2",
            "ApproximateFirstReceiveTimestamp": "1700000000001",
        },
        "MD5OfMessageAttributes": "abc",
        "MessageAttributes": {
            "origin": {"DataType": "String", "StringValue": "landing"},
            "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
        },
    }

    record = sqs_record(message, QUEUE_ARN)

    assert record == {
        "messageId": "m-1",
        "receiptHandle": "rh-1",
        "body": "hello",
        "attributes": message["Attributes"],
        "messageAttributes": {
            "origin": {
                "stringValue": "landing",
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": "String",
            },
            "blob": {
                "binaryValue": "AAE=",
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": "Binary",
            },
        },
        "md5OfBody": "5d41402abc4b2a76b9719d911017c592",
        "md5OfMessageAttributes": "abc",
        "eventSource": "aws:sqs",
        "eventSourceARN": QUEUE_ARN,
        "awsRegion": "eu-west-1",
    }


@pytest.mark.parametrize(
    ("response", "failed"),
    [
        (None, set()),
        ({}, set()),
        ({"batchItemFailures": []}, set()),
        ({"batchItemFailures": [{"itemIdentifier": "b"}]}, {"b"}),
        # Lambda fails the whole batch for an identifier that is empty or not in the batch.
        ({"batchItemFailures": [{"itemIdentifier": ""}]}, {"a", "b"}),
        ({"batchItemFailures": [{"itemIdentifier": "zzz"}]}, {"a", "b"}),
        ({"batchItemFailures": "b"}, {"a", "b"}),
    ],
)
def test_batch_item_failures_follow_lambdas_rules(response: object, failed: set[str]) -> None:
    body = json.dumps(response).encode() if response is not None else b"null"

    assert _batch_item_failures(body, {"a", "b"}) == failed


def test_a_response_that_is_not_json_fails_the_whole_batch() -> None:
    assert _batch_item_failures(b"not json", {"a", "b"}) == {"a", "b"}
