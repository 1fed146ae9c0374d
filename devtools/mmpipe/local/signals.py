"""SIGINT and SIGTERM as a clean unwind of a local command (`mmpipe local run`), and the start-up reap.

A process that dies of SIGTERM skips every `finally` and `with` exit, so the local runtime's stop - which
ends the job subprocesses and their workers and removes their folders - would not run. Here both signals
raise `Stopped` (a BaseException, as KeyboardInterrupt is, so no `except Exception` swallows it) in the
main thread: the command's `with LocalRuntime(...)` unwinds and stops the runtime, and the command exits
128 + the signal (130, 143), as shells expect of a process stopped by a signal.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import ParamSpec

from mmpipe.local.job_processes import reap_orphaned_jobs

_P = ParamSpec("_P")


class Stopped(BaseException):
    """SIGINT or SIGTERM arrived: unwinds like Ctrl-C's KeyboardInterrupt (a BaseException, so no
    `except Exception` swallows it), whichever of the two it was."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextmanager
def signals_unwind() -> Iterator[None]:
    """In the block, the first SIGINT / SIGTERM raises Stopped in the main thread; a second one only says
    that the clean-up is under way (it ends the jobs: seconds), a third ends the process at once (what it
    leaves is reaped by the next start). Outside the main thread (no signal handlers there): no change."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = 0

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal received
        received += 1
        if received == 1:
            raise Stopped(signum)
        if received == 2:
            print("stopping: ending the local jobs (again to quit at once)", file=sys.stderr, flush=True)
            return
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    with handling_stop_signals(handler):
        yield


@contextmanager
def handling_stop_signals(handler: Callable[[int, FrameType | None], None]) -> Iterator[None]:
    """`handler` for SIGINT and SIGTERM in the block; the previous handlers again after it."""
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, before in previous.items():
            signal.signal(sig, before)


def exits_cleanly_on_signals(function: Callable[_P, int]) -> Callable[_P, int]:
    """`function` (a command's main flow, which stops its runtime on the way out) after reaping what killed
    runs left, with SIGINT / SIGTERM unwinding it (`signals_unwind`); returns 128 + the signal then."""

    @functools.wraps(function)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> int:
        cleaned = reap_orphaned_jobs()
        if cleaned is not None:
            print(cleaned.line(), file=sys.stderr, flush=True)
        try:
            with signals_unwind():
                return function(*args, **kwargs)
        except Stopped as stopped:
            print(f"stopped by {stopped}", file=sys.stderr, flush=True)
            return 128 + stopped.signum

    return wrapper
