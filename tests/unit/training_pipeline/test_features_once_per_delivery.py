"""The features step runs once per delivery: a run that is not the last of its delivery defers."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import boto3
import pytest

from mmhealth import storage
from mmhealth.handlers import features
from tests.conftest import FakeLambdaContext

CONTEXT = FakeLambdaContext()
CHANGED = [{"modality": "genomic", "commits": [{"table": "genomic.variants", "rows_added": 3}]}]


@pytest.fixture
def pipeline(aws: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> Any:
    sfn = boto3.client("stepfunctions", endpoint_url=aws.endpoint)
    definition = json.dumps(
        {"StartAt": "Ingest", "States": {"Ingest": {"Type": "Wait", "Seconds": 600, "End": True}}}
    )
    arn = sfn.create_state_machine(
        name="mmpipe-test-pipeline", definition=definition, roleArn="arn:aws:iam::123456789012:role/sfn"
    )["stateMachineArn"]
    monkeypatch.setenv("STATE_MACHINE_ARN", arn)
    return sfn, arn


def test_a_run_defers_while_another_is_still_ingesting_and_leaves_its_change_pending(
    aws: SimpleNamespace, pipeline: Any
) -> None:
    sfn, arn = pipeline
    sfn.start_execution(stateMachineArn=arn, name="d7-later")  # still ingesting: no features gate mark

    result = features.lambda_handler({"run_id": "d7-first", "modalities": CHANGED}, CONTEXT)

    assert result["skipped"] is True
    assert result["reason"].startswith("run d7-later (1 run(s) in all) is still ingesting")
    assert storage.read_json(aws.lake, "features/pending/d7-first") == {"run_id": "d7-first"}
    assert storage.read_json(aws.lake, "runs/d7-first/features-gate.json")["run_id"] == "d7-first"


def test_the_last_run_rebuilds_even_without_changes_of_its_own_when_others_deferred(
    aws: SimpleNamespace, pipeline: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sfn, arn = pipeline
    sfn.start_execution(stateMachineArn=arn, name="d7-first")  # deferred earlier: marked, still running
    storage.write_json(aws.lake, "runs/d7-first/features-gate.json", {"run_id": "d7-first"})
    storage.write_json(aws.lake, "features/pending/d7-first", {"run_id": "d7-first"})
    calls: list[bool] = []

    def rebuild(run_id: str, branches: list[dict[str, Any]], *, force: bool = False) -> dict[str, Any]:
        calls.append(force)
        return {"skipped": True, "reason": "stand-in"}

    monkeypatch.setattr(features.featurize, "rebuild_features", rebuild)
    features.lambda_handler({"run_id": "d7-last", "modalities": []}, CONTEXT)

    assert calls == [True]


def test_a_run_defers_while_landing_events_are_still_queued_for_the_trigger(
    aws: SimpleNamespace, pipeline: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given no other execution, but events in the ingest queue (they will become a later run)
    sqs = boto3.client("sqs", endpoint_url=aws.endpoint)
    queue = sqs.create_queue(QueueName="mmpipe-test-ingest")["QueueUrl"]
    sqs.send_message(QueueUrl=queue, MessageBody="{}")
    monkeypatch.setenv("INGEST_QUEUE_URL", queue)

    result = features.lambda_handler({"run_id": "d7-first", "modalities": CHANGED}, CONTEXT)

    assert result["skipped"] is True
    assert "<1 landing event(s) still queued for the trigger>" in result["reason"]
