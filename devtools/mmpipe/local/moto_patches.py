"""Fixes to moto's hot paths that the local runtime depends on; behaviour unchanged, cost bounded.

Each fix replaces one moto function with one that gives the same answer cheaper, and names the moto
version it was measured on. `apply()` is idempotent and process-global (moto's backends are too).

- SQS ReceiveMessage (moto 5.2.5, 5.2.6): for every message it returns, moto checks the retention
  period through `get_queue_attributes`, which builds all of the queue's attributes, including three
  approximate counts that each scan the whole queue with two clock reads per message. Receiving 10
  messages from a queue holding 1,000 cost 1.07 s (cProfile: 2.4 million `unix_time` calls for 20
  receives); a demo delivery keeps 1,000 S3 events queued while it uploads, so the trigger fell a minute
  behind the upload. The fix reads the queue's `message_retention_period` attribute, the value
  `get_queue_attributes` returns for MessageRetentionPeriod.
- SQS clock reads (moto 5.2.5, 5.2.6): moto's `unix_time` builds two datetimes and subtracts them (8 us
  a call), and SQS reads the clock twice per queued message for every approximate count, and builds all
  three counts on every SendMessage (to read ContentBasedDeduplication): with a few hundred S3 events
  queued that was 36 s of the demo's single Python core. The SQS module's clock reads use
  `time.time()` instead (the same instant; 0.05 us).
- Server request routing (moto 5.2.5, 5.2.6): under the dispatcher's global lock, every request lists
  moto's package folder (`os.listdir` and an `isdir` per entry: a host such as
  `s3.us-east-1.amazonaws.com` is never a module name, so the whole listing is walked) and then tries the
  URL patterns of every service: 0.9 ms per request, serialising all requests of all threads. The
  answer depends only on the host (the folder and the patterns do not change while the process runs),
  so it is remembered per host.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import moto.sqs.models
from moto.core.utils import unix_time
from moto.moto_server.werkzeug_app import DomainDispatcherApplication
from moto.sqs.models import Message, SQSBackend

_APPLIED = False


def apply() -> None:
    global _APPLIED
    if _APPLIED:
        return
    SQSBackend.is_message_valid_based_on_retention_period = _message_retained  # type: ignore[method-assign]
    moto.sqs.models.unix_time = _unix_time
    moto.sqs.models.unix_time_millis = _unix_time_millis
    DomainDispatcherApplication.get_backend_for_host = _remembered(  # type: ignore[method-assign,assignment]
        DomainDispatcherApplication.get_backend_for_host
    )
    _APPLIED = True


def _message_retained(self: Any, queue_name: str, message: Message) -> bool:
    queue = self.get_queue(queue_name)
    retain_until = int(queue.message_retention_period) + message.sent_timestamp / 1000  # type: ignore[operator]
    return bool(retain_until > _unix_time())


def _unix_time(dt: datetime | None = None) -> float:
    return time.time() if dt is None else unix_time(dt)


def _unix_time_millis(dt: datetime | None = None) -> float:
    return _unix_time(dt) * 1000.0


def _remembered(get_backend_for_host: Callable[[Any, str | None], Any]) -> Callable[[Any, str | None], Any]:
    """The dispatcher's host -> backend lookup, computed once per host (for every dispatcher: their URL
    patterns all come from moto's backend index). Two threads racing on a new host both compute the same
    answer."""
    known: dict[str | None, Any] = {}

    def lookup(self: Any, host: str | None) -> Any:
        if host not in known:
            known[host] = get_backend_for_host(self, host)
        return known[host]

    return lookup
