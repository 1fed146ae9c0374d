"""Trigger logic: S3 events (via SQS) -> classified, deduplicated files -> run manifest -> one execution.

The run id is derived from the set of files (hash of their bucket+key+etag ids), and it is the execution
name: a replayed batch computes the same id, and Step Functions refuses a second execution of that name.
The ledger makes the same guarantee across batches (see mmhealth.ledger).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import unquote_plus

from aws_lambda_powertools.utilities.data_classes import S3Event
from botocore.exceptions import ClientError

from mmhealth import ledger, quarantine, storage
from mmhealth.classify import SNIFF_BYTES, classify
from mmhealth.contracts import (
    KIND_TO_MODALITY,
    MODALITIES,
    Chunk,
    ChunkRef,
    ManifestFile,
    RunManifest,
    S3Object,
    utc_now,
)
from mmhealth.errors import PipelineError
from mmhealth.lakehouse.layout import RunPaths
from mmhealth.observability import MetricUnit, logger, metrics
from mmhealth.settings import Settings

_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
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


def run_id_for(files: Iterable[ManifestFile]) -> str:
    """`<delivery>-<hash>`: deterministic for a set of objects, a valid execution name (<= 80 chars)."""
    files = list(files)
    digest = hashlib.sha256("\n".join(sorted(f.object.object_id for f in files)).encode()).hexdigest()
    deliveries = Counter(f.object.delivery for f in files)
    delivery = _NAME_UNSAFE.sub("-", deliveries.most_common(1)[0][0]).strip("-")[:50] or "delivery"
    return f"{delivery}-{digest[:20]}"


def build_manifest(run_id: str, files: list[ManifestFile], cfg: Settings, landing_bucket: str) -> RunManifest:
    """Write each modality's chunks and the manifest to the lake bucket; return the manifest."""
    paths = RunPaths(run_id)
    refs: list[ChunkRef] = []
    for modality in MODALITIES:
        mine = sorted(
            (f for f in files if KIND_TO_MODALITY.get(f.kind) == modality), key=lambda f: f.object.key
        )
        for index, start in enumerate(range(0, len(mine), cfg.chunk_size)):
            chunk = Chunk(
                chunk_id=f"{modality}-{index:04d}",
                modality=modality,
                files=mine[start : start + cfg.chunk_size],
            )
            key = paths.chunk(modality, index)
            storage.write_json(cfg.lake_bucket, key, chunk.model_dump())
            refs.append(
                ChunkRef(
                    run_id=run_id, modality=modality, chunk_id=chunk.chunk_id, key=key, files=len(chunk.files)
                )
            )
    manifest = RunManifest(
        run_id=run_id,
        created_at=utc_now(),
        landing_bucket=landing_bucket,
        lake_bucket=cfg.lake_bucket,
        deliveries=sorted({f.object.delivery for f in files}),
        chunks=refs,
        unknown=[f for f in files if f.kind == "unknown"],
    )
    storage.write_json(cfg.lake_bucket, paths.manifest, manifest.model_dump())
    return manifest


def start_run(files: list[ManifestFile], cfg: Settings) -> str | None:
    """Claim the new files, write the manifest and start the execution. Returns the run id (None: no-op).

    On failure the claims are released and the error propagates, so the SQS batch is retried whole.
    """
    if not files:
        return None
    if not (cfg.state_machine_arn and cfg.ledger_table):
        raise PipelineError("the trigger needs STATE_MACHINE_ARN and LEDGER_TABLE in its environment")
    unique = list({f.object.object_id: f for f in files}.values())
    run_id = run_id_for(unique)
    claimed = _claim_all(cfg, unique, run_id)
    duplicates = len(unique) - len(claimed)
    metrics.add_metric(name="DuplicateFilesSkipped", unit=MetricUnit.Count, value=duplicates)
    if not claimed:
        logger.info("every object was already ingested; nothing to start", extra={"duplicates": duplicates})
        return None
    if len(claimed) != len(unique):  # the run is what is new in this batch
        ledger.release(cfg.ledger_table, [f.object for f in claimed], run_id)
        run_id = run_id_for(claimed)
        claimed = _claim_all(cfg, claimed, run_id)
        if not claimed:
            return None
    try:
        landing = claimed[0].object.bucket
        manifest = build_manifest(run_id, claimed, cfg, landing)
        for unknown in manifest.unknown:
            quarantine.record(
                cfg.lake_bucket,
                run_id,
                unknown.object,
                modality="unknown",
                stage="classify",
                reason=(unknown.reason or "unrecognised-type").split(":", 1)[0],
                detail=unknown.reason or "unrecognised file type",
            )
        _start_execution(cfg, run_id)
    except Exception:
        ledger.release(cfg.ledger_table, [f.object for f in claimed], run_id)
        raise
    for kind, count in Counter(f.kind for f in claimed).items():
        metrics.add_metric(name=f"Files_{kind}", unit=MetricUnit.Count, value=count)
    logger.info(
        "run started",
        extra={
            "run_id": run_id,
            "files": len(claimed),
            "duplicates": duplicates,
            "chunks": len(manifest.chunks),
        },
    )
    return run_id


def _claim_all(cfg: Settings, files: list[ManifestFile], run_id: str) -> list[ManifestFile]:
    """The files this run now owns (conditional puts, issued concurrently)."""
    table = cfg.ledger_table or ""
    exists = _execution_exists(cfg)
    with ThreadPoolExecutor(max_workers=IO_WORKERS) as pool:
        owned = list(pool.map(lambda f: ledger.claim(table, f.object, run_id, exists), files))
    return [f for f, mine in zip(files, owned, strict=True) if mine]


def _start_execution(cfg: Settings, run_id: str) -> None:
    execution_input = {
        "run_id": run_id,
        "manifest": {"bucket": cfg.lake_bucket, "key": RunPaths(run_id).manifest},
        "config": cfg.run_config,
    }
    try:
        storage.client("stepfunctions").start_execution(
            stateMachineArn=cfg.state_machine_arn, name=run_id, input=json.dumps(execution_input)
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ExecutionAlreadyExists":
            logger.info("execution already exists for this run; replay ignored", extra={"run_id": run_id})
            return
        storage.reraise_transient(exc)
        raise


def _execution_exists(cfg: Settings) -> Callable[[str], bool]:
    def exists(run_id: str) -> bool:
        arn = f"{cfg.state_machine_arn}".replace(":stateMachine:", ":execution:") + f":{run_id}"
        try:
            storage.client("stepfunctions").describe_execution(executionArn=arn)
            return True
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ExecutionDoesNotExist":
                return False
            raise

    return exists
