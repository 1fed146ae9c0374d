"""Supervised worker processes: one task at a time per worker, over its own pipe, each with a deadline.

concurrent.futures' ProcessPoolExecutor cannot give the job what it needs: a running task cannot be stopped
(so no per-series time limit), and one worker that dies - killed, out of memory, a segfault in a C decoder -
breaks the pool for every task in flight and every later one. Here:

- a worker is a spawned process (no fork after torch/ITK threads have started) that runs
  `initializer(*initargs)` once (the pyradiomics extractor and, on CPU, the segmenter: seconds of imports,
  so never per series), says it is ready, then runs one task at a time sent over its pipe and sends back
  the result (or an unexpected exception's description); `report_stage` tells the supervisor where it is;
- `next_done()` waits (multiprocessing.connection.wait) on every worker's pipe and process sentinel, with the
  nearest deadline as the time-out. A reply ends the task COMPLETED (or FAILED); a passed deadline ends it
  TIMED_OUT and stops the worker (SIGTERM, then SIGKILL after STOP_GRACE_SECONDS); a worker that dies ends
  its task DIED, with the exit code or the signal. A new worker replaces a stopped or dead one when a task
  is waiting for it;
- workers are spawned lazily - when a task waits and no worker is free or starting for it - up to `count`,
  so a job of one series starts one worker and a job of none starts none;
- `close()` (the `with` block's end, also when an exception such as the CLI's SIGTERM leaves it) stops every
  worker: no orphans. A worker also dies with the supervisor's process (PR_SET_PDEATHSIG, Linux) and leaves
  when its pipe closes.
A worker that dies or hangs (START_SECONDS) before it is ready is a start failure; MAX_START_FAILURES in a
row mean workers cannot run at all: WorkerStartError.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from multiprocessing.reduction import ForkingPickler
from typing import Any

from radiomics_job.errors import describe

log = logging.getLogger("radiomics_job")

STOP_GRACE_SECONDS = 2.0  # between SIGTERM and SIGKILL
EXIT_STATUS_GRACE_SECONDS = 1.0  # how long a worker whose pipe broke may take to show its exit status
START_SECONDS = 300.0  # a worker not ready by then is a start failure (imports take about 5 s)
MAX_START_FAILURES = 3

COMPLETED = "completed"  # the function returned; `result` is its value
FAILED = "failed"  # the function raised (or its result could not be sent back); `detail` says what
TIMED_OUT = "timed-out"  # past the task's time limit: the worker was stopped
DIED = "died"  # the worker process ended under the task; `detail` names the exit code or signal

_READY, _STAGE, _REPLY = "ready", "stage", "reply"
_PR_SET_PDEATHSIG = 1
_SIGNAL_HINTS = {
    "SIGKILL": " (killed from outside, e.g. by the out-of-memory killer)",
    "SIGSEGV": " (a crash in native code, e.g. a DICOM decoder)",
    "SIGBUS": " (a crash in native code)",
    "SIGABRT": " (native code aborted)",
}


class WorkerStartError(RuntimeError):
    """Workers die or hang before they are ready, MAX_START_FAILURES times in a row: they cannot run."""


@dataclass(frozen=True)
class Task:
    """`function(*args)` in a worker; `function` must be module-level (it is pickled by name)."""

    key: Any  # the caller's handle
    function: Callable[..., Any]
    args: tuple[Any, ...]
    seconds: float | None = None  # time limit from the moment the worker gets it; None: no limit


@dataclass(frozen=True)
class Done:
    task: Task
    status: str  # COMPLETED | FAILED | TIMED_OUT | DIED
    result: Any = None
    detail: str = ""
    stages: dict[str, float] | None = None  # seconds per stage the worker reported (report_stage), in order
    seconds: float = 0.0  # time the task spent in its worker

    @property
    def stage(self) -> str | None:
        """The stage the task was in when it ended (the last one reported)."""
        return list(self.stages)[-1] if self.stages else None


# --------------------------------------------------------------------------------------------- worker side

_reporter: Callable[[str], None] | None = None


def report_stage(stage: str) -> None:
    """Tell the supervisor that the current task enters `stage` (a no-op outside a worker)."""
    if _reporter is not None:
        _reporter(stage)


def _serve(
    conn: Connection, parent: int, initializer: Callable[..., None], initargs: tuple[Any, ...]
) -> None:
    global _reporter
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the process group: the supervisor decides
    _die_with(parent)
    initializer(*initargs)
    # CLOCK_MONOTONIC is system-wide on Linux: the supervisor can compare it with its own.
    _reporter = lambda stage: conn.send((_STAGE, stage, time.monotonic()))  # noqa: E731
    conn.send((_READY,))
    while True:
        try:
            message = conn.recv()
        except EOFError:  # the supervisor is gone
            return
        if message is None:
            return
        function, args = message
        try:
            reply = (_REPLY, True, function(*args))
        except Exception as error:  # the caller's functions should not raise; if one does, say so
            reply = (_REPLY, False, describe(error))
        try:
            conn.send(reply)
        except OSError:  # the supervisor is gone
            return
        except Exception as error:  # the result does not pickle (pickling happens before any byte is sent)
            conn.send((_REPLY, False, f"the result could not be sent back: {describe(error)}"))


def _die_with(parent: int) -> None:
    """SIGKILL this process when the supervisor's process ends, however it ends (Linux only)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))
    except (OSError, AttributeError):  # not Linux: the worker still leaves when its pipe closes
        return
    if os.getppid() != parent:  # the supervisor ended before prctl took effect
        os._exit(1)


