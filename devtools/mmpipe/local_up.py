"""`mmpipe local up`: the local runtime kept running and fed by a watched folder, the way ops feed S3.

Whatever is dropped into the inbox is uploaded to the landing bucket once it is complete, which sends the S3
events that drive the pipeline. Files under INBOX/<delivery>/... go to incoming/<delivery>/..., files
directly in INBOX to incoming/inbox-<UTC date>/. A file version (path, size, mtime) is uploaded once. Files
already there at start are uploaded too (the runtime starts empty).

When a file is complete (nothing tells for sure; these rules together catch the usual writers):
- it has held still - same size and mtime - for `settle` seconds (SETTLE_SECONDS, 5 s by default: longer
  than the pauses of a network copy that stalls, than the 2 s mtime granularity of FAT/exFAT/SMB shares
  twice over, and than NFS's 3 s minimum attribute caching; at the price of 5 s of latency per drop, which
  a run that takes minutes does not notice);
- its name does not say it is in progress: hidden files and folders (`.name`: rsync's temp files) and
  `*.part`, `*.partial`, `*.tmp`, `*.crdownload`, `*.filepart`, `*~` are never uploaded; the finished
  file appears under its final name (a rename) and is judged from then on;
- on Linux, no process has it open for writing (/proc/<pid>/fd and fdinfo of the processes this user may
  inspect: all of them as root). Looked at only for files that pass the other rules, and a file found open
  starts its `settle` wait again, so while a writer holds a file the look happens once per `settle`, not
  once per scan. Measured with 3,000 waiting files: 1.5 ms with 73 processes, 0.11 s with 373 processes
  holding 19,600 open files (one readlink per open file; the number of waiting files hardly matters),
  against 75 ms for the scan of the 3,000 files itself. Writers of other users (as a non-root user) and on
  other machines (a network share) are not seen: the stable window covers them.
- a completion marker `_COMPLETE` (COMPLETE_MARKER: "this delivery is complete" to the pipeline,
  mmhealth.waves; an empty one completes the delivery as soon as it is recorded) is uploaded only after
  every other file under its folder (INBOX/<delivery>/ for a delivery's marker; for one directly in
  INBOX, the loose files of the day) is done, so it is the last object of the delivery; a file there with
  an in-progress name holds it back too (remove a stale one to release it).

The console says what happens per delivery, not per file (mmpipe.console): one line when a delivery's files
are uploaded, one when its run changes phase, and one when the run finishes, with counts, why training was
skipped or where the exported report is; `verbose` adds a line per uploaded file. moto's own log lines and
tracebacks go to the log file.

While it runs, a state file (default .mmpipe/local.json) tells other processes where the runtime listens,
so `mmpipe status --local`, `mmpipe redrive --local` and `mmpipe invoke --local` work from another
terminal. SIGINT / SIGTERM stop it cleanly: the runtime stops, running jobs (the radiomics and training
job subprocesses and their workers) are ended and their folders removed, the state file is removed; exit 0.
At start it ends the jobs and removes the folders that a killed `local up` / `local run` left
(mmpipe.local.job_processes) and says so in one line.
"""

from __future__ import annotations

import logging
import os
import signal
import stat
import sys
import threading
import time
import warnings
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from mmhealth.classify import MARKER_NAME
from mmpipe.console import DeliveryConsole
from mmpipe.local.job_processes import reap_orphaned_jobs
from mmpipe.local.signals import handling_stop_signals
from mmpipe.local.state_file import LocalState, LocalStateError, read_state, remove_state, write_state

SETTLE_SECONDS = 5.0  # why 5 s: the module docstring
SCAN_SECONDS = 0.5
COMPLETE_MARKER = MARKER_NAME  # the pipeline's name for it (mmhealth.waves)
IN_PROGRESS_SUFFIXES = (".part", ".partial", ".tmp", ".crdownload", ".filepart", "~")


@dataclass(frozen=True)
class InboxFile:
    """A file of the inbox, at one version, and the landing key it goes to."""

    path: Path
    relative: str
    key: str
    size: int
    mtime_ns: int

    @property
    def version(self) -> tuple[str, int, int]:
        return (self.relative, self.size, self.mtime_ns)


def landing_key(relative: Path, today: str) -> str:
    """<delivery>/<path> -> incoming/<delivery>/<path>; a file directly in the inbox ->
    incoming/inbox-<today>/<name>."""
    if len(relative.parts) > 1:
        return f"incoming/{relative.as_posix()}"
    return f"incoming/inbox-{today}/{relative.name}"


def _utc_today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


def in_progress_name(name: str) -> bool:
    """Hidden, or named the way downloaders and copy tools name a file they are still writing."""
    return name.startswith(".") or name.lower().endswith(IN_PROGRESS_SUFFIXES)


