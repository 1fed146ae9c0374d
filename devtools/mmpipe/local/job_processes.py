"""The local jobs' processes: each in its own session, ended as a group, and recorded on disk so that a later
`mmpipe local up` / `local run` can end what a killed one (kill -9, a crash, a closed laptop lid) left behind.

A job (`python -m radiomics_job`, `python -m training_job`) starts a worker pool of its own, so one pid is
not the job: it is started with `start_new_session=True` (its pid is its process group and session id) and
with `MMPIPE_LOCAL_JOB=<tag>` (a random tag per job) in its environment, which every process it starts
inherits. Ending a job signals every live process of its group (SIGTERM, then SIGKILL to what is left after
`GRACE_SECONDS`).

Registry: one JSON file per job (and one for the folder of a runtime's jobs) in
`<system temp>/mmpipe-<uid>/jobs/` ($MMPIPE_JOB_REGISTRY if set), a private folder (0700, owned by the
user; otherwise nothing is recorded or reaped). Under the system temp folder rather than next to
`.mmpipe/local.json` because `local run` has no state file and either command may start from any working
directory; the jobs' folders are in the system temp folder too. Written by `LocalJobs` when a job is
created, updated when its process starts, deleted by `LocalJobs.close()`. File name
`<owner pid>-<owner start>-<key>.json`, written atomically (temp file + rename); contents:

    {"version": 1, "boot_id": "<kernel boot id>", "owner": {"pid": 4242, "start": 1821586},
     "name": "mmpipe-radiomics-0123", "folder": "/tmp/mmpipe-jobs-x/mmpipe-radiomics-0123",
     "process": {"pid": 4301, "pgid": 4301, "start": 1822001, "tag": "9f..."}}

`start` is the process start time in clock ticks after boot (/proc/<pid>/stat field 22): a pid with another
start time (or in another boot) is another process. `process` is null until the job's process starts;
`folder` is null for a job without one (Batch).

Reaping (`reap_orphaned_jobs`): an entry whose owner is not running (no such pid, another start time, a
zombie, another boot) has its job ended and its folder removed, then the entry is deleted. A process is
signalled only when it is provably the job's: the recorded leader (same pid and start time), any member of
its process group while that leader lives (the group id cannot be reused while its leader holds it), or,
once the leader is gone, a process of that group that started after the job and carries the job's tag in
/proc/<pid>/environ. Signals go through a pidfd opened before the identity check, so a pid reused in
between is never hit. A folder is removed only if it is a real folder (not a symlink) owned by the user.
Without /proc (not Linux) nothing is recorded and nothing is reaped.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import stat
import tempfile
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

TAG_VARIABLE = "MMPIPE_LOCAL_JOB"
# Between SIGTERM and SIGKILL. The radiomics job stops its workers on SIGTERM and gives each up to
# radiomics_job.workers.STOP_GRACE_SECONDS (2 s) before killing it; 5 s leaves it room to do so.
GRACE_SECONDS = 5.0
KILL_WAIT_SECONDS = 2.0  # after SIGKILL: how long to wait for the group to be gone
_POLL_SECONDS = 0.05
REGISTRY_VERSION = 1
REGISTRY_VARIABLE = "MMPIPE_JOB_REGISTRY"


@dataclass(frozen=True)
class ProcessIdentity:
    """A process as a pid and its start time (clock ticks after boot): a reused pid has another start."""

    pid: int
    start: int

    @classmethod
    def of(cls, pid: int) -> ProcessIdentity | None:
        """The process that holds `pid` now; None if none (or it is a zombie, or there is no /proc)."""
        found = _read_stat(pid)
        if found is None or found.state in "ZX":
            return None
        return cls(pid, found.start)

    def running(self) -> bool:
        return ProcessIdentity.of(self.pid) == self


@dataclass(frozen=True)
class JobProcess:
    """A job's leader (its pid is its process group id) and the tag its processes carry."""

    pid: int
    pgid: int
    start: int
    tag: str


def new_tag() -> str:
    return uuid.uuid4().hex


def process_start(pid: int) -> int | None:
    """Start time of `pid` (clock ticks after boot), a zombie's too; None without such a process or /proc."""
    found = _read_stat(pid)
    return found.start if found is not None else None


# --- /proc -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Stat:
    pid: int
    state: str
    pgid: int
    start: int


def _read_stat(pid: int) -> _Stat | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read().decode("ascii", "replace")
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may itself hold spaces and ')'.
    fields = raw[raw.rfind(")") + 2 :].split()
    try:
        return _Stat(pid, fields[0], int(fields[2]), int(fields[19]))
    except (IndexError, ValueError):
        return None


def _all_stats() -> Iterable[_Stat]:
    try:
        names = os.listdir("/proc")
    except OSError:
        return
    for name in names:
        if name.isdigit():
            found = _read_stat(int(name))
            if found is not None:
                yield found