def exit_detail(exitcode: int | None) -> str:
    """How a worker process ended, e.g. `killed by SIGKILL (...)` or `exited with code 3`."""
    if exitcode is None:
        return "its pipe broke while the process was still running"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"killed by {name}{_SIGNAL_HINTS.get(name, '')}"
    return f"exited with code {exitcode}"


# ----------------------------------------------------------------------------------------- supervisor side


@dataclass(eq=False)
class _Worker:
    number: int
    process: BaseProcess
    conn: Connection
    started: float
    ready: bool = False
    task: Task | None = None
    sent: float = 0.0
    stages: list[tuple[str, float]] = field(default_factory=list)  # (stage, when it started)

    @property
    def deadline(self) -> float | None:
        if not self.ready:
            return self.started + START_SECONDS
        if self.task is not None and self.task.seconds:
            return self.sent + self.task.seconds
        return None

    def done(self, status: str, result: Any = None, detail: str = "") -> Done:
        assert self.task is not None
        task, self.task = self.task, None
        now = time.monotonic()
        # A stage lasts until the next one starts; the last one until now.
        ends = [started for _, started in self.stages[1:]] + [now]
        stages = {
            name: round(end - started, 4) for (name, started), end in zip(self.stages, ends, strict=False)
        }
        return Done(task, status, result, detail, stages, round(now - self.sent, 4))


