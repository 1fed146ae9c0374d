"""The ingest ledger (DynamoDB): every delivered object under its delivery, and the delivery's waves.

One table, partition key `delivery`, sort key `item`:
- `state`: the delivery's newest wave (`wave`, 0 before the first), whether it still takes files (`phase`
  collecting | closed), when it opened, when its last object arrived (`last_object_at`), how many objects
  the delivery has (`objects`), and its completion marker if one arrived (`marker`, the wave it closes: `marker_wave`);
- `file#<object_id>`: one delivered object (bucket + key + etag), the wave it belongs to and its
  classification. The item is the dedupe memory: an object is in exactly one wave, whatever replays,
  re-deliveries of the same bytes or concurrent triggers do.

A wave takes files until its run closes it (mmhealth.waves: marker or quiet period). A trigger first
enters the collecting wave (a conditional update of `state`: `inflight` + 1 and a lease, only if that wave
still collects), then puts its file items (conditional: a file is recorded once), then leaves (`inflight`
- 1). The close is conditional on nobody being inside (or the last lease having run out, which only a dead
trigger allows: the lease outlasts the trigger's Timeout). So every file item of a wave exists before the
wave closes, and the run reads them all after closing it; a trigger that finds the wave closed enters the
next one. Never lost, never in two waves. A completion marker opens no wave of its own: it belongs to the
collecting wave, or to the next one to open. (No DynamoDB transactions: moto copies the whole table for
each one, which made a 2,000-file delivery take minutes locally.)
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

from botocore.exceptions import ClientError

from mmhealth import storage
from mmhealth.contracts import ManifestFile, S3Object

RETENTION_SECONDS = 400 * 24 * 3600  # dedupe memory for well over a year of re-deliveries
# A trigger announces itself before it records files (`inflight`, with a lease) and a wave closes only when
# none is inside, or the last lease ran out: longer than the trigger's Timeout, so a live trigger never
# outlasts its lease.
LEASE_SECONDS = 180
IO_WORKERS = 16
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
    if not item or "wave" not in item:
        # No state yet. (An item without a wave is one moto is still creating: its UpdateItem is not atomic
        # for a new item, and a concurrent read can see it half-written; DynamoDB never shows that.)
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
    can make sure that wave's run exists). See the module docstring for why no file is lost or doubled."""
    pending = list({f.object.object_id: f for f in files}.values())
    if not pending:
        return Joined(frozenset(), 0, 0)
    data = any(f.kind != "marker" for f in pending)
    marker = next((f for f in pending if f.kind == "marker"), None)
    clock = (lambda: now) if now is not None else (lambda: int(time.time()))
    while True:
        current = state(table, delivery)
        if data and not current.collecting:
            _open_next(table, current, clock())
            continue  # re-read: this trigger or a concurrent one opened it
        if _enter(table, current, clock(), marker):
            break
    wave = current.wave if current.collecting else current.wave + 1  # a lone marker: the next wave's
    outcomes: list[int | None] = []
    try:
        with ThreadPoolExecutor(max_workers=IO_WORKERS) as pool:
            outcomes = list(pool.map(lambda f: _put_file(table, delivery, f, wave, clock()), pending))
    finally:
        new = sum(1 for recorded_in in outcomes if recorded_in is None)
        _leave(table, current, clock(), new)
    waves = {wave if recorded_in is None else recorded_in for f, recorded_in in zip(pending, outcomes, strict=True)
             if f.kind != "marker"}  # fmt: skip
    return Joined(frozenset(w for w in waves if w > 0), new, len(pending) - new)


