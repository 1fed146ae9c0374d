"""`mmpipe invoke`: one function's handler with a sample event, on the local runtime, without Docker.

The Docker-free counterpart of `sam local invoke -e events/<f>.json <Function>`: the event goes through
Lambda Invoke (boto3) to the runtime's in-process invoker, the one the state machine uses, so the handler
gets the function's environment, a Lambda context and Lambda's error shape. Either a runtime started for
this one call (its buckets start empty) or, with `--local`, a running `mmpipe local up` (whose lake holds
what its inbox ingested) through its Lambda endpoint.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import boto3
from botocore.config import Config

from mmpipe.local.state_file import read_state

REPO = Path(__file__).resolve().parents[2]
EVENTS = REPO / "events"
TEMPLATE = REPO / "template.yaml"

# An invocation may run as long as the function's Timeout (up to 15 minutes).
_INVOKE_CONFIG = Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=5, read_timeout=960)


class UnknownFunctionError(LookupError):
    """The name matches no function of the template."""


class InvalidEventError(ValueError):
    """The event file cannot be read or is not JSON."""


@dataclass(frozen=True)
class InvokeResult:
    function: str  # logical id
    status_code: int
    payload: Any  # the decoded JSON response (None when empty)
    function_error: str | None  # "Unhandled" when the handler raised

    @property
    def ok(self) -> bool:
        return self.function_error is None


def event_name(logical_id: str) -> str:
    """GenomicImportFunction -> genomic_import (the name of its file in events/)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", logical_id.removesuffix("Function")).lower()


def resolve_function(name: str, functions: Iterable[str]) -> str:
    """The logical id meant by `name`: a logical id (GenomicImportFunction) or its event name
    (genomic_import). Raises UnknownFunctionError with the closest name, or the choices when none is close."""
    functions = list(functions)
    for logical_id in functions:
        if name in (logical_id, event_name(logical_id)):
            return logical_id
    names = sorted({*functions, *(event_name(f) for f in functions)})
    close = difflib.get_close_matches(name, names, n=1) or difflib.get_close_matches(name.lower(), names, n=1)
    if close:
        raise UnknownFunctionError(f"unknown function {name!r}; did you mean {close[0]}?")
    known = ", ".join(sorted(event_name(f) for f in functions))
    raise UnknownFunctionError(f"unknown function {name!r}; choose from {known} (or their logical ids)")


def template_functions(template: Path = TEMPLATE) -> list[str]:
    """The logical ids of the template's functions: a name is checked before a runtime is started for it."""
    from mmpipe.local.template import SERVERLESS_FUNCTION, load_sam_template

    resources = load_sam_template(template)["Resources"]
    return [name for name, resource in resources.items() if resource.get("Type") == SERVERLESS_FUNCTION]


def load_event(logical_id: str, path: Path | None, stdin: TextIO = sys.stdin) -> bytes:
    """The event bytes: from `path` ('-' for stdin) or events/<event name>.json. Raises InvalidEventError
    naming the file when it cannot be read or is not JSON."""
    if path is None:
        path = EVENTS / f"{event_name(logical_id)}.json"
        if not path.exists():
            raise InvalidEventError(f"{logical_id} has no sample event {path}: pass --event FILE")
    try:
        raw = stdin.read().encode() if str(path) == "-" else Path(path).read_bytes()
    except OSError as exc:
        raise InvalidEventError(f"cannot read event file {path}: {exc.strerror or exc}") from exc
    try:
        json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidEventError(f"{path} is not JSON: {exc}") from exc
    return raw


def invoke(lambda_client: Any, logical_id: str, function_name: str, event: bytes) -> InvokeResult:
    """Lambda Invoke (RequestResponse) of `function_name`; the handler's error comes back as Lambda
    reports it (FunctionError + errorType/errorMessage payload), not as an exception."""
    response = lambda_client.invoke(FunctionName=function_name, Payload=event)
    body = response["Payload"].read()
    return InvokeResult(
        function=logical_id,
        status_code=int(response["StatusCode"]),
        payload=json.loads(body) if body else None,
        function_error=response.get("FunctionError"),
    )


def invoke_attached(state_file: Path, function: str, event_path: Path | None) -> InvokeResult:
    """Invoke through the Lambda endpoint of a running `mmpipe local up` (LocalStateError without one)."""
    state = read_state(state_file)
    logical_id = resolve_function(function, state.functions)
    event = load_event(logical_id, event_path)
    client = boto3.session.Session(
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 - moto's fake credentials
        region_name=state.region,
    ).client("lambda", endpoint_url=state.lambda_endpoint_url, config=_INVOKE_CONFIG)
    return invoke(client, logical_id, state.functions[logical_id], event)


def invoke_fresh(
    function: str, event_path: Path | None, parameters: dict[str, str], log_stream: TextIO = sys.stderr
) -> InvokeResult:
    """Start a local runtime for this one call, invoke, stop it. Handler logs go to `log_stream`. The name
    and the event are checked first: a typo should not cost a runtime's start."""
    from mmpipe.local.runtime import LocalRuntime

    logical_id = resolve_function(function, template_functions())
    event = load_event(logical_id, event_path)
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    route_handler_logs(logging.StreamHandler(log_stream))
    with LocalRuntime(parameters=parameters) as runtime:
        if logical_id not in runtime.functions:
            raise UnknownFunctionError(f"{logical_id} is not deployed with these template parameters")
        return invoke(runtime.client("lambda"), logical_id, runtime.functions[logical_id].name, event)


def route_handler_logs(handler: logging.Handler) -> None:
    """The handlers' JSON logs (Powertools writes to stdout) to `handler` instead: stdout is the response."""
    from mmhealth.observability import logger as powertools_logger

    handler.setFormatter(powertools_logger.registered_formatter)
    target = logging.getLogger(powertools_logger.service)
    for existing in list(target.handlers):
        target.removeHandler(existing)
    target.addHandler(handler)
    target.propagate = False


def print_result(result: InvokeResult, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """The response on `out` (as `sam local invoke` prints it); 1 on a function error, named on `err`."""
    print(json.dumps(result.payload, indent=2), file=out)
    if result.ok:
        return 0
    payload = result.payload if isinstance(result.payload, dict) else {}
    print(
        f"{result.function} failed ({result.function_error}): "
        f"{payload.get('errorType')}: {payload.get('errorMessage')}",
        file=err,
    )
    return 1
