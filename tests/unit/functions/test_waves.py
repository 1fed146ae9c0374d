"""Collect: a wave closes on its delivery's completion marker or after a quiet period, never twice."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from mmhealth import ledger, waves
from mmhealth.contracts import FileKind, ManifestFile, RunConfig, S3Object
from mmhealth.errors import ManifestError
from mmhealth.settings import settings

CONFIG = RunConfig(poll_seconds=2, delivery_quiet_seconds=60)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    now = SimpleNamespace(t=1_000)
    monkeypatch.setattr(waves.time, "time", lambda: now.t)
    return now


def _deliver(aws: SimpleNamespace, names: list[str], now: int, body: bytes = b"x") -> None:
    files = []
    for name in names:
        key = f"incoming/d/{name}"
        aws.s3.put_object(Bucket=aws.landing, Key=key, Body=body)
        etag = aws.s3.head_object(Bucket=aws.landing, Key=key)["ETag"].strip('"')
        kind: FileKind = "marker" if name == "_COMPLETE" else "genomic"
        obj = S3Object(bucket=aws.landing, key=key, etag=etag, size=len(body))
        files.append(ManifestFile(object=obj, kind=kind))
    ledger.join(aws.ledger, "d", files, now=now)


def _collect(wave: int = 1) -> dict:
    return waves.collect(f"d-w{wave}", "d", wave, CONFIG, settings())


def test_without_a_marker_the_wave_closes_after_the_quiet_period(aws: SimpleNamespace, clock) -> None:
    _deliver(aws, ["a.vcf"], now=1_000)
    clock.t = 1_020
    early = _collect()
    assert (early["closed"], early["wait_seconds"]) == (False, 40)

    clock.t = 1_060
    closed = _collect()
    assert closed["closed"]
    assert closed["reason"] == "no new object for 60 s (quiet period 60 s)"
    assert not ledger.state(aws.ledger, "d").collecting
    # A redrive (or a retried Collect) finds the wave closed and goes on
    assert _collect()["closed"]


def test_an_empty_marker_closes_the_wave_at_once(aws: SimpleNamespace, clock) -> None:
    _deliver(aws, ["a.vcf", "b.vcf"], now=1_000)
    _deliver(aws, ["_COMPLETE"], now=1_001, body=b"")
    clock.t = 1_002
    answer = _collect()
    assert answer["closed"]
    assert answer["marker"] == "incoming/d/_COMPLETE"
    assert answer["reason"].startswith("completion marker _COMPLETE")


def test_a_listing_marker_waits_for_its_files_then_closes(aws: SimpleNamespace, clock) -> None:
    listing = json.dumps({"files": ["a.vcf", "sub/b.vcf"]}).encode()
    _deliver(aws, ["_COMPLETE"], now=1_000, body=listing)  # the marker's event came first
    _deliver(aws, ["a.vcf"], now=1_001)
    clock.t = 1_002
    waiting = _collect()
    assert (waiting["closed"], waiting["missing"], waiting["missing_first"]) == (False, 1, ["sub/b.vcf"])
    assert waiting["wait_seconds"] == CONFIG.poll_seconds

    _deliver(aws, ["sub/b.vcf"], now=1_003)
    clock.t = 1_004
    assert _collect()["closed"]


def test_files_a_marker_counts_but_that_never_come_are_reported_at_the_quiet_close(
    aws: SimpleNamespace, clock
) -> None:
    _deliver(aws, ["a.vcf", "_COMPLETE"], now=1_000, body=json.dumps({"count": 3}).encode())
    clock.t = 1_070
    answer = _collect()
    assert answer["closed"]
    assert answer["missing"] == 1
    assert "1 file(s) the marker expects never arrived" in answer["reason"]


def test_an_unreadable_marker_is_quarantined_and_the_quiet_period_decides(
    aws: SimpleNamespace, clock
) -> None:
    _deliver(aws, ["a.vcf", "_COMPLETE"], now=1_000, body=b"files: a.vcf")
    clock.t = 1_001
    assert not _collect()["closed"]
    keys = [
        o["Key"] for o in aws.s3.list_objects_v2(Bucket=aws.lake, Prefix="runs/d-w1/quarantine/")["Contents"]
    ]
    record = json.loads(aws.s3.get_object(Bucket=aws.lake, Key=keys[0])["Body"].read())
    assert (record["reason"], record["key"]) == ("marker-unreadable", "incoming/d/_COMPLETE")
    assert "not JSON" in record["detail"]


def test_a_wave_that_was_never_opened_is_an_error(aws: SimpleNamespace, clock) -> None:
    _deliver(aws, ["a.vcf"], now=1_000)
    with pytest.raises(ManifestError, match="no wave 2"):
        _collect(wave=2)


def test_an_object_in_the_folder_whose_event_is_still_queued_keeps_the_wave_open(
    aws: SimpleNamespace, clock
) -> None:
    _deliver(aws, ["a.vcf"], now=1_000)
    aws.s3.put_object(Bucket=aws.landing, Key="incoming/d/b.vcf", Body=b"y")  # its event not recorded yet
    clock.t = 1_100
    waiting = _collect()
    assert (waiting["closed"], waiting["unrecorded_first"]) == (False, ["incoming/d/b.vcf"])
    assert waiting["wait_seconds"] == CONFIG.delivery_quiet_seconds

    # Then its event comes, and the quiet period after it closes the wave
    _deliver(aws, ["b.vcf"], now=1_101)
    clock.t = 1_161
    assert _collect()["closed"]


def test_an_object_whose_event_never_comes_is_reported_after_the_stall_limit(
    aws: SimpleNamespace, clock
) -> None:
    _deliver(aws, ["a.vcf"], now=1_000)
    aws.s3.put_object(Bucket=aws.landing, Key="incoming/d/lost.vcf", Body=b"y")  # its event went to the DLQ
    clock.t = 1_000 + CONFIG.delivery_stall_seconds
    answer = _collect()
    assert answer["closed"]
    assert answer["unrecorded_first"] == ["incoming/d/lost.vcf"]
    assert "1 object(s) in the folder never reached the trigger" in answer["reason"]
