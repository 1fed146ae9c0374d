"""Once-per-delivery steps: a delivery arrives as several runs (one per trigger batch), and the steps that
work on the whole lakehouse (the features rebuild, training) should run once, after the last run's data is
in - not once per run.

    if runs_still_before(run_id, "features"):   # marks this run's gate, then looks at the others
        ...defer: the last run to reach the gate does it

Each run that reaches a step's gate writes `runs/<run>/<step>-gate.json` first, then looks for work still on
its way: landing events still in the ingest queue (visible or being batched by the trigger: they become a
later run) and the pipeline's RUNNING executions (Step Functions ListExecutions) that have not written their
mark yet (they reach the gate after this run, with their data committed). Either way this run defers. Under
continuous ingestion the steps therefore wait for a quiet moment: a debounce, by design. Of runs arriving
together, each sees the other's mark and both go on (the step itself must tolerate that: features are
replaced whole, training is claimed with a conditional write). A run that fails before its gate leaves
the step to its redrive.
"""

from __future__ import annotations

from typing import Any, Literal

from botocore.exceptions import ClientError

from mmhealth import storage
from mmhealth.contracts import utc_now
from mmhealth.errors import PipelineError
from mmhealth.lakehouse.layout import gate_key
from mmhealth.settings import settings

Step = Literal["features", "training"]


def runs_still_before(run_id: str, step: Step) -> list[str]:
    """Mark this run at `step`'s gate; return the other running executions not there yet (sorted)."""
    cfg = settings()
    storage.write_json(cfg.lake_bucket, gate_key(run_id, step), {"run_id": run_id, "at": utc_now()})
    if not cfg.state_machine_arn:
        raise PipelineError(
            f"the {step} gate needs STATE_MACHINE_ARN (to see which runs are still ingesting)"
        )
    queued = _events_queued(cfg.ingest_queue_url)
    paginator = storage.client("stepfunctions").get_paginator("list_executions")
    running = [
        e["name"]
        for page in paginator.paginate(stateMachineArn=cfg.state_machine_arn, statusFilter="RUNNING")
        for e in page["executions"]
        if e["name"] != run_id
    ]
    later = sorted(n for n in running if read_optional(cfg.lake_bucket, gate_key(n, step)) is None)
    return later + ([f"<{queued} landing event(s) still queued for the trigger>"] if queued else [])


def _events_queued(queue_url: str | None) -> int:
    """Landing events in the ingest queue: waiting, or received by the trigger and not yet done."""
    if not queue_url:
        return 0
    attributes = storage.client("sqs").get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return sum(int(v) for v in attributes.values())


def read_optional(bucket: str, key: str) -> dict[str, Any] | None:
    """The JSON object at `key`, or None when there is none."""
    try:
        return dict(storage.read_json(bucket, key))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise
