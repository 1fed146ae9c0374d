"""Collect: the first state of a wave's run waits until its delivery is complete, then closes the wave.

A wave closes when
- the delivery's completion marker arrived for this wave and says everything is there: `_COMPLETE` in
  the delivery folder, empty (complete as soon as it is recorded) or JSON `{"files": [...]}` (paths
  relative to the delivery folder) and/or `{"count": N}` (data files in the delivery, the marker not
  counted), complete once every listed file / N files are recorded; or
- no object arrived for `delivery_quiet_seconds` and every object in the delivery's landing folder is
  recorded (a delivery without a marker, or one whose marker lists a file that never comes: the run goes
  on with what arrived and reports what is missing).
The landing folder is the ground truth of what was delivered: an object that is there but not recorded yet
has its event still on the way (in the ingest queue, or in a trigger batch being formed), so the wave waits
for it however slow the queue is, up to `delivery_stall_seconds` without a newly recorded object (an event
that went to the DLQ): then the run goes on and reports those objects as `unrecorded`.
Until then Collect answers `closed: false` with how long to wait (the Wait state's SecondsPath): the rest of
the quiet period, or the poll interval while a marker waits for its files. The history grows by one
Collect + Choice + Wait per wake-up, about one per quiet period while objects keep arriving.

Closing is conditional (mmhealth.ledger.close): an object recorded since Collect read the state keeps the
wave open. Files that arrive after the close open the next wave, whose run is a follow-up of the delivery.
A redriven or restarted run finds its wave closed and goes on with the same files.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from mmhealth import ledger, quarantine, storage
from mmhealth.contracts import RunConfig, S3Object
from mmhealth.errors import ManifestError
from mmhealth.naming import LOOSE_DELIVERY
from mmhealth.settings import Settings

MARKER_MAX_BYTES = 5 * 1024 * 1024
MISSING_LISTED = 20  # missing files named in the run's output; the count is always complete


@dataclass(frozen=True)
class Expectation:
    """What a completion marker says the delivery holds (nothing listed: complete as it is)."""

    files: frozenset[str] = frozenset()
    count: int | None = None
    problem: str | None = None  # the marker could not be read as one: it does not close the wave


def collect(run_id: str, delivery: str, wave: int, config: RunConfig, cfg: Settings) -> dict[str, Any]:
    """Collect's answer for the wave: {"closed", "reason", "wait_seconds", "missing", "unrecorded", ...}."""
    table = _table(cfg)
    now = int(time.time())
    current = ledger.state(table, delivery)
    if current.wave < wave:
        raise ManifestError(f"delivery {delivery!r} has no wave {wave} (its newest is {current.wave})")
    if current.wave > wave or not current.collecting:
        return _answer(True, current.closed_reason or "closed before this attempt", current, wave)
    quiet, quiet_for = config.delivery_quiet_seconds, now - current.last_object_at
    recorded = [f.object for _, f in ledger.files(table, delivery)]
    expectation, missing = _marker_check(current, wave, run_id, cfg, recorded)
    unrecorded = _unrecorded(delivery, recorded)
    if expectation is not None and expectation.problem is None and not missing:
        reason = f"completion marker {_name(current.marker)}: every file it expects is here"
    elif quiet_for >= quiet and (not unrecorded or quiet_for >= config.delivery_stall_seconds):
        reason = f"no new object for {quiet_for} s (quiet period {quiet} s)"
        if missing:
            reason += f"; {len(missing)} file(s) the marker expects never arrived"
        if unrecorded:
            reason += f"; {len(unrecorded)} object(s) in the folder never reached the trigger (see the DLQ)"
    else:
        if unrecorded:
            why, waiting = f"{len(unrecorded)} object(s) in the folder not recorded yet", quiet
        elif missing:
            why, waiting = (
                f"{len(missing)} file(s) the marker expects",
                min(quiet - quiet_for, config.poll_seconds),
            )
        else:
            why, waiting = f"quiet for {quiet_for} s", quiet - quiet_for
        return _answer(
            False, why, current, wave, wait=max(1, waiting), missing=missing, unrecorded=unrecorded
        )
    if not ledger.close(table, current, reason, now):
        return _answer(False, "an object arrived while closing", current, wave, wait=1, missing=missing)
    return _answer(True, reason, current, wave, missing=missing, unrecorded=unrecorded)