def _carries_tag(pid: int, tag: str) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            environ = handle.read()
    except OSError:
        return False
    return f"{TAG_VARIABLE}={tag}".encode() in environ.split(b"\0")


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def job_members(job: JobProcess) -> list[ProcessIdentity]:
    """The job's live processes (its leader and every process of its group that is provably the job's)."""
    group = [s for s in _all_stats() if s.pgid == job.pgid and s.state not in "ZX"]
    leader_alive = any(s.pid == job.pid and s.start == job.start for s in group)
    members = []
    for member in group:
        if member.pid == job.pid:
            ours = member.start == job.start
        else:
            ours = leader_alive or (member.start >= job.start and _carries_tag(member.pid, job.tag))
        if ours:
            members.append(ProcessIdentity(member.pid, member.start))
    return members


def _signal(process: ProcessIdentity, signum: int) -> bool:
    """Send `signum` to `process` if it still is that process; True if sent."""
    pidfd: int | None = None
    with contextlib.suppress(OSError, AttributeError):  # gone, or no pidfd (old kernel, not Linux)
        pidfd = os.pidfd_open(process.pid)
    try:
        if not process.running():  # checked after opening the pidfd: it is the process checked
            return False
        if pidfd is not None:
            signal.pidfd_send_signal(pidfd, signum)
        else:
            os.kill(process.pid, signum)
        return True
    except OSError:  # ended meanwhile (or, EPERM, not this user's: then not ours either)
        return False
    finally:
        if pidfd is not None:
            os.close(pidfd)


def end_jobs(jobs: Sequence[JobProcess], grace: float = GRACE_SECONDS) -> set[ProcessIdentity]:
    """SIGTERM every process of the jobs, SIGKILL what is left after `grace` s; returns the processes
    signalled. Returns once they are gone or KILL_WAIT_SECONDS after the SIGKILL (a process stuck in the
    kernel cannot be waited for)."""
    signalled: set[ProcessIdentity] = set()
    for job in jobs:
        signalled |= {p for p in job_members(job) if _signal(p, signal.SIGTERM)}
    if not signalled:
        return signalled
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(job_members(j) for j in jobs):
        time.sleep(_POLL_SECONDS)
    deadline = time.monotonic() + KILL_WAIT_SECONDS
    while time.monotonic() < deadline:
        left = [p for j in jobs for p in job_members(j)]
        if not left:
            break
        signalled |= {p for p in left if _signal(p, signal.SIGKILL)}
        time.sleep(_POLL_SECONDS)
    return signalled


# --- the registry ----------------------------------------------------------------------------------------


def default_registry_root() -> Path:
    """$MMPIPE_JOB_REGISTRY (tests, or to keep two setups apart), else <system temp>/mmpipe-<uid>/jobs."""
    chosen = os.environ.get(REGISTRY_VARIABLE)
    return Path(chosen) if chosen else Path(tempfile.gettempdir()) / f"mmpipe-{os.getuid()}" / "jobs"


@dataclass(frozen=True)
class RegistryEntry:
    path: Path
    boot_id: str
    owner: ProcessIdentity
    name: str
    folder: Path | None
    process: JobProcess | None

    def owner_running(self, current_boot: str) -> bool:
        return self.boot_id == current_boot and self.owner.running()


class JobRegistry:
    """The on-disk record of one process's jobs (see the module docstring); a no-op where it cannot be
    kept (no /proc, or a registry folder that is not private to the user)."""

    def __init__(self, root: Path | None = None) -> None:
        default = root is None and not os.environ.get(REGISTRY_VARIABLE)
        self.root = root or default_registry_root()
        self.owner = ProcessIdentity.of(os.getpid())
        self.boot_id = boot_id()
        # The default's parent (<temp>/mmpipe-<uid>) is made private too: the system temp folder is shared.
        self.enabled = self.owner is not None and _private_folder(
            self.root, also=self.root.parent if default else None
        )

    def record(self, key: str, name: str, folder: Path | None, process: JobProcess | None = None) -> None:
        """Write (or replace) the entry of job `key`; atomic."""
        if not self.enabled or self.owner is None:
            return
        document = {
            "version": REGISTRY_VERSION,
            "boot_id": self.boot_id,
            "owner": {"pid": self.owner.pid, "start": self.owner.start},
            "name": name,
            "folder": str(folder) if folder is not None else None,
            "process": (
                {"pid": process.pid, "pgid": process.pgid, "start": process.start, "tag": process.tag}
                if process is not None
                else None
            ),
        }
        path = self._path(key)
        handle, tmp = tempfile.mkstemp(prefix=f".{path.name}", suffix=".tmp", dir=self.root)
        try:
            with os.fdopen(handle, "w") as out:
                json.dump(document, out)
            os.replace(tmp, path)
        except OSError as exc:  # a full disk must not fail the job; it only loses the record
            log.warning("could not record local job %s in %s: %s", name, self.root, exc)
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def forget(self, key: str) -> None:
        if self.enabled:
            with contextlib.suppress(FileNotFoundError):
                self._path(key).unlink()

    def entries(self) -> list[RegistryEntry]:
        """Every readable entry; a malformed one (never written by this module: writes are atomic) is
        deleted, one of another version left alone."""
        if not self.enabled:
            return []
        found = []
        for path in sorted(self.root.glob("[!.]*.json")):
            try:
                found.append(_parse(path, json.loads(path.read_text())))
            except (FileNotFoundError, _OtherVersion):  # reaped meanwhile; another version's to handle
                continue
            except (ValueError, KeyError, TypeError):
                with contextlib.suppress(OSError):
                    path.unlink()
        return found

    def _path(self, key: str) -> Path:
        assert self.owner is not None
        return self.root / f"{self.owner.pid}-{self.owner.start}-{re.sub(r'[^A-Za-z0-9._-]', '_', key)}.json"


