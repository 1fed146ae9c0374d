"""Build the S3 -> SQS -> Lambda event exactly as AWS delivers it (for events/ and the tests)."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any
from urllib.parse import quote_plus


def s3_notification(bucket: str, key: str, size: int, etag: str, region: str = "us-east-1") -> dict[str, Any]:
    """One S3 event notification message (what S3 sends to the queue)."""
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": region,
                "eventTime": "2026-11-21T09:30:00.000Z",
                "eventName": "ObjectCreated:Put",
                "userIdentity": {"principalId": "AWS:AIDAEXAMPLE"},
                "requestParameters": {"sourceIPAddress": "10.0.0.1"},
                "responseElements": {"x-amz-request-id": "EXAMPLE", "x-amz-id-2": "EXAMPLE"},
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "landing-incoming",
                    "bucket": {
                        "name": bucket,
                        "ownerIdentity": {"principalId": "EXAMPLE"},
                        "arn": f"arn:aws:s3:::{bucket}",
                    },
                    "object": {
                        "key": quote_plus(key, safe="/"),
                        "size": size,
                        "eTag": etag,
                        "sequencer": "0A1B",
                    },
                },
            }
        ]
    }


def sqs_event(
    messages: list[dict[str, Any]], queue_arn: str = "arn:aws:sqs:us-east-1:123456789012:ingest"
) -> dict:
    """The Lambda SQS event for a batch of message bodies."""
    records = []
    for message in messages:
        body = json.dumps(message)
        records.append(
            {
                "messageId": str(uuid.uuid5(uuid.NAMESPACE_URL, body)),
                "receiptHandle": "AQEB" + hashlib.sha1(body.encode()).hexdigest(),  # noqa: S324 - an opaque handle
                "body": body,
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "1763717400000",
                    "SenderId": "AIDAEXAMPLE",
                    "ApproximateFirstReceiveTimestamp": "1763717400100",
                },
                "messageAttributes": {},
                "md5OfBody": hashlib.md5(body.encode()).hexdigest(),  # noqa: S324 - SQS defines it as MD5
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "us-east-1",
            }
        )
    return {"Records": records}