def close(table: str, current: DeliveryState, reason: str, now: int | None = None) -> bool:
    """Close the collecting wave `current.wave`, unless an object arrived since `current` was read or a
    trigger is still recording (see the module docstring)."""
    now = int(time.time()) if now is None else now
    return _update_if(
        table,
        current.delivery,
        "SET phase = :closed, closed_at = :now, closed_reason = :reason",
        "wave = :wave AND phase = :collecting AND last_object_at = :seen "
        "AND (inflight = :none OR lease_until < :now)",
        {
            ":closed": {"S": "closed"},
            ":collecting": {"S": "collecting"},
            ":none": {"N": "0"},
            ":now": {"N": str(now)},
            ":reason": {"S": reason},
            ":wave": {"N": str(current.wave)},
            ":seen": {"N": str(current.last_object_at)},
        },
    )


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
        ":none": {"N": "0"},
        ":collecting": {"S": "collecting"},
        ":now": {"N": str(now)},
        ":expires": {"N": str(now + RETENTION_SECONDS)},
    }
    if condition != "attribute_not_exists(wave)":
        condition += " AND phase = :closed"
        values |= {":wave": {"N": str(current.wave)}, ":closed": {"S": "closed"}}
    _update_if(
        table,
        current.delivery,
        "SET wave = :next, phase = :collecting, opened_at = :now, last_object_at = :now, "
        "inflight = :none, expires_at = :expires REMOVE closed_reason, closed_at",
        condition,
        values,
    )


def _enter(table: str, current: DeliveryState, now: int, marker: ManifestFile | None) -> bool:
    """Announce a trigger about to record files in `current`'s wave (inflight + 1, a lease); False when the
    state changed since it was read. A lone marker may create the state (wave 0) or join a closed one."""
    values: dict[str, Any] = {
        ":one": {"N": "1"},
        ":lease": {"N": str(now + LEASE_SECONDS)},
        ":expires": {"N": str(now + RETENTION_SECONDS)},
        ":phase": {"S": current.phase},
        ":wave": {"N": str(current.wave)},
    }
    sets = ["lease_until = :lease", "expires_at = :expires"]
    if current.collecting:
        sets.append("last_object_at = :now")
        values[":now"] = {"N": str(now)}
    if not current.exists:
        condition = "attribute_not_exists(wave)"
        sets += ["wave = :wave", "phase = :phase"]
    else:
        condition = "wave = :wave AND phase = :phase"
    if marker is not None:
        sets += ["marker = :marker", "marker_wave = :marker_wave"]
        marker_wave = current.wave if current.collecting else current.wave + 1
        values |= {":marker": {"S": marker.object.model_dump_json()}, ":marker_wave": {"N": str(marker_wave)}}
    return _update_if(table, current.delivery, f"SET {', '.join(sets)} ADD inflight :one", condition, values)


def _leave(table: str, current: DeliveryState, now: int, new: int) -> None:
    """The trigger is done with the wave: inflight - 1, the new objects counted, the quiet period restarted."""
    sets = "SET last_object_at = :now " if current.collecting else ""
    values = {":minus": {"N": "-1"}, ":new": {"N": str(new)}, ":wave": {"N": str(current.wave)}}
    if current.collecting:
        values[":now"] = {"N": str(now)}
    _update_if(table, current.delivery, f"{sets}ADD inflight :minus, objects :new", "wave = :wave", values)


def _update_if(table: str, delivery: str, update: str, condition: str, values: dict[str, Any]) -> bool:
    try:
        storage.client("dynamodb").update_item(
            TableName=table,
            Key=_key(delivery, STATE),
            UpdateExpression=update,
            ConditionExpression=condition,
            ExpressionAttributeValues=values,
        )
        return True
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
            return False
        storage.reraise_transient(exc)
        raise


def _put_file(table: str, delivery: str, f: ManifestFile, wave: int, now: int) -> int | None:
    """Record one file in `wave`; None when new, else the wave it was recorded in before."""
    item = _key(delivery, f"{FILE_PREFIX}{f.object.object_id}") | {
        "wave": {"N": str(wave)},
        "key": {"S": f.object.key},
        "kind": {"S": f.kind},
        "file": {"S": f.model_dump_json()},
        "claimed_at": {"N": str(now)},
        "expires_at": {"N": str(now + RETENTION_SECONDS)},
    }
    try:
        storage.client("dynamodb").put_item(
            TableName=table,
            Item=item,
            ConditionExpression="attribute_not_exists(#item)",
            ExpressionAttributeNames={"#item": "item"},
        )
        return None
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
            storage.reraise_transient(exc)
            raise
    return _wave_of(table, delivery, f.object.object_id)


def _wave_of(table: str, delivery: str, object_id: str) -> int:
    item = storage.client("dynamodb").get_item(
        TableName=table, Key=_key(delivery, f"{FILE_PREFIX}{object_id}"), ConsistentRead=True
    )
    return int(item.get("Item", {}).get("wave", {}).get("N", "0"))
