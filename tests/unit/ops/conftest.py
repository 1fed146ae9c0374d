"""A pipeline for the operator commands to talk to: moto's server (the engine the local runtime uses) really
executing a stand-in state machine, the lake bucket and Glue databases of the shared `aws` fixture, and the
state file of a running `mmpipe local up`, so that `mmpipe ... --local` finds it the way it finds the real one.

The stand-in routes on the execution input's `outcome`: "fail" ends in a Fail state the way the pipeline's
ModalityFailed does, "hold" waits (a run still going), anything else succeeds.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
import requests

from mmpipe.local.state_file import LocalState, write_state

FAILING_CAUSE = "genomic: RuntimeError: catalog store unreachable"
STAND_IN = {
    "StartAt": "Route",
    "States": {
        "Route": {
            "Type": "Choice",
            "Choices": [
                {"Variable": "$.outcome", "StringEquals": "fail", "Next": "ModalityFailed"},
                {"Variable": "$.outcome", "StringEquals": "hold", "Next": "WaitForGenomicImport"},
            ],
            "Default": "Done",
        },
        "WaitForGenomicImport": {"Type": "Wait", "Seconds": 3600, "Next": "Done"},
        "ModalityFailed": {"Type": "Fail", "Error": "ModalityFailed", "Cause": FAILING_CAUSE},
        "Done": {"Type": "Succeed"},
    },
}


class Pipeline(SimpleNamespace):
    """The stand-in pipeline: start executions, wait for them, find them from the CLI (`--local` args)."""

    def start(self, name: str, outcome: str = "ok", run_id: str | None = None) -> str:
        execution_input = {"run_id": run_id or name, "outcome": outcome}
        arn = self.sfn.start_execution(
            stateMachineArn=self.state_machine, name=name, input=json.dumps(execution_input)
        )["executionArn"]
        if outcome != "hold":
            self._wait(arn)
        return str(arn)

    def _wait(self, arn: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while self.sfn.describe_execution(executionArn=arn)["status"] == "RUNNING":
            if time.monotonic() > deadline:
                raise TimeoutError(arn)
            time.sleep(0.02)

    def put_json(self, key: str, document: Any) -> None:
        self.s3.put_object(Bucket=self.lake, Key=key, Body=json.dumps(document).encode())

    @property
    def local(self) -> list[str]:
        return ["--local", "--state-file", str(self.state_file)]


@pytest.fixture
def pipeline(aws: SimpleNamespace, tmp_path: Path) -> Iterator[Pipeline]:
    config = f"{aws.endpoint}/moto-api/config"
    requests.post(config, json={"stepfunctions": {"execute_state_machine": True}}, timeout=10)
    try:
        sfn = boto3.client("stepfunctions", endpoint_url=aws.endpoint)
        state_machine = sfn.create_state_machine(
            name="mmpipe-test-pipeline",
            definition=json.dumps(STAND_IN),
            roleArn="arn:aws:iam::123456789012:role/sfn",
        )["stateMachineArn"]
        state_file = tmp_path / "local.json"
        write_state(
            state_file,
            LocalState(
                pid=os.getpid(),
                endpoint_url=aws.endpoint,
                lambda_endpoint_url=aws.endpoint,
                region="us-east-1",
                account_id="123456789012",
                stack_name="mmpipe-test",
                state_machine_arn=state_machine,
                landing_bucket=aws.landing,
                lake_bucket=aws.lake,
                glue_database_prefix=os.environ["GLUE_DATABASE_PREFIX"],
                topic_arn="arn:aws:sns:us-east-1:123456789012:unused",
                ingest_queue_url="unused",
                dead_letter_queue_url="unused",
                started_at="2026-12-04T00:00:00+00:00",
            ),
        )
        yield Pipeline(sfn=sfn, s3=aws.s3, lake=aws.lake, state_machine=state_machine, state_file=state_file)
    finally:
        requests.post(config, json={"stepfunctions": {"execute_state_machine": False}}, timeout=10)