def _answer(
    closed: bool,
    reason: str,
    current: ledger.DeliveryState,
    wave: int,
    *,
    wait: int = 0,
    missing: list[str] | None = None,
    unrecorded: list[str] | None = None,
) -> dict[str, Any]:
    missing, unrecorded = missing or [], unrecorded or []
    return {
        "closed": closed,
        "reason": reason,
        "wait_seconds": wait,
        "delivery": current.delivery,
        "wave": wave,
        "objects": current.objects,
        "marker": current.marker.key if current.marker and current.marker_wave == wave else None,
        "missing": len(missing),
        "missing_first": missing[:MISSING_LISTED],
        "unrecorded": len(unrecorded),
        "unrecorded_first": unrecorded[:MISSING_LISTED],
    }


def _marker_check(
    current: ledger.DeliveryState, wave: int, run_id: str, cfg: Settings, recorded: list[S3Object]
) -> tuple[Expectation | None, list[str]]:
    """(the wave's marker expectation or None, the expected files not recorded yet)."""
    if current.marker is None or current.marker_wave != wave:
        return None, []
    expectation = read_marker(current.marker)
    if expectation.problem is not None:
        quarantine.record(
            cfg.lake_bucket, run_id, current.marker, modality="unknown", stage="classify",
            reason="marker-unreadable", detail=f"{expectation.problem}; the delivery closes by quiet period",
        )  # fmt: skip
        return expectation, []
    if not expectation.files and expectation.count is None:
        return expectation, []
    folder = current.marker.key.rsplit("/", 1)[0] + "/"
    data = {o.key for o in recorded if o.key != current.marker.key}
    missing = sorted(expectation.files - {k.removeprefix(folder) for k in data})
    if expectation.count is not None and len(data) < expectation.count:
        missing.append(f"<{expectation.count - len(data)} more file(s) of the {expectation.count} counted>")
    return expectation, missing


def _unrecorded(delivery: str, recorded: list[S3Object]) -> list[str]:
    """Keys in the delivery's landing folder whose current version is not recorded yet (its event is still
    on the way). The landing bucket is the recorded objects' (none recorded: nothing to compare)."""
    if not recorded:
        return []
    known = {(o.key, o.etag) for o in recorded}
    loose = delivery == LOOSE_DELIVERY
    prefix = "incoming/" if loose else f"incoming/{delivery}/"
    listing: dict[str, Any] = {"Bucket": recorded[0].bucket, "Prefix": prefix}
    if loose:
        listing["Delimiter"] = "/"  # only the objects directly under incoming/
    unrecorded = []
    for page in storage.client("s3").get_paginator("list_objects_v2").paginate(**listing):
        unrecorded += [
            o["Key"] for o in page.get("Contents", []) if (o["Key"], o["ETag"].strip('"')) not in known
        ]
    return sorted(unrecorded)


def read_marker(marker: S3Object) -> Expectation:
    """Parse a completion marker (see the module docstring); a problem is reported, never raised."""
    if marker.size > MARKER_MAX_BYTES:
        return Expectation(problem=f"marker of {marker.size} bytes (limit {MARKER_MAX_BYTES})")
    try:
        body = storage.head(marker.bucket, marker.key, MARKER_MAX_BYTES) if marker.size else b""
    except ClientError as exc:
        storage.reraise_transient(exc)
        return Expectation(problem=f"marker unreadable: {exc.response.get('Error', {}).get('Code')}")
    text = body.decode("utf-8", errors="replace").strip()
    if not text:
        return Expectation()
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        return Expectation(problem=f"marker is not JSON: line {exc.lineno}: {exc.msg}")
    if not isinstance(document, dict):
        return Expectation(problem='marker JSON must be an object: {"files": [...]} and/or {"count": N}')
    files, count = document.get("files", []), document.get("count")
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        return Expectation(problem='marker "files" must be a list of paths relative to the delivery folder')
    if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 0):
        return Expectation(problem='marker "count" must be a non-negative integer')
    return Expectation(files=frozenset(f.lstrip("/") for f in files), count=count)


def _name(marker: S3Object | None) -> str:
    return marker.key.rsplit("/", 1)[-1] if marker else "-"


def _table(cfg: Settings) -> str:
    if not cfg.ledger_table:
        raise ManifestError("Collect needs LEDGER_TABLE in its environment")
    return cfg.ledger_table
