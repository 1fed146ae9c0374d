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
"""

from __future__ import annotations

from typing import Any

from moto.core.utils import unix_time
from moto.sqs.models import Message, SQSBackend

_APPLIED = False


def apply() -> None:
    global _APPLIED
    if _APPLIED:
        return
    SQSBackend.is_message_valid_based_on_retention_period = _message_retained  # type: ignore[method-assign]
    _APPLIED = True


def _message_retained(self: Any, queue_name: str, message: Message) -> bool:
    queue = self.get_queue(queue_name)
    retain_until = int(queue.message_retention_period) + message.sent_timestamp / 1000  # type: ignore[operator]
    return bool(retain_until > unix_time())
