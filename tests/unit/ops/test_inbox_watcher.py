"""The inbox of `mmpipe local up`: a file is handed out once it has held still, once per version."""

from __future__ import annotations

import os
from pathlib import Path

from mmpipe.local_up import InboxWatcher, landing_key


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