def files_open_for_writing(paths: Collection[str]) -> set[str]:
    """The `paths` (absolute, symlinks resolved) some process has open for writing, from /proc/<pid>/fd and
    fdinfo of every process this user may inspect; empty without /proc. Cost: one readlink per open file
    descriptor on the machine (about 6 us each)."""
    wanted, busy = set(paths), set[str]()
    try:
        pids = [name for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return busy
    for pid in pids:
        fd_folder = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_folder)
        except OSError:  # gone, or another user's
            continue
        for fd in fds:
            try:
                target = os.readlink(f"{fd_folder}/{fd}")
            except OSError:
                continue
            if target in wanted and target not in busy and _open_for_writing(pid, fd):
                busy.add(target)
    return busy


def _open_for_writing(pid: str, fd: str) -> bool:
    try:
        with open(f"/proc/{pid}/fdinfo/{fd}") as info:
            for line in info:
                if line.startswith("flags:"):
                    return (int(line.split()[1], 8) & os.O_ACCMODE) in (os.O_WRONLY, os.O_RDWR)
    except (OSError, ValueError, IndexError):
        pass
    return False


class InboxWatcher:
    """Polls a folder; `scan()` returns the files that are complete by the module's rules and whose version
    was not handed out before (call `done()` once it is uploaded, or given up on). A completion marker is
    returned only in a scan after every other file under its folder is done."""

    def __init__(
        self,
        inbox: Path,
        settle: float = SETTLE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        today: Callable[[], str] = _utc_today,
        open_for_writing: Callable[[Collection[str]], set[str]] = files_open_for_writing,
    ) -> None:
        self.inbox = inbox
        self.settle = settle
        self._clock = clock
        self._today = today
        self._open_for_writing = open_for_writing
        self._seen: dict[Path, tuple[int, int, float]] = {}  # path -> size, mtime_ns, unchanged since
        self._done: set[tuple[str, int, int]] = set()

    def scan(self) -> list[InboxFile]:
        now = self._clock()
        today = self._today()
        settled: list[InboxFile] = []
        waiting: list[str] = []  # keys of files not handed out yet (a marker waits for them)
        present: set[Path] = set()
        for path in sorted(self.inbox.rglob("*")):
            relative = path.relative_to(self.inbox)
            if any(part.startswith(".") for part in relative.parts):
                continue
            try:
                status = path.stat()
            except OSError:  # removed while scanning
                continue
            if not stat.S_ISREG(status.st_mode):
                continue
            key = landing_key(relative, today)
            if in_progress_name(path.name):
                waiting.append(key)
                continue
            present.add(path)
            size, mtime_ns = status.st_size, status.st_mtime_ns
            file = InboxFile(path, relative.as_posix(), key, size, mtime_ns)
            if file.version in self._done:
                continue
            seen = self._seen.get(path)
            if seen is None or seen[:2] != (size, mtime_ns):
                self._seen[path] = (size, mtime_ns, now)
                waiting.append(key)
            elif now - seen[2] < self.settle:
                waiting.append(key)
            else:
                settled.append(file)
        for gone in set(self._seen) - present:
            del self._seen[gone]
        if settled:
            settled = self._not_being_written(settled, waiting, now)
        waiting += [f.key for f in settled]
        return [f for f in settled if not _held_marker(f, waiting)]

    def done(self, file: InboxFile) -> None:
        self._done.add(file.version)

    def _not_being_written(self, settled: list[InboxFile], waiting: list[str], now: float) -> list[InboxFile]:
        """Drop the files a process has open for writing; their settle wait starts again."""
        root = os.path.realpath(self.inbox)
        where = {os.path.join(root, f.relative): f for f in settled}
        busy = self._open_for_writing(where.keys())
        for name in busy:
            file = where[name]
            self._seen[file.path] = (file.size, file.mtime_ns, now)
            waiting.append(file.key)
        return [f for name, f in where.items() if name not in busy]


