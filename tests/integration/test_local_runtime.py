"""The local runtime on the real template.yaml and the real state machine, with stand-in handlers.

The handlers here are fakes that speak the contracts (mmhealth.contracts), so these tests exercise the
runtime (stack, event source, invoker, Step Functions engine) and not the pipeline's logic; the real
handlers are exercised by the e2e tier.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import defaultdict
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote_plus

import boto3
import pytest

from mmhealth import ledger
from mmhealth.contracts import ChunkRef, ChunkStatus, FileKind, ManifestFile, RunConfig, S3Object
from mmhealth.errors import InvalidInputError, TransientError
from mmhealth.lakehouse.layout import RunPaths
from mmhealth.lakehouse.views import VIEWS
from mmhealth.naming import run_name
from mmpipe.local import LambdaContext, LocalRuntime
from mmpipe.local.event_sources import SqsEventSource

SQS_RECORD_KEYS = {
    "messageId",
    "receiptHandle",
    "body",
    "attributes",
    "messageAttributes",
    "md5OfBody",
    "eventSource",
    "eventSourceARN",
    "awsRegion",
}


class Deliveries:
    """What the stand-in trigger received: every SQS record, by object key (s3:TestEvent apart)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.by_key: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.test_events: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def record(self, event: dict[str, Any]) -> None:
        with self._lock:
            self.events.append(event)
            for record in event["Records"]:
                body = json.loads(record["body"])
                if body.get("Event") == "s3:TestEvent":
                    self.test_events.append(body)
                for s3_record in body.get("Records", []):
                    self.by_key[unquote_plus(s3_record["s3"]["object"]["key"])].append(record)

    def trigger(self, event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        self.record(event)
        return {"batchItemFailures": []}


# --- stand-ins for the pipeline handlers, shaped by the contracts -------------------------------------


def fake_collect(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return {"closed": True, "reason": "stand-in", "wait_seconds": 0, "wave": 1, "objects": 1, "missing": 0}


def fake_prepare(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    run_id = event["run_id"]
    chunks = [
        ChunkRef(
            run_id=run_id,
            modality="genomic",
            chunk_id=f"genomic-{i:04d}",
            key=RunPaths(run_id).chunk("genomic", i),
            files=1,
        ).model_dump()
        for i in range(int(event.get("chunks", 1)))
    ]
    output: dict[str, Any] = {
        "run_id": run_id,
        "config": RunConfig(poll_seconds=1, map_concurrency=2).model_dump(),
        "unknown": 0,
        "delivery": {"name": run_id, "wave": 1},
        "genomic": {"files": len(chunks), "chunks": chunks, "distributed": False},
    }
    for modality in ("clinical", "imaging"):
        output[modality] = {"files": 0, "chunks": [], "distributed": False}
    return output


def fake_import(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return ChunkStatus(
        chunk=ChunkRef.model_validate(event["chunk"]),
        status="COMPLETED",
        parts=1,
        rows=3,
        config=RunConfig.model_validate(event["config"]),
    ).model_dump()


def fake_import_in_progress(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    status = ChunkStatus.model_validate(fake_import(event, context))
    return status.model_copy(update={"status": "IN_PROGRESS", "wait_seconds": 1, "attempt": 1}).model_dump()


def fake_poll(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    status = ChunkStatus.model_validate(event)
    return status.model_copy(update={"status": "COMPLETED", "attempt": status.attempt + 1}).model_dump()


def fake_catalog(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    rows = sum(chunk["rows"] for chunk in event["chunks"])
    commits = [{"table": "genomic.variants", "rows_added": rows}]
    return {"run_id": event["run_id"], "modality": "genomic", "commits": commits, "quarantined": 0}


def fake_chunk_failure(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    ref = ChunkRef.model_validate(event["chunk"])
    return ChunkStatus(chunk=ref, status="FAILED", quarantined=ref.files).model_dump()


def fake_finalize(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    failed = [m for m in event["modalities"] if m.get("failed")]
    status = "FAILED" if failed else "SUCCEEDED"
    return {"run_id": event["run_id"], "status": status, "cause": json.dumps(failed) if failed else ""}


PIPELINE = {
    "CollectFunction": fake_collect,
    "PrepareFunction": fake_prepare,
    "GenomicImportFunction": fake_import,
    "GenomicPollFunction": fake_poll,
    "GenomicCatalogFunction": fake_catalog,
    "ChunkFailureFunction": fake_chunk_failure,
    "FinalizeFunction": fake_finalize,
}


# --- fixtures ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def startup_deliveries() -> Deliveries:
    return Deliveries()


@pytest.fixture(scope="module")
def runtime(startup_deliveries: Deliveries) -> Iterator[LocalRuntime]:
    with LocalRuntime(
        handler_overrides={"TriggerFunction": startup_deliveries.trigger, **PIPELINE},
        max_batching_window=0.3,
        failure_visibility_timeout=0,  # retry failed messages at once: the DLQ test takes 5 deliveries
    ) as local:
        local.drain(timeout=30)  # the s3:TestEvent sent when the bucket notification was configured
        yield local


@pytest.fixture
def deliveries(runtime: LocalRuntime) -> Iterator[Deliveries]:
    """A fresh recording trigger for one test; the queues are drained before and after."""
    runtime.drain(timeout=30)
    runtime.clear_invocations()
    recorder = Deliveries()
    with runtime.override_handlers({"TriggerFunction": recorder.trigger}):
        yield recorder
        runtime.drain(timeout=30)


def _queue_attributes(runtime: LocalRuntime, logical_id: str) -> dict[str, str]:
    sqs = runtime.client("sqs")
    url = runtime.physical_ids[logical_id]
    return dict(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"])


def _start(runtime: LocalRuntime, run_id: str, **extra: Any) -> str:
    sfn = runtime.client("stepfunctions")
    payload = {"run_id": run_id, "delivery": run_id, "wave": 1}
    execution = sfn.start_execution(
        stateMachineArn=runtime.state_machine_arn, name=run_id, input=json.dumps(payload | extra)
    )
    return str(execution["executionArn"])


# --- the stack -----------------------------------------------------------------------------------------


def test_the_stack_of_template_yaml_exists_with_what_moto_cloudformation_skips(runtime: LocalRuntime) -> None:
    s3 = runtime.client("s3")
    ids = runtime.physical_ids

    assert runtime.outputs["LandingBucketName"] == "mmpipe-dev-landing-123456789012-us-east-1"
    assert runtime.outputs["GlueDatabasePrefix"] == "mmpipe_dev_"
    for bucket in (runtime.landing_bucket, runtime.lake_bucket):
        assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
        assert s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]["BlockPublicAcls"]
        # The policies only deny plain HTTP, which is all the local endpoint speaks: left out locally.
        with pytest.raises(s3.exceptions.ClientError, match="NoSuchBucketPolicy"):
            s3.get_bucket_policy(Bucket=bucket)
    [rule] = s3.get_bucket_lifecycle_configuration(Bucket=runtime.lake_bucket)["Rules"]
    assert (rule["ID"], rule["Expiration"]["Days"]) == ("ExpireStaging", 30)
    ingest = _queue_attributes(runtime, "IngestQueue")
    dead_letter = _queue_attributes(runtime, "IngestDeadLetterQueue")
    [notification] = s3.get_bucket_notification_configuration(Bucket=runtime.landing_bucket)[
        "QueueConfigurations"
    ]
    assert notification["QueueArn"] == ingest["QueueArn"]
    assert notification["Events"] == ["s3:ObjectCreated:*"]
    assert notification["Filter"]["Key"]["FilterRules"] == [{"Name": "prefix", "Value": "incoming/"}]
    assert json.loads(ingest["RedrivePolicy"]) == {
        "deadLetterTargetArn": dead_letter["QueueArn"],
        "maxReceiveCount": 5,
    }
    assert ingest["VisibilityTimeout"] == "390"
    assert "AllowLandingBucketEvents" in ingest["Policy"]
    glue = runtime.client("glue")
    assert {d["Name"] for d in glue.get_databases()["DatabaseList"]} >= {
        "mmpipe_dev_genomic",
        "mmpipe_dev_ops",
    }
    ttl = runtime.client("dynamodb").describe_time_to_live(TableName=ids["IngestLedgerTable"])
    assert ttl["TimeToLiveDescription"] == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}
    alarms = runtime.client("cloudwatch").describe_alarms()["MetricAlarms"]
    assert {a["AlarmName"] for a in alarms} == {
        f"mmpipe-dev-{name}"
        for name in (
            "executions-failed",
            "ingest-dead-letters",
            "ingest-queue-stuck",
            "delivery-function-errors",
            "delivery-function-throttles",
            "ingest-function-errors",
            "lakehouse-and-job-function-errors",
            "ingest-function-throttles",
            "lakehouse-and-job-function-throttles",
            "radiomics-job-failed",
            "training-job-failed",
            "scoring-job-failed",
            "scoring-function-errors",
            "scoring-function-throttles",
            "health-import-job-failed",
        )
    }
    assert all(a["AlarmActions"] == [runtime.topic_arn] for a in alarms)
    # Only the Athena views are skipped: the local runtime has no Athena
    assert sorted(runtime.stack.skipped) == sorted(
        f"AthenaView{''.join(p.title() for p in view.name.split('_'))}" for view in VIEWS
    )


def test_the_state_machine_has_its_substitutions_resolved(runtime: LocalRuntime) -> None:
    sfn = runtime.client("stepfunctions")

    machine = sfn.describe_state_machine(stateMachineArn=runtime.state_machine_arn)

    assert machine["name"] == "mmpipe-dev-pipeline"
    assert "${" not in machine["definition"]
    definition = json.loads(machine["definition"])
    prepare = definition["States"]["Prepare"]["Parameters"]["FunctionName"]
    assert prepare == runtime.functions["PrepareFunction"].arn
    assert definition["States"]["NotifyRun"]["Parameters"]["TopicArn"] == runtime.topic_arn
    assert machine["loggingConfiguration"]["level"] == "ALL"


def test_functions_get_their_environment_and_the_mapping_its_settings(runtime: LocalRuntime) -> None:
    trigger = runtime.functions["TriggerFunction"]

    assert trigger.handler == "mmhealth.handlers.trigger.lambda_handler"
    assert trigger.environment["LEDGER_TABLE"] == runtime.physical_ids["IngestLedgerTable"]
    assert runtime.functions["PrepareFunction"].environment["CHUNK_SIZE"] == "25"  # a string, as in Lambda
    assert trigger.log_group_name == "/mmpipe/dev/trigger"
    assert os.environ["STATE_MACHINE_ARN"] == runtime.state_machine_arn
    assert os.environ["POLL_SECONDS"] == "1"
    assert os.environ["LAKE_BUCKET"] == runtime.lake_bucket
    assert os.environ["AWS_ENDPOINT_URL"] == runtime.endpoint_url
    [source] = runtime.event_sources
    assert source == SqsEventSource(
        uuid=runtime.physical_ids["TriggerFunctionLandingObjects"],
        function_arn=trigger.arn,
        queue_arn=_queue_attributes(runtime, "IngestQueue")["QueueArn"],
        queue_url=source.queue_url,
        batch_size=1000,
        batching_window_seconds=30.0,
        report_batch_item_failures=True,
    )
    # Disabled in moto, whose SQS would otherwise hand the messages to its own canned Lambda.
    mapping = runtime.client("lambda").get_event_source_mapping(UUID=source.uuid)
    assert mapping["State"] == "Disabled"


# --- S3 -> SQS -> trigger --------------------------------------------------------------------------------


def test_configuring_the_notification_sent_an_s3_test_event(startup_deliveries: Deliveries) -> None:
    [test_event] = startup_deliveries.test_events
    assert test_event["Bucket"] == "mmpipe-dev-landing-123456789012-us-east-1"


def test_an_object_under_incoming_reaches_the_trigger_as_an_sqs_event(
    runtime: LocalRuntime, deliveries: Deliveries
) -> None:
    put = runtime.put_object("incoming/delivery-1/sample one.vcf", b"##fileformat=VCFv4.2\n")
    runtime.put_object("elsewhere/not-an-event.txt", b"x")
    runtime.drain(timeout=30)

    assert set(deliveries.by_key) == {"incoming/delivery-1/sample one.vcf"}
    [record] = deliveries.by_key["incoming/delivery-1/sample one.vcf"]
    assert set(record) == SQS_RECORD_KEYS
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == _queue_attributes(runtime, "IngestQueue")["QueueArn"]
    assert record["awsRegion"] == "us-east-1"
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert {"SentTimestamp", "SenderId", "ApproximateFirstReceiveTimestamp"} <= set(record["attributes"])
    assert record["md5OfBody"] == hashlib.md5(record["body"].encode()).hexdigest()
    [s3_record] = json.loads(record["body"])["Records"]
    assert s3_record["eventName"] == "ObjectCreated:Put"
    assert s3_record["s3"]["bucket"]["name"] == runtime.landing_bucket
    assert s3_record["s3"]["object"]["eTag"] == put["ETag"].strip('"')
    [invocation] = [i for i in runtime.invocations if i.logical_id == "TriggerFunction"]
    assert invocation.ok


def test_batch_item_failures_are_retried_and_the_rest_deleted(
    runtime: LocalRuntime, deliveries: Deliveries
) -> None:
    def fail_retry_me_once(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        deliveries.record(event)
        failures = []
        for record in event["Records"]:
            keys = [
                unquote_plus(r["s3"]["object"]["key"]) for r in json.loads(record["body"]).get("Records", [])
            ]
            if "incoming/bif/retry-me.vcf" in keys and record["attributes"]["ApproximateReceiveCount"] == "1":
                failures.append({"itemIdentifier": record["messageId"]})
        return {"batchItemFailures": failures}

    with runtime.override_handlers({"TriggerFunction": fail_retry_me_once}):
        runtime.put_object("incoming/bif/retry-me.vcf", b"a")
        runtime.put_object("incoming/bif/fine.vcf", b"b")
        runtime.drain(timeout=30)

    retried = deliveries.by_key["incoming/bif/retry-me.vcf"]
    assert [r["attributes"]["ApproximateReceiveCount"] for r in retried] == ["1", "2"]
    assert len(deliveries.by_key["incoming/bif/fine.vcf"]) == 1
    retry_id = retried[0]["messageId"]
    assert any(retry_id in batch.retried for batch in runtime.batches)
    assert any(retry_id in batch.deleted for batch in runtime.batches)
    assert _queue_attributes(runtime, "IngestQueue")["ApproximateNumberOfMessages"] == "0"
    assert _queue_attributes(runtime, "IngestDeadLetterQueue")["ApproximateNumberOfMessages"] == "0"


def test_a_failing_trigger_sends_the_message_to_the_dlq_after_max_receive_count(
    runtime: LocalRuntime, deliveries: Deliveries
) -> None:
    def broken(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        deliveries.record(event)
        raise RuntimeError("ledger table unreachable")

    with runtime.override_handlers({"TriggerFunction": broken}):
        runtime.put_object("incoming/poison/file.vcf", b"p")
        runtime.drain(timeout=60)

    attempts = deliveries.by_key["incoming/poison/file.vcf"]
    assert [r["attributes"]["ApproximateReceiveCount"] for r in attempts] == ["1", "2", "3", "4", "5"]
    assert all(batch.function_error == "Unhandled" and not batch.deleted for batch in runtime.batches)
    sqs = runtime.client("sqs")
    dead_letter_url = runtime.outputs["IngestDeadLetterQueueUrl"]
    [dead] = sqs.receive_message(QueueUrl=dead_letter_url, WaitTimeSeconds=1)["Messages"]
    assert dead["Body"] == attempts[0]["body"]  # the original S3 event, untouched
    sqs.purge_queue(QueueUrl=dead_letter_url)


# --- the state machine -----------------------------------------------------------------------------------


@pytest.mark.integration
def test_a_delivery_runs_the_real_state_machine_to_success_and_notifies(
    runtime: LocalRuntime, deliveries: Deliveries
) -> None:
    contexts: list[dict[str, Any]] = []

    def trigger_that_starts_a_run(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        deliveries.record(event)
        if deliveries.by_key:
            # What the real trigger does, through its own boto3 client and the function's environment.
            boto3.client("stepfunctions").start_execution(
                stateMachineArn=os.environ["STATE_MACHINE_ARN"],
                name="run-happy",
                input=json.dumps({"run_id": "run-happy", "chunks": 2}),
            )
        return {"batchItemFailures": []}

    def prepare(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        contexts.append({"name": context.function_name, "remaining": context.get_remaining_time_in_millis()})
        return fake_prepare(event, context)

    inbox = runtime.subscribe("happy-path-inbox")
    overrides = {
        "TriggerFunction": trigger_that_starts_a_run,
        "PrepareFunction": prepare,
        "GenomicImportFunction": fake_import_in_progress,  # -> Wait (SecondsPath) -> Poll -> COMPLETED
    }
    with runtime.override_handlers(overrides):
        runtime.put_object("incoming/happy/sample.vcf", b"v")
        runtime.drain(timeout=30)
        [execution] = runtime.wait_for_executions(names=["run-happy"], timeout=60)

    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    assert json.loads(execution["output"])["status"] == "SUCCEEDED"
    [notification] = inbox.receive(count=1, timeout=10)
    assert notification.subject == "mmpipe run run-happy SUCCEEDED"
    assert notification.json()["run_id"] == "run-happy"
    counts: dict[str, int] = defaultdict(int)
    for invocation in runtime.invocations:
        counts[invocation.logical_id] += 1
    assert counts == {
        "TriggerFunction": 1,
        "CollectFunction": 1,
        "PrepareFunction": 1,
        "GenomicImportFunction": 2,
        "GenomicPollFunction": 2,
        "GenomicCatalogFunction": 1,
        "FeaturesFunction": 1,  # the real one: no clinical rows changed, so it returns "skipped"
        "TrainingStartFunction": 1,  # the real one: no dataset snapshot, so nothing to train
        "TrainingCatalogFunction": 1,  # no job: passes the skipped run through
        "ScoringStartFunction": 1,  # the real one: no dataset snapshot, so nothing to score
        "ScoringCatalogFunction": 1,  # no job: passes the skipped run through
        "FinalizeFunction": 1,
    }
    assert contexts == [
        {"name": runtime.functions["PrepareFunction"].name, "remaining": contexts[0]["remaining"]}
    ]
    assert 0 < contexts[0]["remaining"] <= 30_000  # PrepareFunction's Timeout is 30 s
    history = runtime.execution_history(execution["executionArn"])
    waits = [e for e in history if e["type"] == "WaitStateEntered"]
    assert len(waits) == 2  # one per chunk


@pytest.mark.integration
def test_a_transient_error_is_retried_by_the_state_machine(runtime: LocalRuntime) -> None:
    attempts: list[str] = []

    def flaky_import(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        attempts.append(context.aws_request_id)
        if len(attempts) == 1:
            raise TransientError("HealthOmics throttled the request")
        return fake_import(event, context)

    runtime.clear_invocations()
    with runtime.override_handlers({"GenomicImportFunction": flaky_import}):
        execution = runtime.wait_for_execution(_start(runtime, "run-retry"), timeout=60)

    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    assert len(attempts) == 2
    history = runtime.execution_history(execution["executionArn"])
    failed = [e["taskFailedEventDetails"] for e in history if e["type"] == "TaskFailed"]
    assert [f["error"] for f in failed] == ["TransientError"]
    assert json.loads(failed[0]["cause"])["errorMessage"] == "HealthOmics throttled the request"
    entered = [e["stateEnteredEventDetails"]["name"] for e in history if e["type"] == "TaskStateEntered"]
    assert entered.count("ImportGenomicChunk") == 1  # one state, two attempts: the Retry, not a Catch
    assert "RecordGenomicChunkFailure" not in entered
    assert [i.error_type for i in runtime.invocations if i.logical_id == "GenomicImportFunction"] == [
        "TransientError",
        None,
    ]


@pytest.mark.integration
def test_an_invalid_input_is_caught_and_recorded_by_the_chunk_failure_handler(runtime: LocalRuntime) -> None:
    failures: list[dict[str, Any]] = []

    def rejecting_import(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        raise InvalidInputError("vcf-header", "sample.vcf: no #CHROM line")

    def chunk_failure(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        failures.append(event)
        return fake_chunk_failure(event, context)

    runtime.clear_invocations()
    with runtime.override_handlers(
        {"GenomicImportFunction": rejecting_import, "ChunkFailureFunction": chunk_failure}
    ):
        execution = runtime.wait_for_execution(_start(runtime, "run-catch"), timeout=60)

    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    [failure] = failures
    assert failure["chunk"]["chunk_id"] == "genomic-0000"
    assert failure["error"]["Error"] == "InvalidInputError"
    assert json.loads(failure["error"]["Cause"])["errorMessage"] == "vcf-header: sample.vcf: no #CHROM line"
    # Not retried: InvalidInputError is not in the Retry's ErrorEquals.
    assert [i.logical_id for i in runtime.invocations].count("GenomicImportFunction") == 1
    history = runtime.execution_history(execution["executionArn"])
    entered = [e["stateEnteredEventDetails"]["name"] for e in history if e["type"].endswith("StateEntered")]
    assert "RecordGenomicChunkFailure" in entered
    catalog_input = next(
        json.loads(e["stateEnteredEventDetails"]["input"])
        for e in history
        if e["type"] == "TaskStateEntered" and e["stateEnteredEventDetails"]["name"] == "CatalogGenomic"
    )
    assert catalog_input["genomic_chunks"] == [
        {"chunk_id": "genomic-0000", "status": "FAILED", "rows": 0, "quarantined": 1}
    ]


@pytest.mark.integration
def test_a_5000_file_delivery_is_one_run_with_a_bounded_history(runtime: LocalRuntime) -> None:
    # Given a delivery of 5,000 objects recorded in its first wave and closed by its completion marker
    kinds: list[FileKind] = ["genomic"] * 2000 + ["clinical"] * 1000 + ["imaging"] * 2000
    files = [
        ManifestFile(
            object=S3Object(
                bucket=runtime.landing_bucket, key=f"incoming/big/f{i:05d}", etag=f"e{i}", size=1
            ),
            kind=kind,
        )
        for i, kind in enumerate(kinds)
    ]
    marker = S3Object(bucket=runtime.landing_bucket, key="incoming/big/_COMPLETE", etag="m", size=0)
    runtime.put_object(marker.key, b"")  # empty: complete once recorded
    table = runtime.physical_ids["IngestLedgerTable"]
    joined = ledger.join(table, "big", [*files, ManifestFile(object=marker, kind="marker")])
    assert (joined.waves, joined.new) == ({1}, 5001)

    # When its run goes through the real Collect and Prepare (chunks of 25) with stand-in imports
    def modality_catalog(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        return fake_catalog(event, context) | {"modality": event["modality"]}

    real = {name: runtime.real_handler(name) for name in ("CollectFunction", "PrepareFunction")}
    fakes = (("ImportFunction", fake_import), ("CatalogFunction", modality_catalog))
    stand_ins = {f"{p}{step}": fake for p in ("Genomic", "Clinical", "Imaging") for step, fake in fakes}
    radiomics_off = {"radiomics": False, "training": False, "map_concurrency": 20}
    runtime.clear_invocations()
    with runtime.override_handlers(real | stand_ins):
        arn = runtime.client("stepfunctions").start_execution(
            stateMachineArn=runtime.state_machine_arn,
            name=run_name("big", 1),
            input=json.dumps(
                {"run_id": run_name("big", 1), "delivery": "big", "wave": 1, "config": radiomics_off}
            ),
        )["executionArn"]
        execution = runtime.wait_for_execution(arn, timeout=300)

    # Then the run succeeds with 200 chunks in child executions, and its own history stays small
    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    history = runtime.execution_history(arn)
    assert len(history) <= 2000, len(history)
    started = [e for e in history if e["type"] == "MapRunStarted"]
    assert len(started) == 3  # one Map run per modality
    called = [i.logical_id for i in runtime.invocations]
    assert [called.count(f"{p}CatalogFunction") for p in ("Genomic", "Clinical", "Imaging")] == [1, 1, 1]
    assert [called.count(f"{p}ImportFunction") for p in ("Genomic", "Clinical", "Imaging")] == [80, 40, 80]
    print(f"history events of the 5,000-file run: {len(history)}")
