"""`mmpipe redrive`: send the ingest DLQ's messages back to the ingest queue; re-drive a failed execution.

The AWS way first: SQS StartMessageMoveTask for the queue, Step Functions RedriveExecution for a run.
Where the endpoint does not implement them (moto, hence the local runtime), the fallbacks do the same with
older APIs and say so:
- the queue: receive / send / delete, batch by batch. A message sent but not deleted (a crash in between)
  is delivered twice; the trigger's ledger makes the second delivery a no-op.
- a run: a new execution with the failed one's input, named `<run>-r<n>`. The pipeline reads the run id
  from the input's `run_id`, never from the execution name, and every step is idempotent per run id
  (deterministic staged parts, quarantine keys and summary; catalog commits tagged with the run id).
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from mmpipe.status import FAILED, RunNotFoundError, attempts, find_runs, next_attempt_name, run_id_of
from mmpipe.targets import Target, TargetError

MAX_EXECUTION_NAME = 80
# What an endpoint answers for an operation it does not implement: the services' unknown-operation codes,
# and moto's server a bare HTTP 500 (its NotImplementedError, the message only in its own log).
_UNSUPPORTED_CODES = {"UnknownOperationException", "InvalidAction", "NotImplemented", "UnsupportedOperation"}


class NothingToRedriveError(RuntimeError):
    """The run is not in a state that can be re-driven (running or succeeded)."""


def unsupported(exc: ClientError, local: bool) -> bool:
    """True when the endpoint does not implement the operation (as opposed to refusing this request).

    A 500 counts only from the local runtime's moto server: from AWS it is a service error, raised.
    """
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return error.get("Code") in _UNSUPPORTED_CODES or status == 501 or (local and status == 500)


# --- a failed execution ----------------------------------------------------------------------------------


def redrive_run(target: Target, run: str, *, dry_run: bool = False, restart: bool = False) -> dict[str, Any]:
    """Re-drive the latest execution of a run (RedriveExecution; a new execution where unsupported, or
    always with `restart`). Raises RunNotFoundError, NothingToRedriveError; ClientError when the service
    refuses (e.g. ExecutionNotRedrivable: then `restart` starts a new execution instead)."""
    delivery, runs = find_runs(target, run)
    if delivery is not None:  # one run at a time: each wave has its own files and its own failure
        failed = [executions[-1]["name"] for executions in runs if executions[-1]["status"] in FAILED]
        raise NothingToRedriveError(
            f"{run} is a delivery; re-drive one of its runs: {', '.join(failed)}"
            if failed
            else f"{run} is a delivery, and none of its runs failed"
        )
    named = runs[0][-1]
    run_id = run_id_of(named)
    try:  # the newest attempt of the run, whichever of its executions was named
        latest = attempts(target, run_id)[-1]
    except RunNotFoundError:
        latest = named
    arn, status = latest["executionArn"], latest["status"]
    if status not in FAILED:
        raise NothingToRedriveError(f"{latest['name']} is {status}: only a failed, timed-out or aborted run")
    result: dict[str, Any] = {"run_id": run_id, "execution_arn": arn, "status": status, "dry_run": dry_run}
    if dry_run:
        result["plan"] = (
            f"start {next_attempt_name(target, run_id)} with the same input"
            if restart
            else "RedriveExecution (where the endpoint lacks it: a new execution "
            f"{next_attempt_name(target, run_id)} with the same input)"
        )
        return result
    sfn = target.client("stepfunctions")
    if not restart:
        try:
            response = sfn.redrive_execution(executionArn=arn)
        except ClientError as exc:
            if not unsupported(exc, target.local):
                raise
            result["fallback_reason"] = "the endpoint does not implement RedriveExecution"
        else:
            return result | {
                "method": "RedriveExecution",
                "redrive_date": response["redriveDate"].isoformat(),
            }
    return result | restart_execution(target, latest, run_id)


def restart_execution(target: Target, failed: dict[str, Any], run_id: str) -> dict[str, Any]:
    """A new execution of the run with the failed one's input, named `<run>-r<n>`."""
    name = next_attempt_name(target, run_id)
    if len(name) > MAX_EXECUTION_NAME:
        raise ValueError(f"execution name {name} is longer than {MAX_EXECUTION_NAME} characters")
    execution_input = failed.get("input") or json.dumps({"run_id": run_id})
    started = target.client("stepfunctions").start_execution(
        stateMachineArn=target.state_machine_arn, name=name, input=execution_input
    )
    return {
        "method": "StartExecution",
        "new_execution": name,
        "new_execution_arn": started["executionArn"],
    }


