"""Lambda Invoke answered in-process through botocore's before-call hook.

The clients point at a closed loopback port: a call the hook does not answer fails to connect, so every
passing assertion on a response proves the hook answered it.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError

from mmpipe.local.invoker import FunctionSpec, InvokerConflictError, LambdaContext, LambdaInvoker

ACCOUNT = "123456789012"
CLOSED_PORT = "http://127.0.0.1:9"


def _spec(logical_id: str, handler: str, timeout: int = 30) -> FunctionSpec:
    name = f"mmpipe-local-{logical_id}-ABC"
    return FunctionSpec(
        logical_id=logical_id,
        name=name,
        arn=f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{name}",
        handler=handler,
        timeout_seconds=timeout,
        memory_mb=1024,
        log_group_name=f"/mmpipe/dev/{logical_id.lower()}",
        environment={},
    )


class TransientError(Exception):
    pass


@pytest.fixture
def handler_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A handler package on sys.path, written by the test (so its import can also fail first)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


@pytest.fixture
def invoker(handler_module: Path) -> Iterator[LambdaInvoker]:
    specs = [
        _spec("EchoFunction", "local_handlers_echo.lambda_handler"),
        _spec("LateFunction", "local_handlers_late.lambda_handler"),
        _spec("SlowFunction", "local_handlers_echo.lambda_handler", timeout=0),
    ]
    (handler_module / "local_handlers_echo.py").write_text(
        "def lambda_handler(event, context):\n"
        "    return {'event': event, 'function': context.function_name, 'memory': context.memory_limit_in_mb}\n"
    )
    invoker = LambdaInvoker(specs)
    invoker.install()
    yield invoker
    invoker.uninstall()


@pytest.fixture
def lambda_client(invoker: LambdaInvoker) -> Any:
    session = boto3.session.Session(aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1")
    config = Config(retries={"total_max_attempts": 1}, connect_timeout=1)
    return session.client("lambda", endpoint_url=CLOSED_PORT, config=config)


def _invoke(client: Any, function: str, payload: Any, **kwargs: Any) -> tuple[dict[str, Any], Any]:
    response = client.invoke(FunctionName=function, Payload=json.dumps(payload).encode(), **kwargs)
    body = response["Payload"].read()
    return response, json.loads(body) if body else None


def test_the_real_handler_answers_by_name_arn_and_latest(invoker: LambdaInvoker, lambda_client: Any) -> None:
    spec = invoker.functions["EchoFunction"]

    for function in (spec.name, spec.arn, f"{spec.arn}:$LATEST", f"{ACCOUNT}:function:{spec.name}"):
        response, payload = _invoke(lambda_client, function, {"n": 1})
        assert response["StatusCode"] == 200
        assert "FunctionError" not in response
        assert payload == {"event": {"n": 1}, "function": spec.name, "memory": "1024"}
    assert [r.logical_id for r in invoker.records] == ["EchoFunction"] * 4


def test_a_handler_error_is_reported_as_lambda_does(invoker: LambdaInvoker, lambda_client: Any) -> None:
    def flaky(event: Any, context: LambdaContext) -> Any:
        raise TransientError("dependency throttled")

    invoker.override("EchoFunction", flaky)

    response, payload = _invoke(lambda_client, invoker.functions["EchoFunction"].name, {})

    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "TransientError"
    assert payload["errorMessage"] == "dependency throttled"
    assert payload["requestId"] == response["ResponseMetadata"]["RequestId"]
    assert any("in flaky" in line for line in payload["stackTrace"])
    [record] = invoker.records
    assert (record.error_type, record.ok) == ("TransientError", False)


def test_the_context_behaves_like_the_lambda_context(invoker: LambdaInvoker, lambda_client: Any) -> None:
    seen: dict[str, Any] = {}

    def capture(event: Any, context: LambdaContext) -> None:
        seen.update(vars(context))
        seen["remaining"] = context.get_remaining_time_in_millis()

    spec = invoker.functions["EchoFunction"]
    invoker.override("EchoFunction", capture)
    client_context = base64.b64encode(json.dumps({"custom": {"k": "v"}}).encode()).decode()

    response, payload = _invoke(lambda_client, spec.name, {}, ClientContext=client_context)

    assert payload is None  # a handler returning None answers "null", as Lambda does
    assert seen["function_name"] == spec.name
    assert seen["function_version"] == "$LATEST"
    assert seen["invoked_function_arn"] == spec.arn
    assert seen["memory_limit_in_mb"] == "1024"
    assert seen["aws_request_id"] == response["ResponseMetadata"]["RequestId"]
    assert seen["log_group_name"] == "/mmpipe/dev/echofunction"
    assert "[$LATEST]" in seen["log_stream_name"]
    assert 29_000 < seen["remaining"] <= 30_000
    assert seen["client_context"].custom == {"k": "v"}


def test_event_invocations_run_in_the_background(invoker: LambdaInvoker, lambda_client: Any) -> None:
    def slow(event: Any, context: LambdaContext) -> None:
        time.sleep(0.3)

    invoker.override("EchoFunction", slow)

    response, payload = _invoke(
        lambda_client, invoker.functions["EchoFunction"].name, {}, InvocationType="Event"
    )

    assert response["StatusCode"] == 202
    assert payload is None
    assert invoker.records == []
    assert invoker.wait_idle(timeout=5)
    [record] = invoker.records
    assert record.invocation_type == "Event"
    assert record.duration_seconds >= 0.3


def test_a_handler_module_is_imported_at_first_use(
    invoker: LambdaInvoker, lambda_client: Any, handler_module: Path
) -> None:
    name = invoker.functions["LateFunction"].name

    _, missing = _invoke(lambda_client, name, {})
    (handler_module / "local_handlers_late.py").write_text(
        "def lambda_handler(event, context):\n    return 'late'\n"
    )
    _, present = _invoke(lambda_client, name, {})

    assert missing["errorType"] == "Runtime.ImportModuleError"
    assert "local_handlers_late" in missing["errorMessage"]
    assert present == "late"


def test_runtime_errors_of_lambda_itself(invoker: LambdaInvoker, lambda_client: Any) -> None:
    invoker.override("EchoFunction", lambda event, context: {1, 2})

    _, unserialisable = _invoke(lambda_client, invoker.functions["EchoFunction"].name, {})
    with pytest.raises(ClientError, match="InvalidRequestContentException"):
        lambda_client.invoke(FunctionName=invoker.functions["EchoFunction"].name, Payload=b"{not json")

    assert unserialisable["errorType"] == "Runtime.MarshalError"


def test_timeouts_are_reported_when_enforced(handler_module: Path) -> None:
    (handler_module / "local_handlers_echo.py").write_text(
        "def lambda_handler(event, context):\n    return 1\n"
    )
    invoker = LambdaInvoker(
        [_spec("SlowFunction", "local_handlers_echo.lambda_handler", timeout=0)], enforce_timeouts=True
    )
    invoker.install()
    try:
        session = boto3.session.Session(
            aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1"
        )
        client = session.client("lambda", endpoint_url=CLOSED_PORT)
        response, payload = _invoke(client, invoker.functions["SlowFunction"].name, {})
    finally:
        invoker.uninstall()

    assert response["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "Sandbox.Timedout"


def test_unknown_functions_and_qualifiers_go_through_to_the_endpoint(
    invoker: LambdaInvoker, lambda_client: Any
) -> None:
    with pytest.raises(EndpointConnectionError):
        lambda_client.invoke(FunctionName="somebody-elses-function", Payload=b"{}")
    with pytest.raises(EndpointConnectionError):
        lambda_client.invoke(
            FunctionName=invoker.functions["EchoFunction"].name, Qualifier="live", Payload=b"{}"
        )


def test_only_one_invoker_per_process_and_uninstall_lets_calls_through(
    invoker: LambdaInvoker, lambda_client: Any
) -> None:
    other = LambdaInvoker([_spec("OtherFunction", "x.y")])
    with pytest.raises(InvokerConflictError):
        other.install()

    invoker.uninstall()

    with pytest.raises(EndpointConnectionError):
        lambda_client.invoke(FunctionName=invoker.functions["EchoFunction"].name, Payload=b"{}")
