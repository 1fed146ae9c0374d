"""Optional tier: the real ASL in AWS Step Functions Local (Docker) with a MockConfigFile.

A second, independent engine for the same definition: each Lambda task is answered by a mocked response
(happy path, a throttled import retried, an import failure caught into the chunk-failure state). Skipped
when no Docker engine answers (CI and the project's machines have none); run it where one does:

    .venv/bin/pytest tests/docker -q
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from tests.conftest import REPO, _free_port

pytestmark = pytest.mark.docker

IMAGE = "amazon/aws-stepfunctions-local"
ACCOUNT = "123456789012"
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:{}"


def _docker_engine() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0


if not _docker_engine():
    pytest.skip("no Docker engine: Step Functions Local tier skipped", allow_module_level=True)


def _definition() -> str:
    """The ASL with its DefinitionSubstitutions filled as CloudFormation would."""
    text = (REPO / "statemachines" / "pipeline.asl.json").read_text()
    for name in (
        "Collect",
        "Prepare",
        "GenomicImport",
        "GenomicPoll",
        "GenomicCatalog",
        "ChunkFailure",
        "Finalize",
    ):
        text = text.replace("${" + name + "FunctionArn}", FUNCTION_ARN.format(name))
    return text.replace("${RunNotificationTopicArn}", f"arn:aws:sns:us-east-1:{ACCOUNT}:runs")


RUN_ID = "d1-w1"
CHUNK = {"run_id": RUN_ID, "modality": "genomic", "chunk_id": "genomic-0000", "key": "k", "files": 2}
CONFIG = {"poll_seconds": 1, "poll_backoff_rate": 1.5, "poll_max_seconds": 5, "poll_max_attempts": 5,
          "map_concurrency": 2, "genomic_backend": "lakehouse"}  # fmt: skip


def _ok(payload: dict[str, Any]) -> dict[str, Any]:
    return {"0": {"Return": {"StatusCode": 200, "Payload": payload}}}


MOCK_CONFIG: dict[str, Any] = {
    "StateMachines": {
        "pipeline": {
            "TestCases": {
                "Happy": {
                    "Collect": "Collected",
                    "Prepare": "Prepared",
                    "ImportGenomicChunk": "Imported",
                    "CatalogGenomic": "Catalogued",
                    "BuildFeatures": "FeaturesSkipped",
                    "Finalize": "Finalized",
                    "NotifyRun": "Notified",
                },
                "ThrottledImport": {
                    "Collect": "Collected",
                    "Prepare": "Prepared",
                    "ImportGenomicChunk": "ThrottledThenImported",
                    "CatalogGenomic": "Catalogued",
                    "BuildFeatures": "FeaturesSkipped",
                    "Finalize": "Finalized",
                    "NotifyRun": "Notified",
                },
                "BrokenImport": {
                    "Collect": "Collected",
                    "Prepare": "Prepared",
                    "ImportGenomicChunk": "ImportCrashed",
                    "RecordGenomicChunkFailure": "ChunkQuarantined",
                    "CatalogGenomic": "Catalogued",
                    "BuildFeatures": "FeaturesSkipped",
                    "Finalize": "Finalized",
                    "NotifyRun": "Notified",
                },
            }
        }
    },
    "MockedResponses": {
        "Collected": _ok({"closed": True, "reason": "completion marker _COMPLETE", "wait_seconds": 0}),
        "Prepared": _ok(
            {
                "run_id": RUN_ID,
                "config": CONFIG,
                "unknown": 0,
                "delivery": {"name": "d1", "wave": 1},
                "genomic": {"files": 2, "chunks": [CHUNK], "distributed": False},
                "clinical": {"files": 0, "chunks": [], "distributed": False},
                "imaging": {"files": 0, "chunks": [], "distributed": False},
            }
        ),
        "Imported": _ok(
            {"chunk": CHUNK, "status": "COMPLETED", "rows": 10, "quarantined": 0, "config": CONFIG}
        ),
        "ThrottledThenImported": {
            "0": {"Throw": {"Error": "Lambda.TooManyRequestsException", "Cause": "Rate exceeded"}},
            "1": {
                "Return": {
                    "StatusCode": 200,
                    "Payload": {
                        "chunk": CHUNK,
                        "status": "COMPLETED",
                        "rows": 10,
                        "quarantined": 0,
                        "config": CONFIG,
                    },
                }
            },
        },
        "ImportCrashed": {
            "0-3": {"Throw": {"Error": "Lambda.Unknown", "Cause": "Runtime.OutOfMemory (simulated)"}},
        },
        "ChunkQuarantined": _ok(
            {"chunk": CHUNK, "status": "FAILED", "rows": 0, "quarantined": 2, "config": CONFIG}
        ),
        "Catalogued": _ok({"run_id": RUN_ID, "modality": "genomic", "commits": [], "quarantined": 0}),
        "FeaturesSkipped": _ok({"skipped": True, "reason": "no clinical rows changed in this run"}),
        "Finalized": _ok({"run_id": RUN_ID, "status": "SUCCEEDED", "modalities": {}, "quarantined": 0}),
        "Notified": {"0": {"Return": {"MessageId": str(uuid.uuid4())}}},
    },
}


@pytest.fixture(scope="module")
def sfn_local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    config = tmp_path_factory.mktemp("sfn") / "MockConfigFile.json"
    config.write_text(json.dumps(MOCK_CONFIG))
    port = _free_port()
    container = subprocess.run(
        ["docker", "run", "-d", "--rm", "-p", f"127.0.0.1:{port}:8083",
         "--mount", f"type=bind,readonly,source={config},destination=/home/StepFunctionsLocal/MockConfigFile.json",
         "-e", "SFN_MOCK_CONFIG=/home/StepFunctionsLocal/MockConfigFile.json", IMAGE],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    client = boto3.client("stepfunctions", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1")
    try:
        for _ in range(60):
            try:
                client.list_state_machines()
                break
            except Exception:
                time.sleep(1)
        arn = client.create_state_machine(
            name="pipeline", definition=_definition(), roleArn=f"arn:aws:iam::{ACCOUNT}:role/DummyRole"
        )["stateMachineArn"]
        yield client, arn
    finally:
        subprocess.run(["docker", "stop", container], capture_output=True, check=False)


def _run(sfn_local: Any, case: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    client, arn = sfn_local
    execution = client.start_execution(
        stateMachineArn=f"{arn}#{case}",
        name=f"{case}-{uuid.uuid4().hex[:8]}",
        input=json.dumps({"run_id": RUN_ID, "delivery": "d1", "wave": 1}),
    )["executionArn"]
    for _ in range(120):
        description = client.describe_execution(executionArn=execution)
        if description["status"] != "RUNNING":
            break
        time.sleep(0.5)
    return description, client.get_execution_history(executionArn=execution, maxResults=1000)["events"]


def test_happy_path(sfn_local: Any) -> None:
    description, history = _run(sfn_local, "Happy")
    assert description["status"] == "SUCCEEDED"
    assert any(e["type"] == "MapStateSucceeded" for e in history)


def test_a_throttled_import_is_retried(sfn_local: Any) -> None:
    description, history = _run(sfn_local, "ThrottledImport")
    assert description["status"] == "SUCCEEDED"
    assert sum(e["type"] == "TaskFailed" for e in history) == 1


def test_a_crashing_import_is_caught_into_the_chunk_failure_state(sfn_local: Any) -> None:
    description, history = _run(sfn_local, "BrokenImport")
    assert description["status"] == "SUCCEEDED"
    entered = [e["stateEnteredEventDetails"]["name"] for e in history if e["type"] == "TaskStateEntered"]
    assert "RecordGenomicChunkFailure" in entered