# --- the dead-letter queue -------------------------------------------------------------------------------


def queue_arn(sqs: Any, url: str) -> str:
    return str(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"])


def waiting_messages(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


def redrive_dlq(target: Target, *, dry_run: bool = False) -> dict[str, Any]:
    """Move the ingest DLQ's messages back to the ingest queue (StartMessageMoveTask; receive / send /
    delete where the endpoint lacks it). Raises TargetError when the target has no such queues."""
    if not (target.dead_letter_queue_url and target.ingest_queue_url):
        raise TargetError(f"{target.description} has no ingest queue and dead-letter queue")
    sqs = target.client("sqs")
    source, destination = target.dead_letter_queue_url, target.ingest_queue_url
    waiting = waiting_messages(sqs, source)
    result: dict[str, Any] = {"from": source, "to": destination, "messages": waiting, "dry_run": dry_run}
    if dry_run or waiting == 0:
        return result
    try:
        task = sqs.start_message_move_task(
            SourceArn=queue_arn(sqs, source), DestinationArn=queue_arn(sqs, destination)
        )
    except ClientError as exc:
        if not unsupported(exc, target.local):
            raise
        result["fallback_reason"] = "the endpoint does not implement StartMessageMoveTask"
    else:
        # Asynchronous: the task moves the messages after this returns (ListMessageMoveTasks shows progress).
        return result | {"method": "StartMessageMoveTask", "task_handle": task["TaskHandle"]}
    moved, failed = move_messages(sqs, source, destination)
    return result | {"method": "ReceiveMessage/SendMessage/DeleteMessage", "moved": moved, "failed": failed}


def move_messages(sqs: Any, source: str, destination: str, visibility_timeout: int = 60) -> tuple[int, int]:
    """Move every message from `source` to `destination`, ten at a time: send, then delete what was sent.

    Returns (moved, failed to send). A message that could not be sent stays in `source` and becomes
    visible again after `visibility_timeout`; the loop stops at the first empty receive.
    """
    moved = failed = 0
    while True:
        received = sqs.receive_message(
            QueueUrl=source,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            VisibilityTimeout=visibility_timeout,
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not received:
            return moved, failed
        entries = []
        for n, message in enumerate(received):
            entry: dict[str, Any] = {"Id": str(n), "MessageBody": message["Body"]}
            if message.get("MessageAttributes"):
                entry["MessageAttributes"] = message["MessageAttributes"]
            entries.append(entry)
        response = sqs.send_message_batch(QueueUrl=destination, Entries=entries)
        sent = {entry["Id"] for entry in response.get("Successful", [])}
        failed += len(received) - len(sent)
        deletions = [
            {"Id": str(n), "ReceiptHandle": message["ReceiptHandle"]}
            for n, message in enumerate(received)
            if str(n) in sent
        ]
        if deletions:
            sqs.delete_message_batch(QueueUrl=source, Entries=deletions)
        moved += len(deletions)
        if not sent:
            return moved, failed  # nothing goes through: do not spin on the same messages


def render(result: dict[str, Any]) -> str:
    """One or two lines a person reads."""
    if "run_id" in result:
        head = f"run {result['run_id']} ({result['status']}): "
        if result["dry_run"]:
            return head + f"would {result['plan']}"
        lines = []
        if result.get("fallback_reason"):
            lines.append(f"{result['fallback_reason']}; starting a new execution with the same input instead")
        if result["method"] == "RedriveExecution":
            lines.append(head + f"re-driven with RedriveExecution at {result['redrive_date']}")
        else:
            lines.append(head + f"started {result['new_execution']} (StartExecution, same input)")
        return "\n".join(lines)
    head = f"dead-letter queue {result['from']}: {result['messages']} message(s) waiting"
    if result["dry_run"]:
        return head + f"; would move them to {result['to']}"
    if "method" not in result:
        return head + "; nothing to move"
    if result["method"] == "StartMessageMoveTask":
        return head + f"; StartMessageMoveTask started (task {result['task_handle']}) to {result['to']}"
    lines = [head]
    if result.get("fallback_reason"):
        lines.append(f"{result['fallback_reason']}; moved with {result['method']}")
    lines.append(
        f"moved {result['moved']} to {result['to']}"
        + (f", {result['failed']} failed" if result["failed"] else "")
    )
    return "\n".join(lines)
