"""The ingest ledger (DynamoDB): every delivered object under its delivery, and the delivery's waves.

One table, partition key `delivery`, sort key `item`:
- `state`: the delivery's newest wave (`wave`, 0 before the first), whether it still takes files (`phase`
  collecting | closed), when it opened, when its last object arrived (`last_object_at`), how many objects
  the delivery has (`objects`), and its completion marker if one arrived (`marker`, the wave it closes: `marker_wave`);
- `file#<object_id>`: one delivered object (bucket + key + etag), the wave it belongs to and its
  classification. The item is the dedupe memory: an object is in exactly one wave, whatever replays,
  re-deliveries of the same bytes or concurrent triggers do.

A wave takes files until its run closes it (mmhealth.waves: marker or quiet period). Files and the state
are written in one transaction conditioned on the wave still collecting, so a file is either in the wave
the run reads after closing it, or in the next wave: never lost, never in two. A completion marker opens no
wave of its own: it belongs to the collecting wave, or to the next one to open.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from botocore.exceptions import ClientError

from mmhealth import storage
from mmhealth.contracts import ManifestFile, S3Object

RETENTION_SECONDS = 400 * 24 * 3600  # dedupe memory for well over a year of re-deliveries
FILES_PER_TRANSACTION = 99  # DynamoDB allows 100 actions; one is the state update
STATE = "state"
FILE_PREFIX = "file#"
Phase = Literal["collecting", "closed"]


@dataclass(frozen=True)
class DeliveryState:
    """The `state` item of a delivery (a delivery never seen has wave 0, closed)."""

    delivery: str
    wave: int = 0
    phase: Phase = "closed"
    opened_at: int = 0
    last_object_at: int = 0
    objects: int = 0
    marker: S3Object | None = None
    marker_wave: int | None = None
    closed_reason: str | None = None

    @property
    def collecting(self) -> bool:
        return self.phase == "collecting"

    @property
    def exists(self) -> bool:
        return self.wave > 0 or self.marker is not None


@dataclass(frozen=True)
class Joined:
    """What `join` did: the waves the files are in (new or from before) and how many were new."""

    waves: frozenset[int]
    new: int
    duplicates: int


def state(table: str, delivery: str) -> DeliveryState:
    """The delivery's state, read consistently."""
    item = (
        storage.client("dynamodb")
        .get_item(TableName=table, Key=_key(delivery, STATE), ConsistentRead=True)
        .get("Item")
    )
    if not item:
        return DeliveryState(delivery)
    return DeliveryState(
        delivery=delivery,
        wave=int(item["wave"]["N"]),
        phase="collecting" if item["phase"]["S"] == "collecting" else "closed",
        opened_at=int(item.get("opened_at", {}).get("N", "0")),
        last_object_at=int(item.get("last_object_at", {}).get("N", "0")),
        objects=int(item.get("objects", {}).get("N", "0")),
        marker=S3Object.model_validate_json(item["marker"]["S"]) if "marker" in item else None,
        marker_wave=int(item["marker_wave"]["N"]) if "marker_wave" in item else None,
        closed_reason=item.get("closed_reason", {}).get("S"),
    )


def join(table: str, delivery: str, files: list[ManifestFile], now: int | None = None) -> Joined:
    """Record `files` (of one delivery) in its collecting wave, opening the next wave when none collects.

    Files already recorded are duplicates: they stay in their wave (which is returned too, so the caller
    can make sure that wave's run exists)."""
    pending = list({f.object.object_id: f for f in files}.values())
    waves: set[int] = set()
    new = duplicates = 0
    while pending:
        now = int(time.time()) if now is None else now
        current = state(table, delivery)
        data = [f for f in pending if f.kind != "marker"]
        if data and not current.collecting:
            _open_next(table, current, now)
            continue  # re-read: this trigger or a concurrent one opened it
        batch = (data or pending)[:FILES_PER_TRANSACTION]
        wave = current.wave if current.collecting else current.wave + 1  # a lone marker: the next wave
        try:
            _record(table, current, batch, wave, now)
        except ClientError as exc:
            reasons = _cancellation_reasons(exc)
            if reasons[0] == "ConditionalCheckFailed":
                continue  # the wave closed or opened meanwhile: re-read
            recorded = {f.object.object_id for f, r in zip(batch, reasons[1:], strict=True) if r != "None"}
            if not recorded:
                raise
            for f in batch:
                if f.object.object_id in recorded and f.kind != "marker":
                    waves.add(_wave_of(table, delivery, f.object.object_id))
            duplicates += len(recorded)
            pending = [f for f in pending if f.object.object_id not in recorded]
            continue
        if data:
            waves.add(wave)
        new += len(batch)
        done = {f.object.object_id for f in batch}
        pending = [f for f in pending if f.object.object_id not in done]
    return Joined(frozenset(w for w in waves if w > 0), new, duplicates)


def close(table: str, current: DeliveryState, reason: str, now: int | None = None) -> bool:
    """Close the collecting wave `current.wave`, unless an object arrived since `current` was read."""
    now = int(time.time()) if now is None else now
    try:
        storage.client("dynamodb").update_item(
            TableName=table,
            Key=_key(current.delivery, STATE),
            UpdateExpression="SET phase = :closed, closed_at = :now, closed_reason = :reason",
            ConditionExpression="wave = :wave AND phase = :collecting AND last_object_at = :seen",
            ExpressionAttributeValues={
                ":closed": {"S": "closed"},
                ":collecting": {"S": "collecting"},
                ":now": {"N": str(now)},
                ":reason": {"S": reason},
                ":wave": {"N": str(current.wave)},
                ":seen": {"N": str(current.last_object_at)},
            },
        )
        return True
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
            return False
        storage.reraise_transient(exc)
        raise