def _held_marker(file: InboxFile, waiting: list[str]) -> bool:
    """A completion marker waits for every other file under its folder that is not handed out yet."""
    if file.path.name != COMPLETE_MARKER:
        return False
    folder = file.key.rsplit("/", 1)[0] + "/"
    return any(key.startswith(folder) and key != file.key for key in waiting)


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set `stop` (instead of raising KeyboardInterrupt or ending the process), so the
    runtime stops and ends its jobs; a third one ends the process at once (the next start reaps its jobs)."""
    received = 0

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal received
        received += 1
        if received < 3:
            stop.set()
            return
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    with handling_stop_signals(handler):
        yield


def local_state(runtime: Any, lambda_endpoint_url: str, inbox: Path, log_file: Path) -> LocalState:
    """What the state file says about a started runtime."""
    from mmpipe.local.process_env import ACCOUNT_ID, REGION

    outputs, ids = runtime.outputs, runtime.physical_ids
    return LocalState(
        pid=os.getpid(),
        endpoint_url=runtime.endpoint_url,
        lambda_endpoint_url=lambda_endpoint_url,
        region=REGION,
        account_id=ACCOUNT_ID,
        stack_name=runtime.stack_name,
        state_machine_arn=runtime.state_machine_arn,
        landing_bucket=runtime.landing_bucket,
        lake_bucket=runtime.lake_bucket,
        glue_database_prefix=outputs["GlueDatabasePrefix"],
        topic_arn=runtime.topic_arn,
        ingest_queue_url=ids["IngestQueue"],
        dead_letter_queue_url=outputs["IngestDeadLetterQueueUrl"],
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        functions={logical_id: spec.name for logical_id, spec in sorted(runtime.functions.items())},
        inbox=str(inbox.resolve()),
        log_file=str(log_file.resolve()),
    )


def upload_ready(runtime: Any, watcher: InboxWatcher, out: TextIO) -> list[InboxFile]:
    """Upload what the watcher finds ready, as one burst (events held, so the burst forms full batches).
    Returns the files uploaded."""
    ready = watcher.scan()
    uploaded: list[InboxFile] = []
    if not ready:
        return uploaded
    with runtime.events_held():
        for file in ready:
            watcher.done(file)  # once per version, even if it fails: a changed file is a new version
            try:
                runtime.upload(file.path, file.key)
            except Exception as exc:  # an unreadable file must not stop the watch
                _say(out, f"upload failed: {file.relative}: {type(exc).__name__}: {exc}")
                continue
            uploaded.append(file)
    return uploaded


def route_third_party_logs(log_file: Path) -> None:
    """moto's engine and its HTTP server log errors and whole tracebacks while runs succeed (a JSONPath it
    probes, an operation it lacks for another process's `mmpipe redrive`): into the log file, not the
    console, where a person reads only what the pipeline says."""
    handler = logging.FileHandler(log_file)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    for name in ("moto", "werkzeug"):
        target = logging.getLogger(name)
        for existing in list(target.handlers):
            target.removeHandler(existing)
        target.addHandler(handler)
        target.propagate = False


def _say(out: TextIO, message: str) -> None:
    stamp = datetime.now(UTC).strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", file=out, flush=True)


def serve(
    inbox: Path,
    state_file: Path,
    *,
    parameters: dict[str, str] | None = None,
    log_file: Path | None = None,
    settle: float = SETTLE_SECONDS,
    scan_seconds: float = SCAN_SECONDS,
    batching_window: float = 5.0,
    stop: threading.Event | None = None,
    out: TextIO = sys.stdout,
    verbose: bool = False,
) -> int:
    """Run until SIGINT/SIGTERM (or `stop` is set). 0 after a clean stop, 2 when another `local up` owns
    the state file."""
    from mmpipe.local.lambda_endpoint import LambdaEndpoint
    from mmpipe.local.runtime import LocalRuntime
    from mmpipe.local_run import route_handler_logs

    try:
        other = read_state(state_file)
    except LocalStateError:
        pass  # none, or stale: ours to write
    else:
        print(f"error: mmpipe local up (pid {other.pid}) already uses {state_file}", file=sys.stderr)
        return 2
    cleaned = reap_orphaned_jobs()  # what a killed `local up` / `local run` left
    if cleaned is not None:
        _say(out, cleaned.line())
    stop = stop or threading.Event()
    inbox.mkdir(parents=True, exist_ok=True)
    log_file = log_file or state_file.parent / "local-logs.jsonl"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")  # EMF would flood the log
    warnings.filterwarnings("ignore", message="No application metrics to publish")  # metrics are off
    route_handler_logs(log_file)
    route_third_party_logs(log_file)
    watcher = InboxWatcher(inbox, settle=settle)
    with (
        stop_on_signals(stop),
        LocalRuntime(parameters=parameters or {}, max_batching_window=batching_window) as runtime,
    ):
        endpoint = LambdaEndpoint(runtime.client("lambda"), runtime.is_local_function).start()
        try:
            write_state(state_file, local_state(runtime, endpoint.url, inbox, log_file))
            _say(
                out, f"local runtime up at {runtime.endpoint_url} (Lambda: {endpoint.url}); watching {inbox}"
            )
            _say(out, f"state file {state_file}; handler logs {log_file}; Ctrl-C to stop")
            console = DeliveryConsole(
                runtime, lambda line: _say(out, line), state_file.parent / "reports", verbose=verbose
            )
            while not stop.is_set():
                try:
                    console.uploaded(upload_ready(runtime, watcher, out))
                    console.poll()
                except Exception as exc:  # keep watching: the next scan retries
                    _say(out, f"error: {type(exc).__name__}: {exc}")
                stop.wait(scan_seconds)
        finally:
            remove_state(state_file, os.getpid())
            endpoint.stop()
    _say(out, "stopped")
    return 0
