"""The ingest ledger: objects recorded once under their delivery's collecting wave; waves open and close."""

from __future__ import annotations

import threading
from types import SimpleNamespace

from mmhealth import ledger
from mmhealth.contracts import FileKind, ManifestFile, S3Object


def _file(name: str, kind: FileKind = "genomic", delivery: str = "d") -> ManifestFile:
    obj = S3Object(bucket="landing", key=f"incoming/{delivery}/{name}", etag=f"etag-{name}", size=10)
    return ManifestFile(object=obj, kind=kind)


def _waves(table: str, delivery: str = "d") -> dict[str, int]:
    return {f.object.key.rsplit("/", 1)[-1]: wave for wave, f in ledger.files(table, delivery)}


def test_files_join_the_first_wave_once(aws: SimpleNamespace) -> None:
    first = ledger.join(aws.ledger, "d", [_file("a.vcf"), _file("b.vcf")], now=100)
    again = ledger.join(
        aws.ledger, "d", [_file("a.vcf"), _file("c.vcf")], now=105
    )  # a replay plus a new file

    assert (first.waves, first.new, first.duplicates) == ({1}, 2, 0)
    assert (again.waves, again.new, again.duplicates) == ({1}, 1, 1)
    state = ledger.state(aws.ledger, "d")
    assert (state.wave, state.collecting, state.objects, state.last_object_at) == (1, True, 3, 105)
    assert _waves(aws.ledger) == {"a.vcf": 1, "b.vcf": 1, "c.vcf": 1}


def test_files_after_the_close_open_the_next_wave(aws: SimpleNamespace) -> None:
    ledger.join(aws.ledger, "d", [_file("a.vcf")], now=100)
    assert ledger.close(aws.ledger, ledger.state(aws.ledger, "d"), "quiet", now=200)

    late = ledger.join(aws.ledger, "d", [_file("late.vcf"), _file("a.vcf")], now=300)

    assert (late.waves, late.new, late.duplicates) == ({1, 2}, 1, 1)  # a.vcf stays in wave 1
    assert _waves(aws.ledger) == {"a.vcf": 1, "late.vcf": 2}
    assert [f.object.key for _, f in ledger.files(aws.ledger, "d", wave=2)] == ["incoming/d/late.vcf"]


def test_a_close_loses_to_an_object_recorded_after_the_state_was_read(aws: SimpleNamespace) -> None:
    ledger.join(aws.ledger, "d", [_file("a.vcf")], now=100)
    read = ledger.state(aws.ledger, "d")
    ledger.join(aws.ledger, "d", [_file("b.vcf")], now=150)

    assert not ledger.close(aws.ledger, read, "quiet", now=200)
    assert ledger.state(aws.ledger, "d").collecting
    assert ledger.close(aws.ledger, ledger.state(aws.ledger, "d"), "quiet", now=200)


def test_a_marker_opens_no_wave_and_belongs_to_the_next_one(aws: SimpleNamespace) -> None:
    early = ledger.join(aws.ledger, "d", [_file("_COMPLETE", "marker")], now=100)
    assert early.waves == frozenset()
    state = ledger.state(aws.ledger, "d")
    assert (state.wave, state.collecting, state.marker_wave) == (0, False, 1)

    ledger.join(aws.ledger, "d", [_file("a.vcf")], now=101)
    state = ledger.state(aws.ledger, "d")
    assert (state.wave, state.collecting, state.marker_wave, state.objects) == (1, True, 1, 2)
    assert state.marker is not None
    assert state.marker.key == "incoming/d/_COMPLETE"


def test_a_big_batch_is_recorded_whole(aws: SimpleNamespace) -> None:
    files = [_file(f"p{i:04d}.dcm", "imaging") for i in range(2 * 100 + 10)]
    joined = ledger.join(aws.ledger, "d", files, now=100)
    assert (joined.waves, joined.new) == ({1}, len(files))
    assert ledger.state(aws.ledger, "d").objects == len(files)


def test_concurrent_triggers_and_closes_put_every_file_in_exactly_one_wave(aws: SimpleNamespace) -> None:
    # Four triggers record 40 files each while the runs close waves as fast as they can.
    batches = [[_file(f"t{t}-{i:02d}.vcf") for i in range(40)] for t in range(4)]
    done = threading.Event()

    def trigger(batch: list[ManifestFile]) -> None:
        for start in range(0, len(batch), 5):
            ledger.join(aws.ledger, "d", batch[start : start + 5])

    def closer() -> None:
        while not done.is_set():
            state = ledger.state(aws.ledger, "d")
            if state.collecting:
                ledger.close(aws.ledger, state, "test")

    closing = threading.Thread(target=closer)
    closing.start()
    triggers = [threading.Thread(target=trigger, args=(b,)) for b in batches]
    for t in triggers:
        t.start()
    for t in triggers:
        t.join()
    done.set()
    closing.join()

    recorded = list(ledger.files(aws.ledger, "d"))
    assert len(recorded) == 160 == len({f.object.object_id for _, f in recorded})
    state = ledger.state(aws.ledger, "d")
    assert state.objects == 160
    assert {w for w, _ in recorded} <= set(range(1, state.wave + 1))


def test_a_wave_does_not_close_while_a_trigger_is_recording_until_its_lease_runs_out(
    aws: SimpleNamespace,
) -> None:
    ledger.join(aws.ledger, "d", [_file("a.vcf")], now=100)
    # A trigger entered the wave and died there (it never left)
    assert ledger._enter(aws.ledger, ledger.state(aws.ledger, "d"), 100, None)
    read = ledger.state(aws.ledger, "d")

    assert not ledger.close(aws.ledger, read, "quiet", now=200)
    assert ledger.close(aws.ledger, read, "quiet", now=100 + ledger.LEASE_SECONDS + 1)