def files(table: str, delivery: str, wave: int | None = None) -> Iterator[tuple[int, ManifestFile]]:
    """(wave, file) of every object recorded for the delivery (of one wave when `wave` is given)."""
    query: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": "delivery = :d AND begins_with(#item, :prefix)",
        "ExpressionAttributeNames": {"#item": "item"},
        "ExpressionAttributeValues": {":d": {"S": delivery}, ":prefix": {"S": FILE_PREFIX}},
        "ConsistentRead": True,
    }
    if wave is not None:
        query["FilterExpression"] = "wave = :wave"
        query["ExpressionAttributeValues"][":wave"] = {"N": str(wave)}
    for page in storage.client("dynamodb").get_paginator("query").paginate(**query):
        for item in page["Items"]:
            yield int(item["wave"]["N"]), ManifestFile.model_validate_json(item["file"]["S"])


# ------------------------------------------------------------------------------------------- internals


def _key(delivery: str, item: str) -> dict[str, Any]:
    return {"delivery": {"S": delivery}, "item": {"S": item}}


def _open_next(table: str, current: DeliveryState, now: int) -> None:
    """Open wave `current.wave + 1` if the state is still what `current` says (else someone else did)."""
    condition = "attribute_not_exists(wave)" if current.wave == 0 and not current.exists else "wave = :wave"
    values: dict[str, Any] = {
        ":next": {"N": str(current.wave + 1)},
        ":collecting": {"S": "collecting"},
        ":now": {"N": str(now)},
        ":expires": {"N": str(now + RETENTION_SECONDS)},
    }
    if condition != "attribute_not_exists(wave)":
        condition += " AND phase = :closed"
        values |= {":wave": {"N": str(current.wave)}, ":closed": {"S": "closed"}}
    try:
        storage.client("dynamodb").update_item(
            TableName=table,
            Key=_key(current.delivery, STATE),
            UpdateExpression=(
                "SET wave = :next, phase = :collecting, opened_at = :now, last_object_at = :now, "
                "expires_at = :expires REMOVE closed_reason, closed_at"
            ),
            ConditionExpression=condition,
            ExpressionAttributeValues=values,
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
            storage.reraise_transient(exc)
            raise


def _record(table: str, current: DeliveryState, batch: list[ManifestFile], wave: int, now: int) -> None:
    """One transaction: the state (still as read) counts the files in; each file item is new."""
    values: dict[str, Any] = {
        ":now": {"N": str(now)},
        ":count": {"N": str(len(batch))},
        ":expires": {"N": str(now + RETENTION_SECONDS)},
        ":wave": {"N": str(current.wave)},
        ":phase": {"S": current.phase},
    }
    update = "SET expires_at = :expires ADD objects :count"
    if current.wave == 0 and not current.exists:
        condition = "attribute_not_exists(wave)"
        update = "SET wave = :wave, phase = :phase, expires_at = :expires ADD objects :count"
    else:
        condition = "wave = :wave AND phase = :phase"
    if current.collecting:
        update = update.replace("SET ", "SET last_object_at = :now, ", 1)
    marker = next((f for f in batch if f.kind == "marker"), None)
    if marker is not None:
        update = update.replace("SET ", "SET marker = :marker, marker_wave = :marker_wave, ", 1)
        values |= {":marker": {"S": marker.object.model_dump_json()}, ":marker_wave": {"N": str(wave)}}
    actions: list[dict[str, Any]] = [
        {
            "Update": {
                "TableName": table,
                "Key": _key(current.delivery, STATE),
                "UpdateExpression": update,
                "ConditionExpression": condition,
                "ExpressionAttributeValues": values,
            }
        }
    ]
    for f in batch:
        item = _key(current.delivery, f"{FILE_PREFIX}{f.object.object_id}") | {
            "wave": {"N": str(wave)},
            "key": {"S": f.object.key},
            "kind": {"S": f.kind},
            "file": {"S": f.model_dump_json()},
            "claimed_at": {"N": str(now)},
            "expires_at": {"N": str(now + RETENTION_SECONDS)},
        }
        actions.append(
            {"Put": {"TableName": table, "Item": item, "ConditionExpression": "attribute_not_exists(#item)",
                     "ExpressionAttributeNames": {"#item": "item"}}}
        )  # fmt: skip
    storage.client("dynamodb").transact_write_items(TransactItems=actions)


def _cancellation_reasons(exc: ClientError) -> list[str]:
    """The per-action codes of a cancelled transaction ("None" for an action that was fine)."""
    if exc.response["Error"]["Code"] != "TransactionCanceledException":
        storage.reraise_transient(exc)
        raise exc
    reasons = exc.response.get("CancellationReasons") or _reasons_from_message(exc)
    return [r.get("Code", "None") if isinstance(r, dict) else str(r) for r in reasons]


def _reasons_from_message(exc: ClientError) -> list[str]:
    """Some SDK paths give the reasons only in the message: `... reasons [None, ConditionalCheckFailed]`."""
    message = exc.response["Error"].get("Message", "")
    inside = message.rsplit("[", 1)[-1].rstrip("]")
    return [r.strip() for r in inside.split(",")] if "[" in message else []


def _wave_of(table: str, delivery: str, object_id: str) -> int:
    item = storage.client("dynamodb").get_item(
        TableName=table, Key=_key(delivery, f"{FILE_PREFIX}{object_id}"), ConsistentRead=True
    )
    return int(item.get("Item", {}).get("wave", {}).get("N", "0"))
