"""LocalRuntime start/stop: the process is left as it was found, and one runtime runs at a time."""

from __future__ import annotations

import os

import boto3
import pytest

from mmpipe.local import LocalRuntime
from mmpipe.local.server import process_server
from mmpipe.local.template import TemplateError


def test_start_and_stop_leave_the_process_as_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_PROFILE", "somebody-real")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    before = dict(os.environ)

    with LocalRuntime() as runtime:
        assert "AWS_PROFILE" not in os.environ
        assert os.environ["AWS_ENDPOINT_URL"] == runtime.endpoint_url
        assert runtime.endpoint_url.startswith("http://127.0.0.1:")
        # Any client created the ordinary way now talks to the local stack.
        assert runtime.landing_bucket in {b["Name"] for b in boto3.client("s3").list_buckets()["Buckets"]}
        with pytest.raises(RuntimeError, match="already running"):
            LocalRuntime().start()
        assert os.environ["AWS_ENDPOINT_URL"] == runtime.endpoint_url  # the refused one changed nothing
        assert runtime.startup_seconds is not None
        assert runtime.startup_seconds < 15

    assert dict(os.environ) == before
    # moto was reset and given back its default config (no state machine execution, Docker for Lambda).
    assert process_server().current_config()["stepfunctions"] == {"execute_state_machine": False}


def test_a_failed_start_cleans_up_and_the_next_start_works() -> None:
    before = dict(os.environ)

    with pytest.raises(TemplateError, match="unknown template parameter"):
        LocalRuntime(parameters={"NoSuchParameter": 1}).start()
    assert dict(os.environ) == before

    # Same stack name and bucket names again: only possible because the first runtime was reset away.
    with LocalRuntime() as first:
        landing = first.landing_bucket
    with LocalRuntime() as second:
        assert second.landing_bucket == landing
        assert second.client("s3").list_objects_v2(Bucket=landing).get("KeyCount") == 0