class Supervisor:
    """Up to `count` worker processes running submitted tasks; see the module docstring."""

    def __init__(self, count: int, initializer: Callable[..., None], initargs: tuple[Any, ...] = ()) -> None:
        if count < 1:
            raise ValueError("a supervisor needs at least one worker")
        self.count = count
        self._initializer = initializer
        self._initargs = initargs
        self._context = multiprocessing.get_context("spawn")
        self._queue: deque[Task] = deque()
        self._done: deque[Done] = deque()
        self._workers: list[_Worker] = []
        self._spawned = 0
        self._start_failures = 0

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def submit(self, task: Task, *, first: bool = False) -> None:
        """Queue a task (`first`: before the others, e.g. the second half of a series already started)."""
        if first:
            self._queue.appendleft(task)
        else:
            self._queue.append(task)

    @property
    def outstanding(self) -> int:
        """Tasks submitted whose Done next_done() has not returned yet."""
        running = sum(1 for worker in self._workers if worker.task is not None)
        return len(self._queue) + len(self._done) + running

    @property
    def spawned(self) -> int:
        """Worker processes started so far (replacements included)."""
        return self._spawned

    def next_done(self) -> Done:
        """The next task to end, however it ended; raises WorkerStartError when workers cannot start."""
        while not self._done:
            if not self._queue and all(worker.task is None for worker in self._workers):
                raise RuntimeError("next_done() with no task outstanding")
            self._dispatch()
            self._wait()
        self._dispatch()  # the workers that just finished start their next task while the caller handles this
        return self._done.popleft()

    def done_now(self) -> list[Done]:
        """Every task that has ended by now, without waiting for more (for the caller to batch them)."""
        self._wait(0.0)
        done, self._done = list(self._done), deque()
        self._dispatch()
        return done

    def close(self) -> None:
        """Stop every worker (SIGTERM, SIGKILL after the grace period): nothing outlives the supervisor."""
        workers, self._workers = self._workers, []
        for worker in workers:
            if worker.process.exitcode is None:
                worker.process.terminate()
        grace = time.monotonic() + STOP_GRACE_SECONDS
        for worker in workers:
            worker.process.join(max(0.0, grace - time.monotonic()))
            if worker.process.exitcode is None:
                worker.process.kill()
                worker.process.join()
            worker.conn.close()

    # ---------------------------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        for worker in list(self._workers):
            if not self._queue:
                break
            if worker.ready and worker.task is None:
                self._send(worker, self._queue.popleft())
        starting = sum(1 for worker in self._workers if not worker.ready)
        while len(self._queue) > starting and len(self._workers) < self.count:
            self._spawn()
            starting += 1

    def _spawn(self) -> None:
        self._spawned += 1
        ours, theirs = self._context.Pipe()
        process = self._context.Process(
            target=_serve,
            args=(theirs, os.getpid(), self._initializer, self._initargs),
            name=f"radiomics-worker-{self._spawned}",
            daemon=True,  # multiprocessing's exit handler stops it too
        )
        process.start()
        theirs.close()  # so that our end sees EOF when the worker dies
        self._workers.append(_Worker(self._spawned, process, ours, time.monotonic()))

    def _send(self, worker: _Worker, task: Task) -> None:
        try:
            payload = ForkingPickler.dumps((task.function, task.args))
        except Exception as error:
            self._done.append(Done(task, FAILED, detail=f"the task cannot be sent: {describe(error)}"))
            return
        try:
            worker.conn.send_bytes(payload)
        except OSError:  # the worker died since it was last heard from: the task never reached it
            self._queue.appendleft(task)
            self._lost(worker)
            return
        worker.task, worker.sent, worker.stages = task, time.monotonic(), []

    def _wait(self, at_most: float | None = None) -> None:
        if not self._workers:
            return
        deadlines = [d for worker in self._workers if (d := worker.deadline) is not None]
        timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
        if at_most is not None:
            timeout = at_most if timeout is None else min(timeout, at_most)
        handles: dict[Any, _Worker] = {}
        for worker in self._workers:
            handles[worker.conn] = worker
            handles[worker.process.sentinel] = worker
        heard = {handles[handle] for handle in wait(list(handles), timeout)}
        for worker in list(self._workers):
            if worker in heard:
                self._hear(worker)
            elif (deadline := worker.deadline) is not None and time.monotonic() >= deadline:
                self._expire(worker)

    def _hear(self, worker: _Worker) -> None:
        while worker.conn.poll():
            try:
                message = worker.conn.recv()
            except Exception:  # EOF (the worker is gone) or a reply cut short by its death
                self._lost(worker)
                return
            if message[0] == _READY:
                worker.ready = True
                self._start_failures = 0
            elif message[0] == _STAGE:
                worker.stages.append((message[1], message[2]))
            elif worker.task is not None:
                ok, payload = message[1], message[2]
                done = worker.done(COMPLETED, payload) if ok else worker.done(FAILED, detail=payload)
                self._done.append(done)
        if worker.process.exitcode is not None:  # the sentinel fired: it ended after its last message
            self._lost(worker)

    def _expire(self, worker: _Worker) -> None:
        self._stop(worker)
        if worker.task is None:
            self._start_failed(worker, f"not ready after {START_SECONDS:g} s")
            return
        limit = worker.task.seconds
        log.warning("worker %d stopped: its task exceeded %g s", worker.number, limit)
        self._done.append(worker.done(TIMED_OUT, detail=f"still running after {limit:g} s"))

    def _lost(self, worker: _Worker) -> None:
        # A killed worker's pipe can break before its exit status is there to read: give the process a
        # moment to be reaped, so the detail names the signal. Still running after that: the pipe broke on
        # its own, and _stop ends the process.
        worker.process.join(EXIT_STATUS_GRACE_SECONDS)
        ended = worker.process.exitcode
        self._stop(worker)
        how = exit_detail(ended)
        if worker.task is not None:
            log.warning("worker %d died under a task: %s", worker.number, how)
            self._done.append(worker.done(DIED, detail=how))
        elif not worker.ready:
            self._start_failed(worker, f"died before it was ready: {how}")
        else:
            log.warning("idle worker %d died: %s", worker.number, how)

    def _stop(self, worker: _Worker) -> None:
        """Remove the worker, ending its process if it still runs."""
        self._workers.remove(worker)
        process = worker.process
        if process.exitcode is None:
            process.terminate()
            process.join(STOP_GRACE_SECONDS)
            if process.exitcode is None:
                process.kill()
        process.join()
        worker.conn.close()

    def _start_failed(self, worker: _Worker, why: str) -> None:
        self._start_failures += 1
        log.error("worker %d could not start (%d in a row): %s", worker.number, self._start_failures, why)
        if self._start_failures >= MAX_START_FAILURES:
            raise WorkerStartError(f"{self._start_failures} workers in a row could not start; the last {why}")
