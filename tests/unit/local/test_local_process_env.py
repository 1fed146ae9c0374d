"""The process environment of a local run: the functions' variables and the SDK settings, restored on exit."""

from __future__ import annotations

import os

import pytest

from mmpipe.local.process_env import (
    EnvironmentConflictError,
    ProcessEnvironment,
    merge_function_environments,
    sdk_variables,
)


def test_function_environments_merge_when_they_agree() -> None:
    merged = merge_function_environments(
        {
            "TriggerFunction": {"STAGE": "dev", "STATE_MACHINE_ARN": "arn:sm"},
            "PrepareFunction": {"STAGE": "dev", "POLL_SECONDS": "1"},
        }
    )

    assert merged == {"STAGE": "dev", "STATE_MACHINE_ARN": "arn:sm", "POLL_SECONDS": "1"}


def test_a_variable_two_functions_disagree_on_fails_loudly() -> None:
    with pytest.raises(EnvironmentConflictError, match=r"CHUNK_SIZE: A='25' but B='10'"):
        merge_function_environments({"A": {"CHUNK_SIZE": "25"}, "B": {"CHUNK_SIZE": "10"}})


def test_environment_is_restored_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_PROFILE", "production")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "https://s3.example.com")
    monkeypatch.setenv("STAGE", "prod")
    monkeypatch.delenv("LAKE_BUCKET", raising=False)
    env = ProcessEnvironment()

    env.hide_credentials_and_endpoints()
    env.apply(sdk_variables("http://127.0.0.1:5123", 5123))
    env.apply({"STAGE": "dev", "LAKE_BUCKET": "lake"})
    env.apply({"STAGE": "dev2"})

    assert "AWS_PROFILE" not in os.environ
    assert "AWS_ENDPOINT_URL_S3" not in os.environ
    assert os.environ["AWS_ENDPOINT_URL"] == "http://127.0.0.1:5123"
    assert os.environ["MOTO_PORT"] == "5123"
    assert os.environ["AWS_CONFIG_FILE"] == os.devnull
    assert os.environ["STAGE"] == "dev2"

    env.restore()

    assert os.environ["AWS_PROFILE"] == "production"
    assert os.environ["AWS_ENDPOINT_URL_S3"] == "https://s3.example.com"
    assert os.environ["STAGE"] == "prod"
    assert "LAKE_BUCKET" not in os.environ
