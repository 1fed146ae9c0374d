"""The ingest ledger (DynamoDB): which delivered object (bucket+key+etag) belongs to which run.

A claim is a conditional put. The same batch replayed computes the same run id and re-claims its own
objects; an object already claimed by another run is a duplicate and is skipped, unless that claim is
stale (its run never started, e.g. the trigger crashed between claim and StartExecution).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from mmhealth import storage
from mmhealth.contracts import S3Object

CLAIM_TTL_SECONDS = 400 * 24 * 3600  # keep dedupe memory for well over a year of re-deliveries
STALE_CLAIM_SECONDS = 900  # older than the ingest queue's visibility timeout, with margin


def claim(table: str, obj: S3Object, run_id: str, run_exists: Callable[[str], bool]) -> bool:
    """True when `obj` now belongs to `run_id` (new, already ours, or taken over from a stale claim)."""
    now = int(time.time())
    item = {
        "object_id": {"S": obj.object_id},
        "bucket": {"S": obj.bucket},
        "key": {"S": obj.key},
        "etag": {"S": obj.etag},
        "run_id": {"S": run_id},
        "claimed_at": {"N": str(now)},
        "expires_at": {"N": str(now + CLAIM_TTL_SECONDS)},
    }
    if _put_if(table, item, "attribute_not_exists(object_id) OR run_id = :run", run_id):
        return True
    current = storage.client("dynamodb").get_item(
        TableName=table, Key={"object_id": {"S": obj.object_id}}, ConsistentRead=True
    )
    owner = current.get("Item", {})
    owner_run = owner.get("run_id", {}).get("S", "")
    claimed_at = int(owner.get("claimed_at", {}).get("N", str(now)))
    if now - claimed_at < STALE_CLAIM_SECONDS or run_exists(owner_run):
        return False
    # Take over a stale claim whose run never started.
    return _put_if(table, item, "run_id = :run", owner_run)


def _put_if(table: str, item: dict[str, Any], condition: str, run_id: str) -> bool:
    """Conditional put; False when the condition does not hold."""
    try:
        storage.client("dynamodb").put_item(
            TableName=table,
            Item=item,
            ConditionExpression=condition,
            ExpressionAttributeValues={":run": {"S": run_id}},
        )
        return True
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
            return False
        storage.reraise_transient(exc)
        raise


def release(table: str, objects: list[S3Object], run_id: str) -> None:
    """Undo this run's claims (the run could not be started), so a retry can claim them again."""
    ddb = storage.client("dynamodb")
    for obj in objects:
        try:
            ddb.delete_item(
                TableName=table,
                Key={"object_id": {"S": obj.object_id}},
                ConditionExpression="run_id = :run",
                ExpressionAttributeValues={":run": {"S": run_id}},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
