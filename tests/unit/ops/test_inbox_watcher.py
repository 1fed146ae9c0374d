"""The inbox of `mmpipe local up`: a file is handed out once it is complete (held still, not named or open
as in progress), once per version, and a delivery's completion marker after the rest of the delivery."""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path

import pytest

from mmpipe.local_up import COMPLETE_MARKER, InboxWatcher, files_open_for_writing, landing_key


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _watcher(inbox: Path, clock: Clock) -> InboxWatcher:
    return InboxWatcher(inbox, settle=1.0, clock=clock, today=lambda: "2026-11-22")


def _write(path: Path, body: bytes, mtime: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    if mtime is not None:
        os.utime(path, ns=(mtime, mtime))


def test_keys_keep_the_delivery_folder_and_date_loose_files() -> None:
    assert landing_key(Path("site-a/genomic/pt 1.vcf"), "2026-11-22") == "incoming/site-a/genomic/pt 1.vcf"
    assert landing_key(Path("loose.vcf"), "2026-11-22") == "incoming/inbox-2026-11-22/loose.vcf"


def test_a_file_is_ready_only_after_it_held_still_for_the_settle_time(tmp_path: Path) -> None:
    clock = Clock()
    watcher = _watcher(tmp_path, clock)
    _write(tmp_path / "site-a" / "a.vcf", b"##fileformat=VCFv4.2\n", mtime=1_000)

    assert watcher.scan() == []  # first sight
    clock.now += 0.5
    assert watcher.scan() == []  # not settled yet
    _write(tmp_path / "site-a" / "a.vcf", b"##fileformat=VCFv4.2\n#CHROM", mtime=2_000)  # still growing
    clock.now += 0.9
    assert watcher.scan() == []  # changed: the settle time starts again
    clock.now += 1.0

    [ready] = watcher.scan()

    assert (ready.relative, ready.key, ready.size) == ("site-a/a.vcf", "incoming/site-a/a.vcf", 27)


def test_a_version_is_handed_out_once_and_a_changed_file_again(tmp_path: Path) -> None:
    clock = Clock()
    watcher = _watcher(tmp_path, clock)
    _write(tmp_path / "loose.vcf", b"v1", mtime=1_000)
    watcher.scan()
    clock.now += 1.0
    [first] = watcher.scan()
    watcher.done(first)
    clock.now += 5.0

    assert watcher.scan() == []  # same path, size and mtime: never twice

    _write(tmp_path / "loose.vcf", b"v2!", mtime=3_000)
    watcher.scan()
    clock.now += 1.0
    [second] = watcher.scan()
    assert (second.key, second.size) == ("incoming/inbox-2026-11-22/loose.vcf", 3)


def test_hidden_files_and_folders_are_skipped_and_vanished_files_forgotten(tmp_path: Path) -> None:
    clock = Clock()
    watcher = _watcher(tmp_path, clock)
    _write(tmp_path / ".partial.vcf", b"x")
    _write(tmp_path / "site-a" / ".truth" / "labels.json", b"{}")
    _write(tmp_path / "site-a" / "gone.vcf", b"x")
    watcher.scan()
    (tmp_path / "site-a" / "gone.vcf").unlink()
    clock.now += 2.0

    assert watcher.scan() == []


def test_by_default_a_file_waits_five_seconds_of_stillness(tmp_path: Path) -> None:
    clock = Clock()
    watcher = InboxWatcher(
        tmp_path, clock=clock, today=lambda: "2026-11-22", open_for_writing=lambda _: set()
    )
    _write(tmp_path / "site-a" / "a.vcf", b"x", mtime=1_000)
    watcher.scan()

    clock.now += 4.9
    assert watcher.scan() == []  # a writer that paused for 4.9 s is still writing, as far as anyone knows
    clock.now += 0.1
    assert [f.relative for f in watcher.scan()] == ["site-a/a.vcf"]


def test_names_of_files_still_being_written_are_skipped_until_renamed(tmp_path: Path) -> None:
    clock = Clock()
    watcher = _watcher(tmp_path, clock)
    in_progress = ["a.vcf.part", "b.vcf.PARTIAL", "c.tmp", "d.vcf.crdownload", "e.vcf.filepart", "f.vcf~"]
    for name in in_progress:
        _write(tmp_path / "site-a" / name, b"x", mtime=1_000)
    _write(tmp_path / "site-a" / "done.vcf", b"x", mtime=1_000)
    watcher.scan()
    clock.now += 10.0

    assert [f.relative for f in watcher.scan()] == ["site-a/done.vcf"]

    # The finished file appears under its own name and is judged from then on
    (tmp_path / "site-a" / "a.vcf.part").rename(tmp_path / "site-a" / "a.vcf")
    assert [f.relative for f in watcher.scan()] == ["site-a/done.vcf"]  # done.vcf: not marked done here
    clock.now += 1.0
    assert [f.relative for f in watcher.scan()] == ["site-a/a.vcf", "site-a/done.vcf"]


def test_a_file_open_for_writing_is_not_taken_and_waits_again_once_closed(tmp_path: Path) -> None:
    clock = Clock()
    writing: set[str] = set()
    asked: list[list[str]] = []

    def open_for_writing(paths: Collection[str]) -> set[str]:
        asked.append(sorted(paths))
        return writing & set(paths)

    watcher = InboxWatcher(tmp_path, settle=5.0, clock=clock, open_for_writing=open_for_writing)
    _write(tmp_path / "site-a" / "slow.vcf", b"x", mtime=1_000)
    target = os.path.join(os.path.realpath(tmp_path), "site-a", "slow.vcf")
    writing.add(target)
    watcher.scan()
    assert asked == []  # nothing settled yet: /proc is not looked at

    clock.now += 5.0
    assert watcher.scan() == []  # settled, but a process still has it open for writing
    assert asked == [[target]]
    writing.clear()
    clock.now += 4.9
    assert watcher.scan() == []  # its settle wait started again when it was found open
    clock.now += 0.1
    assert [f.relative for f in watcher.scan()] == ["site-a/slow.vcf"]


@pytest.mark.skipif(not Path("/proc/self/fdinfo").exists(), reason="needs Linux /proc")
def test_files_open_for_writing_are_found_in_proc(tmp_path: Path) -> None:
    written, read, closed = (tmp_path / n for n in ("written.vcf", "read.vcf", "closed.vcf"))
    for path in (written, read, closed):
        path.write_bytes(b"x")
    names = [os.path.realpath(p) for p in (written, read, closed)]
    with written.open("ab"), read.open("rb"):
        assert files_open_for_writing(names) == {os.path.realpath(written)}
    assert files_open_for_writing(names) == set()


def test_the_completion_marker_is_handed_out_after_every_other_file_of_its_folder(tmp_path: Path) -> None:
    clock = Clock()
    watcher = _watcher(tmp_path, clock)
    for name in ("a.vcf", "genomic/b.vcf", COMPLETE_MARKER):
        _write(tmp_path / "site-a" / name, b"x", mtime=1_000)
    _write(tmp_path / "site-b" / "c.vcf", b"x", mtime=1_000)
    watcher.scan()
    clock.now += 1.0

    # The marker settled with the others but waits until they are done; another delivery does not wait
    first = watcher.scan()
    assert [f.relative for f in first] == ["site-a/a.vcf", "site-a/genomic/b.vcf", "site-b/c.vcf"]
    watcher.done(first[0])
    watcher.done(first[2])
    assert [f.relative for f in watcher.scan()] == ["site-a/genomic/b.vcf"]  # the marker still waits
    watcher.done(first[1])

    [marker] = watcher.scan()

    assert (marker.relative, marker.key) == ("site-a/_COMPLETE", "incoming/site-a/_COMPLETE")


def test_the_marker_waits_for_a_late_file_and_one_with_an_in_progress_name(tmp_path: Path) -> None:
    clock = Clock()
    watcher = _watcher(tmp_path, clock)
    _write(tmp_path / "site-a" / COMPLETE_MARKER, b"", mtime=1_000)
    _write(tmp_path / "site-a" / "b.vcf.part", b"x", mtime=1_000)
    watcher.scan()
    clock.now += 5.0
    assert watcher.scan() == []  # b.vcf is still arriving

    (tmp_path / "site-a" / "b.vcf.part").rename(tmp_path / "site-a" / "b.vcf")
    assert watcher.scan() == []  # b.vcf: first sight, not settled; the marker waits for it
    clock.now += 1.0
    [late] = watcher.scan()
    assert late.relative == "site-a/b.vcf"
    watcher.done(late)
    assert [f.relative for f in watcher.scan()] == ["site-a/_COMPLETE"]
