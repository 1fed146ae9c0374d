"""The trigger: S3 events via SQS -> classified, deduplicated files -> manifest -> one execution."""

from __future__ import annotations

import gzip
import json
from types import SimpleNamespace

import pytest

from mmhealth.contracts import RunManifest
from mmhealth.handlers import trigger
from mmpipe.lambda_events import s3_notification, sqs_event
from tests.conftest import stand_in_state_machine

VCF = (
    b"##fileformat=VCFv4.2\n##contig=<ID=chr1,length=248956422>\n"
    b'##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
    b"#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tP1\nchr1\t100\t.\tA\tG\t50\tPASS\t.\tGT\t0/1\n"
)


@pytest.fixture
def pipeline(aws: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    monkeypatch.setenv("STATE_MACHINE_ARN", stand_in_state_machine(aws, "mmpipe-test-pipeline"))
    monkeypatch.setenv("CHUNK_SIZE", "2")
    return aws


def _deliver(aws: SimpleNamespace, key: str, body: bytes) -> dict:
    aws.s3.put_object(Bucket=aws.landing, Key=key, Body=body)
    etag = aws.s3.head_object(Bucket=aws.landing, Key=key)["ETag"].strip('"')
    return s3_notification(aws.landing, key, len(body), etag)


def _executions(aws: SimpleNamespace) -> list[dict]:
    return aws.sfn.list_executions(stateMachineArn=aws.state_machine)["executions"]


def test_a_delivery_becomes_one_run_with_chunked_manifest(pipeline: SimpleNamespace, lambda_context) -> None:
    # Given three VCFs, an annotation VCF and an unknown file delivered together
    messages = [_deliver(pipeline, f"incoming/d1/P{i} sample.vcf.gz", gzip.compress(VCF)) for i in range(3)]
    messages.append(_deliver(pipeline, "incoming/d1/clinvar.vcf.gz", gzip.compress(VCF)))
    messages.append(_deliver(pipeline, "incoming/d1/notes.docx", b"PK\x03\x04 not a health file"))

    # When the trigger receives the batch
    response = trigger.lambda_handler(sqs_event(messages), lambda_context)

    # Then one execution starts, named by the run id, with its manifest in the lake
    assert response == {"batchItemFailures": []}
    (execution,) = _executions(pipeline)
    run_id = execution["name"]
    assert run_id.startswith("d1-")
    manifest = RunManifest.model_validate_json(
        pipeline.s3.get_object(Bucket=pipeline.lake, Key=f"runs/{run_id}/manifest.json")["Body"].read()
    )
    genomic = [c for c in manifest.chunks if c.modality == "genomic"]
    assert [c.files for c in genomic] == [2, 2]  # 4 genomic files, CHUNK_SIZE=2
    assert [u.object.key for u in manifest.unknown] == ["incoming/d1/notes.docx"]
    chunk = json.loads(pipeline.s3.get_object(Bucket=pipeline.lake, Key=genomic[0].key)["Body"].read())
    kinds = {f["object"]["key"]: f["kind"] for f in chunk["files"]}
    assert kinds["incoming/d1/P0 sample.vcf.gz"] == "genomic"  # the URL-encoded key was decoded
    # And the unknown file is a quarantine record with its reason
    keys = pipeline.s3.list_objects_v2(Bucket=pipeline.lake, Prefix=f"runs/{run_id}/quarantine/")["Contents"]
    record = json.loads(pipeline.s3.get_object(Bucket=pipeline.lake, Key=keys[0]["Key"])["Body"].read())
    assert (record["key"], record["stage"], record["reason"]) == (
        "incoming/d1/notes.docx",
        "classify",
        "unrecognised-type",
    )


def test_a_replayed_batch_or_a_redelivered_event_starts_no_second_run(
    pipeline: SimpleNamespace, lambda_context
) -> None:
    message = _deliver(pipeline, "incoming/d2/P9.vcf.gz", gzip.compress(VCF))
    trigger.lambda_handler(sqs_event([message]), lambda_context)

    # When the same batch is replayed, and the same event arrives again within another batch
    trigger.lambda_handler(sqs_event([message]), lambda_context)
    other = _deliver(pipeline, "incoming/d2/P10.vcf.gz", gzip.compress(VCF))
    trigger.lambda_handler(sqs_event([message, other]), lambda_context)

    # Then there are two runs: the first, and one holding only the new file
    executions = _executions(pipeline)
    assert len(executions) == 2
    newest = max(executions, key=lambda e: e["startDate"])["name"]
    manifest = json.loads(
        pipeline.s3.get_object(Bucket=pipeline.lake, Key=f"runs/{newest}/manifest.json")["Body"].read()
    )
    assert sum(c["files"] for c in manifest["chunks"]) == 1


def test_a_missing_object_fails_only_its_own_message(pipeline: SimpleNamespace, lambda_context) -> None:
    good = _deliver(pipeline, "incoming/d3/P1.vcf.gz", gzip.compress(VCF))
    gone = s3_notification(pipeline.landing, "incoming/d3/deleted.vcf.gz", 100, "abc")
    event = sqs_event([good, gone])

    response = trigger.lambda_handler(event, lambda_context)

    assert response["batchItemFailures"] == [{"itemIdentifier": event["Records"][1]["messageId"]}]
    assert len(_executions(pipeline)) == 1


def test_the_s3_test_event_is_a_no_op(pipeline: SimpleNamespace, lambda_context) -> None:
    test_event = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": pipeline.landing}
    assert trigger.lambda_handler(sqs_event([test_event]), lambda_context) == {"batchItemFailures": []}
    assert _executions(pipeline) == []


def test_when_the_execution_cannot_start_the_claims_are_released(
    pipeline: SimpleNamespace, lambda_context, monkeypatch: pytest.MonkeyPatch
) -> None:
    message = _deliver(pipeline, "incoming/d4/P1.vcf.gz", gzip.compress(VCF))
    monkeypatch.setenv("STATE_MACHINE_ARN", pipeline.state_machine + "-missing")
    with pytest.raises(Exception, match=r"StateMachineDoesNotExist|does not exist"):
        trigger.lambda_handler(sqs_event([message]), lambda_context)

    # When SQS redelivers after the fix, the file is not mistaken for a duplicate
    monkeypatch.setenv("STATE_MACHINE_ARN", pipeline.state_machine)
    trigger.lambda_handler(sqs_event([message]), lambda_context)
    assert len(_executions(pipeline)) == 1
