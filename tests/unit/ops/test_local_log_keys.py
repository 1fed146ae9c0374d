"""Concurrent local invocations log their own Lambda context keys (mmpipe.local.log_keys).

Both handlers are decorated as the pipeline's are (`logger.inject_lambda_context` with a correlation id
path) and wait for each other between the key injection and their log line, so without per-invocation keys
one of the two lines would carry the other's function_name and correlation id.
"""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter
from botocore.config import Config

from mmhealth.observability import logger
from mmpipe.local.invoker import FunctionSpec, LambdaInvoker

CLOSED_PORT = "http://127.0.0.1:9"  # a call the in-process hook does not answer fails to connect


def _spec(logical_id: str) -> FunctionSpec:
    name = f"mmpipe-local-{logical_id}-XYZ"
    return FunctionSpec(
        logical_id=logical_id,
        name=name,
        arn=f"arn:aws:lambda:us-east-1:123456789012:function:{name}",
        handler="unused.lambda_handler",
        timeout_seconds=30,
        memory_mb=512,
        log_group_name=f"/mmpipe/dev/{logical_id}",
        environment={},
    )


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """The Powertools logger's lines, formatted by its own formatter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logger.registered_formatter)
    target = logging.getLogger(logger.service)
    target.addHandler(handler)
    yield stream
    target.removeHandler(handler)


def _handler(barrier: threading.Barrier) -> Any:
    @logger.inject_lambda_context(correlation_id_path="run_id")
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        barrier.wait(timeout=10)  # both invocations have injected their keys before either logs
        logger.info("step done")
        if event.get("append"):
            logger.append_keys(extra_key=event["append"])
            logger.info("with an appended key")
        return {"ok": True}

    return handler


def test_two_concurrent_invocations_log_their_own_function_name(captured: io.StringIO) -> None:
    barrier = threading.Barrier(2)
    invoker = LambdaInvoker(
        [_spec("CatalogFunction"), _spec("RadiomicsStartFunction")],
        {"CatalogFunction": _handler(barrier), "RadiomicsStartFunction": _handler(barrier)},
    )
    invoker.install()
    try:
        session = boto3.session.Session(
            aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1"
        )
        config = Config(retries={"total_max_attempts": 1}, connect_timeout=1)
        clients = [session.client("lambda", endpoint_url=CLOSED_PORT, config=config) for _ in range(2)]
        calls = [
            ("CatalogFunction", {"run_id": "run-catalog", "append": "only-mine"}),
            ("RadiomicsStartFunction", {"run_id": "run-radiomics"}),
        ]
        results: list[Any] = [None, None]

        def call(n: int) -> None:
            logical_id, event = calls[n]
            response = clients[n].invoke(
                FunctionName=invoker.functions[logical_id].name, Payload=json.dumps(event).encode()
            )
            results[n] = (response.get("FunctionError"), json.loads(response["Payload"].read()))

        threads = [threading.Thread(target=call, args=(n,)) for n in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        invoker.uninstall()

    assert results == [(None, {"ok": True}), (None, {"ok": True})]
    lines = [json.loads(line) for line in captured.getvalue().splitlines()]
    seen = {
        (line["message"], line["function_name"], line["correlation_id"], line.get("extra_key"))
        for line in lines
    }
    assert seen == {
        ("step done", "mmpipe-local-CatalogFunction-XYZ", "run-catalog", None),
        ("with an appended key", "mmpipe-local-CatalogFunction-XYZ", "run-catalog", "only-mine"),
        ("step done", "mmpipe-local-RadiomicsStartFunction-XYZ", "run-radiomics", None),
    }


def test_the_formatter_is_restored_when_the_invoker_is_uninstalled() -> None:
    before = {name: LambdaPowertoolsFormatter.__dict__[name] for name in ("append_keys", "remove_keys")}
    invoker = LambdaInvoker([_spec("CatalogFunction")])
    invoker.install()
    patched = LambdaPowertoolsFormatter.__dict__["append_keys"]
    invoker.uninstall()

    assert patched is not before["append_keys"]
    assert {name: LambdaPowertoolsFormatter.__dict__[name] for name in before} == before
