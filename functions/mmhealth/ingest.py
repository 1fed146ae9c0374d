"""Trigger logic: S3 events (via SQS) -> classified, deduplicated files -> run manifest -> one execution.

The run id is derived from the set of files (hash of their bucket+key+etag ids), and it is the execution
name: a replayed batch computes the same id, and Step Functions refuses a second execution of that name.
The ledger makes the same guarantee across batches (see mmhealth.ledger).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import unquote_plus

from aws_lambda_powertools.utilities.data_classes import S3Event
from botocore.exceptions import ClientError

from mmhealth import ledger, storage
from mmhealth.classify import SNIFF_BYTES, classify
from mmhealth.contracts import ManifestFile, S3Object
from mmhealth.errors import PipelineError
from mmhealth.naming import run_name
from mmhealth.observability import MetricUnit, logger, metrics
from mmhealth.settings import Settings

IO_WORKERS = 16  # concurrent S3 / DynamoDB requests per trigger invocation


def objects_in_message(body: str) -> list[S3Object]:
    """The S3 objects of one SQS message body (an S3 event notification; the s3:TestEvent has none)."""
    payload = json.loads(body)
    if payload.get("Event") == "s3:TestEvent" or "Records" not in payload:
        return []
    objects = []
    for record in S3Event(payload).records:
        if not record.event_name.startswith("ObjectCreated"):
            continue
        s3 = record.s3
        objects.append(
            S3Object(
                bucket=s3.bucket.name,
                key=unquote_plus(s3.get_object.key),
                etag=(s3.get_object.etag or "").strip('"'),
                size=s3.get_object.size or 0,
                version_id=s3.get_object.version_id,
                delivered_at=record.get("eventTime") or None,
                sequencer=s3.get_object.get("sequencer"),
            )
        )
    return objects


def classify_object(obj: S3Object) -> ManifestFile:
    """Sniff the object's first bytes; transient S3 errors propagate (the SQS record is retried)."""
    head = storage.head(obj.bucket, obj.key, SNIFF_BYTES) if obj.size else b""
    result = classify(obj.key, head, obj.size)
    return ManifestFile(object=obj, kind=result.kind, reason=result.reason)


def classify_messages(bodies: Mapping[str, str]) -> dict[str, list[ManifestFile] | Exception]:
    """Classify the objects of many SQS messages concurrently (the sniffing GETs are I/O-bound).

    Returns, per message id, its classified files or the exception that message failed with, so the
    caller can report exactly those messages as batch item failures.
    """

    def one(body: str) -> list[ManifestFile] | Exception:
        try:
            return [classify_object(obj) for obj in objects_in_message(body)]
        except Exception as exc:  # reported per message by the caller (partial batch failure)
            return exc

    with ThreadPoolExecutor(max_workers=IO_WORKERS) as pool:
        return dict(zip(bodies, pool.map(one, bodies.values()), strict=True))


def start_runs(files: list[ManifestFile], cfg: Settings) -> list[str]:
    """Record the files in their deliveries' collecting waves (opening one where none collects) and make
    sure each such wave's run is started. Returns the run names; raises on failure (the SQS batch is then
    retried whole: recording is idempotent, and so is starting a run by its name)."""
    if not files:
        return []
    if not (cfg.state_machine_arn and cfg.ledger_table):
        raise PipelineError("the trigger needs STATE_MACHINE_ARN and LEDGER_TABLE in its environment")
    by_delivery: dict[str, list[ManifestFile]] = defaultdict(list)
    for f in files:
        by_delivery[f.object.delivery].append(f)
    started: list[str] = []
    for delivery, mine in sorted(by_delivery.items()):
        joined = ledger.join(cfg.ledger_table, delivery, mine)
        metrics.add_metric(name="DuplicateFilesSkipped", unit=MetricUnit.Count, value=joined.duplicates)
        current = ledger.state(cfg.ledger_table, delivery)
        for wave in sorted(joined.waves):
            # An older or closed wave's run exists already: closing happens inside it.
            if wave == current.wave and current.collecting:
                started.append(_start_execution(cfg, delivery, wave))
        logger.info(
            "files recorded",
            extra={
                "delivery": delivery,
                "wave": current.wave,
                "files": joined.new,
                "duplicates": joined.duplicates,
            },
        )
    for kind, count in Counter(f.kind for f in files).items():
        metrics.add_metric(name=f"Files_{kind}", unit=MetricUnit.Count, value=count)
    return started


def _start_execution(cfg: Settings, delivery: str, wave: int) -> str:
    run_id = run_name(delivery, wave)
    execution_input = {"run_id": run_id, "delivery": delivery, "wave": wave, "config": cfg.run_config}
    sfn = storage.client("stepfunctions")
    try:
        sfn.start_execution(
            stateMachineArn=cfg.state_machine_arn, name=run_id, input=json.dumps(execution_input)
        )
        logger.info("run started", extra={"run_id": run_id})
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ExecutionAlreadyExists":
            storage.reraise_transient(exc)
            raise
        arn = f"{cfg.state_machine_arn}".replace(":stateMachine:", ":execution:") + f":{run_id}"
        status = sfn.describe_execution(executionArn=arn)["status"]
        if status != "RUNNING":
            # The run stopped while its wave still collected: its files wait for `mmpipe redrive --run`.
            logger.warning(
                "the collecting wave's run is not running", extra={"run_id": run_id, "status": status}
            )
            metrics.add_metric(name="WaveRunNotRunning", unit=MetricUnit.Count, value=1)
    return run_id
