"""SQS event source mappings, polled the way the Lambda service does.

moto gap: an enabled SQS event source mapping makes moto's SQS invoke the function synchronously inside
SendMessage (inside the S3 PutObject that emitted the event), one message per invocation, through moto's
own Lambda (a canned reply without Docker) - and then deletes the messages. So the runtime reads the
mappings from ListEventSourceMappings, disables them in moto (UpdateEventSourceMapping Enabled=False;
ListEventSourceMappings therefore reports them Disabled locally) and polls each queue itself:

- batches honour BatchSize and MaximumBatchingWindowInSeconds (capped locally: see `max_batching_window`)
  and Lambda's 6 MB payload limit;
- the event has the Lambda SQS format (Records with messageId, receiptHandle, body, attributes,
  messageAttributes, md5OfBody, eventSource, eventSourceARN, awsRegion);
- after a successful invocation every message is deleted except those listed in `batchItemFailures`
  (only with FunctionResponseTypes ReportBatchItemFailures; an unknown or empty itemIdentifier fails the
  whole batch, as in Lambda); after a function error nothing is deleted. The queue's RedrivePolicy then
  moves a message received maxReceiveCount times to the DLQ (moto implements this on receive).
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mmpipe.local.aws import AwsClients

log = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = 6 * 1024 * 1024  # Lambda's synchronous invocation payload limit
_RECEIVE_MAX = 10  # SQS ReceiveMessage limit


@dataclass(frozen=True)
class SqsEventSource:
    """One SQS event source mapping, as the template configured it."""

    uuid: str
    function_arn: str
    queue_arn: str
    queue_url: str
    batch_size: int
    batching_window_seconds: float
    report_batch_item_failures: bool


def take_over_sqs_mappings(clients: AwsClients, function_names: set[str]) -> list[SqsEventSource]:
    """Read the enabled SQS mappings of the functions and disable them in moto (see module doc).

    Call it before anything sends to the queues (the S3 notification configuration sends an
    s3:TestEvent), or moto delivers those messages to its canned Lambda and deletes them.
    """
    lambda_ = clients.lambda_
    sources: list[SqsEventSource] = []
    paginator = lambda_.get_paginator("list_event_source_mappings")
    for page in paginator.paginate():
        for mapping in page["EventSourceMappings"]:
            queue_arn = mapping.get("EventSourceArn", "")
            function_name = mapping.get("FunctionArn", "").split(":")[6]
            if function_name not in function_names or mapping.get("State") != "Enabled":
                continue
            if not queue_arn.startswith("arn:aws:sqs:"):
                log.warning("event source %s is not SQS; not polled locally", queue_arn)
                continue
            _, _, _, _, account, queue_name = queue_arn.split(":")
            queue_url = clients.sqs.get_queue_url(QueueName=queue_name, QueueOwnerAWSAccountId=account)[
                "QueueUrl"
            ]
            sources.append(
                SqsEventSource(
                    uuid=mapping["UUID"],
                    function_arn=mapping["FunctionArn"],
                    queue_arn=queue_arn,
                    queue_url=queue_url,
                    batch_size=int(mapping.get("BatchSize", 10)),
                    batching_window_seconds=float(mapping.get("MaximumBatchingWindowInSeconds", 0)),
                    report_batch_item_failures="ReportBatchItemFailures"
                    in mapping.get("FunctionResponseTypes", []),
                )
            )
            lambda_.update_event_source_mapping(UUID=mapping["UUID"], Enabled=False)
    return sources


@dataclass(frozen=True)
class BatchOutcome:
    """What happened to one batch: message ids deleted and message ids left for a retry."""

    function_arn: str
    deleted: tuple[str, ...]
    retried: tuple[str, ...]
    function_error: str | None


class SqsPoller:
    """Polls one queue for one function in a background thread.

    `max_batching_window` caps MaximumBatchingWindowInSeconds (a local run should not wait 20 s for a
    batch to fill). `failure_visibility_timeout` (seconds; None keeps the queue's VisibilityTimeout as in
    the cloud) is set on messages that failed, so that local retries come quickly.
    `on_batch` is called after every batch (for records and tests).
    """

    def __init__(
        self,
        clients: AwsClients,
        source: SqsEventSource,
        *,
        max_batching_window: float = 1.0,
        failure_visibility_timeout: int | None = 1,
        poll_wait_seconds: int = 1,
        on_batch: Callable[[BatchOutcome], None] | None = None,
    ) -> None:
        self.source = source
        self._sqs = clients.sqs
        self._lambda = clients.lambda_
        self._window = min(source.batching_window_seconds, max_batching_window)
        self._failure_visibility = failure_visibility_timeout
        self._poll_wait = poll_wait_seconds
        self._on_batch = on_batch
        self._stop = threading.Event()
        self._held = threading.Event()
        self._state = threading.Condition()
        self._in_flight = False
        self._thread = threading.Thread(target=self._run, name=f"sqs-poller-{source.uuid[:8]}", daemon=True)
        self.errors: list[BaseException] = []

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the batch in flight (if any), then stop; a receive in progress ends within 1 s."""
        self._stop.set()
        self._thread.join(timeout)

    def hold(self) -> None:
        """Receive nothing more until `release` (a batch in flight finishes): messages pile up in the queue."""
        self._held.set()

    def release(self) -> None:
        self._held.clear()

    @property
    def idle(self) -> bool:
        """No batch in flight and the queue has no message at all (visible, in flight or delayed)."""
        with self._state:
            if self._in_flight:
                return False
        attributes = self._sqs.get_queue_attributes(
            QueueUrl=self.source.queue_url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
        # A received message counts as not visible until it is deleted (or made visible again), and
        # `_in_flight` is cleared only after the deletes, so there is no gap between the two checks.
        return all(int(v) == 0 for v in attributes.values())

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._held.is_set():
                time.sleep(0.1)
                continue
            try:
                self._poll_once()
            except Exception as error:  # keep polling: one failed call must not stop the event source
                self.errors.append(error)
                log.exception("SQS poller for %s failed; retrying", self.source.queue_arn)
                self._set_in_flight(False)
                time.sleep(0.5)

    def _set_in_flight(self, value: bool) -> None:
        with self._state:
            self._in_flight = value

    def _receive(self, count: int, wait_seconds: int) -> list[dict[str, Any]]:
        response = self._sqs.receive_message(
            QueueUrl=self.source.queue_url,
            MaxNumberOfMessages=min(count, _RECEIVE_MAX),
            WaitTimeSeconds=wait_seconds,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages: list[dict[str, Any]] = [dict(m) for m in response.get("Messages", [])]
        return messages

    def _poll_once(self) -> None:
        # Short long-polls, so that stop() is honoured within `poll_wait_seconds`.
        batch = self._receive(self.source.batch_size, wait_seconds=self._poll_wait)
        if not batch:
            return
        self._set_in_flight(True)
        try:
            self._fill(batch)
            self._invoke(batch)
        except Exception:
            # The Invoke call itself failed (not the function): the batch is retried like a failed one.
            if self._failure_visibility is not None:
                self._change_visibility(batch, self._failure_visibility)
            raise
        finally:
            self._set_in_flight(False)

    def _fill(self, batch: list[dict[str, Any]]) -> None:
        """Keep receiving until BatchSize, the (capped) batching window or the payload limit is reached."""
        deadline = time.monotonic() + self._window
        size = sum(len(m.get("Body", "")) for m in batch)
        while len(batch) < self.source.batch_size and size < MAX_PAYLOAD_BYTES and not self._stop.is_set():
            if time.monotonic() >= deadline:
                break
            more = self._receive(self.source.batch_size - len(batch), wait_seconds=0)
            if not more:
                # moto's ReceiveMessage scans the whole queue: poll the window sparingly.
                time.sleep(min(0.25, max(0.0, deadline - time.monotonic())))
                continue
            for message in more:
                if size + len(message.get("Body", "")) > MAX_PAYLOAD_BYTES:
                    # Put it back for the next batch instead of exceeding the limit.
                    self._change_visibility([message], 0)
                    continue
                batch.append(message)
                size += len(message.get("Body", ""))

    def _invoke(self, batch: list[dict[str, Any]]) -> None:
        event = {"Records": [sqs_record(m, self.source.queue_arn) for m in batch]}
        response = self._lambda.invoke(
            FunctionName=self.source.function_arn, Payload=json.dumps(event).encode()
        )
        body = response["Payload"].read()
        function_error = response.get("FunctionError")
        ids = [m["MessageId"] for m in batch]
        if function_error:
            failed = set(ids)
        elif self.source.report_batch_item_failures:
            failed = _batch_item_failures(body, set(ids))
        else:
            failed = set()
        done = [m for m in batch if m["MessageId"] not in failed]
        retry = [m for m in batch if m["MessageId"] in failed]
        self._delete(done)
        if retry and self._failure_visibility is not None:
            self._change_visibility(retry, self._failure_visibility)
        outcome = BatchOutcome(
            function_arn=self.source.function_arn,
            deleted=tuple(m["MessageId"] for m in done),
            retried=tuple(m["MessageId"] for m in retry),
            function_error=function_error,
        )
        if self._on_batch is not None:
            self._on_batch(outcome)

    def _delete(self, messages: list[dict[str, Any]]) -> None:
        for start in range(0, len(messages), _RECEIVE_MAX):
            chunk = messages[start : start + _RECEIVE_MAX]
            self._sqs.delete_message_batch(
                QueueUrl=self.source.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
            )

    def _change_visibility(self, messages: list[dict[str, Any]], timeout: int) -> None:
        for start in range(0, len(messages), _RECEIVE_MAX):
            chunk = messages[start : start + _RECEIVE_MAX]
            self._sqs.change_message_visibility_batch(
                QueueUrl=self.source.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": timeout}
                    for i, m in enumerate(chunk)
                ],
            )


def _batch_item_failures(body: bytes, batch_ids: set[str]) -> set[str]:
    """Message ids to retry from a ReportBatchItemFailures response (Lambda's rules)."""
    try:
        response = json.loads(body) if body else None
    except json.JSONDecodeError:
        return batch_ids  # not a valid response: Lambda treats the whole batch as failed
    if not isinstance(response, dict) or not response.get("batchItemFailures"):
        return set()  # null, {}, or an empty list: every message succeeded
    failures = response["batchItemFailures"]
    if not isinstance(failures, list):
        return batch_ids
    ids = set()
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if not identifier or identifier not in batch_ids:
            return batch_ids  # an empty or unknown identifier fails the whole batch
        ids.add(identifier)
    return ids


def sqs_record(message: dict[str, Any], queue_arn: str) -> dict[str, Any]:
    """One ReceiveMessage message as a record of Lambda's SQS event."""
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message.get("Body", ""),
        "attributes": dict(message.get("Attributes", {})),
        "messageAttributes": {
            name: _message_attribute(value) for name, value in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": queue_arn.split(":")[3],
    }
    if "MD5OfMessageAttributes" in message:
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return record


def _message_attribute(value: dict[str, Any]) -> dict[str, Any]:
    # Lambda spells the attribute fields in lower camel case and base64-encodes binary values.
    attribute: dict[str, Any] = {
        "stringListValues": list(value.get("StringListValues", [])),
        "binaryListValues": [_b64(v) for v in value.get("BinaryListValues", [])],
        "dataType": value["DataType"],
    }
    if "StringValue" in value:
        attribute["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        attribute["binaryValue"] = _b64(value["BinaryValue"])
    return attribute


def _b64(value: bytes | str) -> str:
    return base64.b64encode(value if isinstance(value, bytes) else value.encode()).decode()
