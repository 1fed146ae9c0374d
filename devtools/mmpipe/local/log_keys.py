"""Each local invocation logs its own Lambda context keys, although handlers share one process.

In Lambda one process serves one invocation at a time, so Powertools keeps the keys that
`logger.inject_lambda_context` and `logger.append_keys` add (function_name, function_request_id,
correlation_id, ...) in one dict on the formatter, shared by every thread. Locally several invocations run
at once in threads of one process, and a line could carry another invocation's keys (seen in CI: a catalog
step logged as RadiomicsStartFunction).

While installed, keys added *during an invocation run by the invoker* go to Powertools' own thread-safe
store (a ContextVar, `thread_safe_append_keys`), which its formatter already lays over the shared keys;
each invocation runs in a fresh copy of the context, so its keys are its own and vanish when it returns.
Keys added outside an invocation (a Logger's own keys when its module is imported) stay shared, as in
Lambda. Deployed behaviour is untouched: this is only installed by the local runtime.

Limit: a line logged from a thread the handler itself starts (a ThreadPoolExecutor worker) has a context of
its own, so it carries the shared keys only (no function_name), where Lambda would show them.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter, clear_context_keys

T = TypeVar("T")

_in_invocation: contextvars.ContextVar[bool] = contextvars.ContextVar("mmpipe_in_invocation", default=False)
_PATCHED = ("append_keys", "remove_keys", "get_current_keys", "clear_state")
_originals: dict[str, Any] = {}
_installs = 0
_lock = threading.Lock()


def run_invocation(function: Callable[..., T], *args: Any) -> T:
    """Call `function(*args)` as one invocation: in a fresh copy of the context, with no invocation keys."""
    return contextvars.copy_context().run(_invocation, function, *args)


def _invocation(function: Callable[..., T], *args: Any) -> T:
    _in_invocation.set(True)
    clear_context_keys()  # a new dict in this context: the caller's keys are neither seen nor changed
    return function(*args)


def install() -> None:
    """Route keys added during invocations to the per-invocation store (reference-counted)."""
    global _installs
    with _lock:
        _installs += 1
        if _installs > 1:
            return
        for name in _PATCHED:
            _originals[name] = LambdaPowertoolsFormatter.__dict__[name]
        LambdaPowertoolsFormatter.append_keys = _append_keys  # type: ignore[method-assign]
        LambdaPowertoolsFormatter.remove_keys = _remove_keys  # type: ignore[method-assign]
        LambdaPowertoolsFormatter.get_current_keys = _get_current_keys  # type: ignore[method-assign]
        LambdaPowertoolsFormatter.clear_state = _clear_state  # type: ignore[method-assign]


def uninstall() -> None:
    global _installs
    with _lock:
        if _installs == 0:
            return
        _installs -= 1
        if _installs:
            return
        for name, original in _originals.items():
            setattr(LambdaPowertoolsFormatter, name, original)
        _originals.clear()


def _append_keys(self: LambdaPowertoolsFormatter, **additional_keys: Any) -> None:
    if _in_invocation.get():
        self.thread_safe_append_keys(**additional_keys)
    else:
        _originals["append_keys"](self, **additional_keys)


def _remove_keys(self: LambdaPowertoolsFormatter, keys: Iterable[str]) -> None:
    if _in_invocation.get():
        self.thread_safe_remove_keys(list(keys))
    else:
        _originals["remove_keys"](self, keys)


def _get_current_keys(self: LambdaPowertoolsFormatter) -> dict[str, Any]:
    shared: dict[str, Any] = _originals["get_current_keys"](self)
    if _in_invocation.get():
        return {**shared, **self.thread_safe_get_current_keys()}
    return shared


def _clear_state(self: LambdaPowertoolsFormatter) -> None:
    if _in_invocation.get():
        self.thread_safe_clear_keys()
    else:
        _originals["clear_state"](self)
