"""The trigger: S3 events via SQS -> objects recorded under their delivery's wave -> one run per wave."""

from __future__ import annotations

import gzip
import json
from types import SimpleNamespace

import pytest

from mmhealth import runs, waves
from mmhealth.contracts import ManifestFile, RunConfig, RunManifest
from mmhealth.handlers import trigger
from mmhealth.naming import delivery_slug
from mmhealth.settings import settings
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


def _close_and_prepare(aws: SimpleNamespace, run_id: str) -> RunManifest:
    """What the run's first states do: Collect closes the wave (quiet period 0), Prepare writes the manifest."""
    delivery, wave = run_id.rsplit("-w", 1)
    collected = waves.collect(run_id, delivery, int(wave), RunConfig(delivery_quiet_seconds=0), settings())
    assert collected["closed"]
    runs.prepare({"run_id": run_id, "delivery": delivery, "wave": int(wave)}, settings())
    body = aws.s3.get_object(Bucket=aws.lake, Key=f"runs/{run_id}/manifest.json")["Body"].read()
    return RunManifest.model_validate_json(body)


def test_a_delivery_becomes_one_run_with_chunked_manifest(pipeline: SimpleNamespace, lambda_context) -> None:
    # Given three VCFs, an annotation VCF and an unknown file delivered together
    messages = [_deliver(pipeline, f"incoming/d1/P{i} sample.vcf.gz", gzip.compress(VCF)) for i in range(3)]
    messages.append(_deliver(pipeline, "incoming/d1/clinvar.vcf.gz", gzip.compress(VCF)))
    messages.append(_deliver(pipeline, "incoming/d1/notes.docx", b"PK\x03\x04 not a health file"))

    # When the trigger receives them in two batches
    assert trigger.lambda_handler(sqs_event(messages[:2]), lambda_context) == {"batchItemFailures": []}
    assert trigger.lambda_handler(sqs_event(messages[2:]), lambda_context) == {"batchItemFailures": []}

    # Then one execution runs the delivery's first wave, and its manifest has every file once
    (execution,) = _executions(pipeline)
    assert execution["name"] == "d1-w1"
    manifest = _close_and_prepare(pipeline, "d1-w1")
    genomic = [c for c in manifest.chunks if c.modality == "genomic"]
    assert [c.files for c in genomic] == [2, 2]  # 4 genomic files, CHUNK_SIZE=2
    assert [u.object.key for u in manifest.unknown] == ["incoming/d1/notes.docx"]
    chunk = json.loads(pipeline.s3.get_object(Bucket=pipeline.lake, Key=genomic[0].key)["Body"].read())
    kinds = {f["object"]["key"]: f["kind"] for f in chunk["files"]}
    assert kinds["incoming/d1/P0 sample.vcf.gz"] == "genomic"  # the URL-encoded key was decoded
    # And the unknown file is a quarantine record with its reason
    keys = pipeline.s3.list_objects_v2(Bucket=pipeline.lake, Prefix="runs/d1-w1/quarantine/")["Contents"]
    record = json.loads(pipeline.s3.get_object(Bucket=pipeline.lake, Key=keys[0]["Key"])["Body"].read())
    assert (record["key"], record["stage"], record["reason"]) == (
        "incoming/d1/notes.docx",
        "classify",
        "unrecognised-type",
    )


def test_replays_start_no_second_run_and_late_files_make_a_follow_up_wave(
    pipeline: SimpleNamespace, lambda_context
) -> None:
    message = _deliver(pipeline, "incoming/d2/P9.vcf.gz", gzip.compress(VCF))
    trigger.lambda_handler(sqs_event([message]), lambda_context)
    trigger.lambda_handler(sqs_event([message]), lambda_context)  # the same batch, replayed
    _close_and_prepare(pipeline, "d2-w1")

    # When the same event arrives again beside a file that came after the wave closed
    other = _deliver(pipeline, "incoming/d2/P10.vcf.gz", gzip.compress(VCF))
    trigger.lambda_handler(sqs_event([message, other]), lambda_context)

    # Then there are two runs: the first wave, and a follow-up holding only the new file
    assert sorted(e["name"] for e in _executions(pipeline)) == ["d2-w1", "d2-w2"]
    manifest = _close_and_prepare(pipeline, "d2-w2")
    assert [f.object.key for c in manifest.chunks for f in _chunk_files(pipeline, c.key)] == [
        "incoming/d2/P10.vcf.gz"
    ]


def _chunk_files(aws: SimpleNamespace, key: str) -> list[ManifestFile]:
    body = json.loads(aws.s3.get_object(Bucket=aws.lake, Key=key)["Body"].read())
    return [ManifestFile.model_validate(f) for f in body["files"]]


def test_each_delivery_of_a_batch_gets_its_own_run(pipeline: SimpleNamespace, lambda_context) -> None:
    messages = [
        _deliver(pipeline, "incoming/site-a/P1.vcf.gz", gzip.compress(VCF)),
        _deliver(pipeline, "incoming/site b/P2.vcf.gz", gzip.compress(VCF)),
        _deliver(pipeline, "incoming/P3.vcf.gz", gzip.compress(VCF)),  # in no delivery folder
    ]
    trigger.lambda_handler(sqs_event(messages), lambda_context)
    names = sorted(e["name"] for e in _executions(pipeline))
    assert names == sorted(["site-a-w1", f"{delivery_slug('site b')}-w1", "loose-w1"])


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


def test_when_the_execution_cannot_start_the_retry_starts_it(
    pipeline: SimpleNamespace, lambda_context, monkeypatch: pytest.MonkeyPatch
) -> None:
    message = _deliver(pipeline, "incoming/d4/P1.vcf.gz", gzip.compress(VCF))
    monkeypatch.setenv("STATE_MACHINE_ARN", pipeline.state_machine + "-missing")
    with pytest.raises(Exception, match=r"StateMachineDoesNotExist|does not exist"):
        trigger.lambda_handler(sqs_event([message]), lambda_context)

    # When SQS redelivers after the fix, the recorded file's wave gets its run
    monkeypatch.setenv("STATE_MACHINE_ARN", pipeline.state_machine)
    trigger.lambda_handler(sqs_event([message]), lambda_context)
    assert [e["name"] for e in _executions(pipeline)] == ["d4-w1"]
