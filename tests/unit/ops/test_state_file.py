"""The state file `mmpipe local up` leaves for other processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmpipe.local.state_file import LocalState, LocalStateError, read_state, remove_state, write_state


def _state(pid: int) -> LocalState:
    return LocalState(
        pid=pid,
        endpoint_url="http://127.0.0.1:5001",
        lambda_endpoint_url="http://127.0.0.1:5002",
        region="us-east-1",
        account_id="123456789012",
        stack_name="mmpipe-local",
        state_machine_arn="arn:aws:states:us-east-1:123456789012:stateMachine:mmpipe-dev-pipeline",
        landing_bucket="landing",
        lake_bucket="lake",
        glue_database_prefix="mmpipe_dev_",
        topic_arn="arn:aws:sns:us-east-1:123456789012:runs",
        ingest_queue_url="http://127.0.0.1:5001/123456789012/ingest",
        dead_letter_queue_url="http://127.0.0.1:5001/123456789012/dlq",
        started_at="2026-11-22T04:00:00+00:00",
        functions={"PrepareFunction": "mmpipe-local-PrepareFunction-ABC"},
    )


def _dead_pid() -> int:
    process = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    return int(process.stdout)


def test_a_written_state_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "local.json"
    write_state(path, _state(os.getpid()))

    assert read_state(path) == _state(os.getpid())
    assert [p.name for p in path.parent.iterdir()] == ["local.json"]  # no temporary file left


def test_missing_malformed_and_stale_files_are_refused_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "local.json"
    with pytest.raises(LocalStateError, match="mmpipe local up --inbox"):
        read_state(path)
    path.write_text("{not json")
    with pytest.raises(LocalStateError, match="not a state file"):
        read_state(path)
    path.write_text(json.dumps({"pid": os.getpid()}))
    with pytest.raises(LocalStateError, match="lacks"):
        read_state(path)
    write_state(path, _state(_dead_pid()))
    with pytest.raises(LocalStateError, match="stale"):
        read_state(path)


def test_only_the_writer_removes_its_state_file(tmp_path: Path) -> None:
    path = tmp_path / "local.json"
    write_state(path, _state(os.getpid()))

    remove_state(path, os.getpid() + 1)
    assert path.exists()
    remove_state(path, os.getpid())
    assert not path.exists()