class _OtherVersion(Exception):
    pass


def _parse(path: Path, data: dict[str, Any]) -> RegistryEntry:
    if data.get("version") != REGISTRY_VERSION:
        raise _OtherVersion(path)
    process = data["process"]
    return RegistryEntry(
        path=path,
        boot_id=str(data["boot_id"]),
        owner=ProcessIdentity(int(data["owner"]["pid"]), int(data["owner"]["start"])),
        name=str(data["name"]),
        folder=Path(data["folder"]) if data["folder"] else None,
        process=(
            JobProcess(int(process["pid"]), int(process["pgid"]), int(process["start"]), str(process["tag"]))
            if process
            else None
        ),
    )


def _private_folder(folder: Path, also: Path | None = None) -> bool:
    """Create `folder` (and `also`, its parent) as 0700; True only if each is a real folder of this user
    that nobody else may write to (the system temp folder is shared)."""
    for path in (also, folder):
        if path is None:
            continue
        with contextlib.suppress(OSError):  # exists already (checked below), or cannot be made
            path.mkdir(mode=0o700, parents=path is folder)
        try:
            status = os.lstat(path)
        except OSError:
            return False
        if not (stat.S_ISDIR(status.st_mode) and status.st_uid == os.getuid() and not status.st_mode & 0o022):
            log.warning("not recording local jobs: %s is not a private folder of this user", path)
            return False
    return True


def _remove_folder(folder: Path) -> bool:
    """Remove a job's folder, only if it is an absolute, real (not symlinked) folder of this user."""
    try:
        status = os.lstat(folder)
    except OSError:  # gone already
        return False
    if not folder.is_absolute() or not stat.S_ISDIR(status.st_mode) or status.st_uid != os.getuid():
        log.warning("left %s in place: not a folder of this user", folder)
        return False
    shutil.rmtree(folder, ignore_errors=True)
    return True


# --- reaping ---------------------------------------------------------------------------------------------


@dataclass
class Reaped:
    """What a reap cleaned up (and what it left alone)."""

    owners: set[int]
    jobs: list[str]
    processes: int
    folders: int
    left_alone: list[int]

    def line(self) -> str:
        owners = ", ".join(str(pid) for pid in sorted(self.owners))
        parts = []
        if self.jobs:
            parts.append(
                f"ended {_count(len(self.jobs), 'job')} ({', '.join(self.jobs)}; "
                f"{_count(self.processes, 'process', 'processes')})"
            )
        if self.folders:
            parts.append(f"removed {_count(self.folders, 'temp folder')}")
        if self.left_alone:
            pids = ", ".join(str(p) for p in self.left_alone)
            parts.append(f"left pid {pids} alone (another process now)")
        runtimes = "a local runtime" if len(self.owners) == 1 else f"{len(self.owners)} local runtimes"
        return f"cleaned up after {runtimes} no longer running (pid {owners}): {'; '.join(parts) or 'stale records'}"


def _count(n: int, singular: str, plural: str | None = None) -> str:
    return f"{n} {singular if n == 1 else plural or singular + 's'}"


def reap_orphaned_jobs(registry: JobRegistry | None = None, grace: float = GRACE_SECONDS) -> Reaped | None:
    """End the jobs and remove the folders of every registry entry whose owner is not running; delete
    those entries. None when there was nothing to clean."""
    registry = registry or JobRegistry()
    current_boot = registry.boot_id
    orphaned = [e for e in registry.entries() if not e.owner_running(current_boot)]
    if not orphaned:
        return None
    # After a reboot nothing recorded can be running: only the folders are left to remove.
    live = [e for e in orphaned if e.process is not None and e.boot_id == current_boot]
    running = [e for e in live if e.process is not None and job_members(e.process)]
    left_alone = sorted(
        e.process.pid
        for e in live
        if e.process is not None and e not in running and ProcessIdentity.of(e.process.pid) is not None
    )
    ended = end_jobs([e.process for e in running if e.process is not None], grace)
    folders = 0
    # Job folders before the runtime's folder that holds them.
    for entry in sorted(orphaned, key=lambda e: len(str(e.folder or "")), reverse=True):
        if entry.folder is not None and _remove_folder(entry.folder):
            folders += 1
        with contextlib.suppress(FileNotFoundError):
            entry.path.unlink()
    return Reaped(
        owners={e.owner.pid for e in orphaned},
        jobs=[e.name for e in running],
        processes=len(ended),
        folders=folders,
        left_alone=left_alone,
    )
