"""Lambda Invoke, answered in-process by the function's real handler.

A botocore `before-call.lambda.Invoke` handler, registered in `botocore.handlers.BUILTIN_HANDLERS` (the
mechanism moto itself uses for its request stubber), answers every Invoke made by a boto3 session created
after `install()`: moto's Step Functions engine, the SQS event-source poller, tests, handlers. The
response is the one AWS gives: StatusCode 200 and the JSON result, or `FunctionError: Unhandled` with
`{"errorMessage", "errorType", "requestId", "stackTrace"}`, so that Retry/Catch clauses on error names
such as `TransientError` behave as in the cloud (Step Functions reads the `errorType`).

Functions run in the calling thread (a Step Functions worker, the poller) or, for `InvocationType=Event`,
in a pool thread. They share the process, hence one `os.environ` (see `process_env`); each invocation runs
in its own copy of the context, so the logger keys it adds are its own (see `log_keys`).
"""

from __future__ import annotations

import base64
import contextlib
import importlib
import io
import json
import logging
import re
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, cast
from urllib.parse import unquote

import boto3
import botocore.handlers
from botocore.awsrequest import AWSResponse
from botocore.response import StreamingBody

from mmpipe.local import log_keys
from mmpipe.local.aws import AwsClients
from mmpipe.local.stack import LocalStack

log = logging.getLogger(__name__)

Handler = Callable[[Any, Any], Any]

_INVOKE_EVENT = "before-call.lambda.Invoke"
_INVOKE_PATH = re.compile(r"^/2015-03-31/functions/(?P<function>[^/]+)/invocations")
_MAX_ASYNC_WORKERS = 8


@dataclass(frozen=True)
class FunctionSpec:
    """A deployed function, as Lambda (moto) reports it after CloudFormation resolved its Refs."""

    logical_id: str
    name: str
    arn: str
    handler: str  # "package.module.function"
    timeout_seconds: int
    memory_mb: int
    log_group_name: str
    environment: dict[str, str]


@dataclass(frozen=True)
class InvocationRecord:
    """One finished invocation (successful or not)."""

    logical_id: str
    function_name: str
    request_id: str
    invocation_type: str  # RequestResponse | Event
    started_at: float  # epoch seconds
    duration_seconds: float
    error_type: str | None = None
    error_message: str | None = None

    @property
    def ok(self) -> bool:
        return self.error_type is None


class LambdaContext:
    """The context object of the Python runtime (awslambdaric), attribute for attribute.

    `memory_limit_in_mb` is a string, as in the real runtime (it comes from an environment variable).
    """

    def __init__(
        self,
        spec: FunctionSpec,
        request_id: str,
        invoked_function_arn: str,
        log_stream_name: str,
        client_context: Any = None,
    ) -> None:
        self.function_name = spec.name
        self.function_version = "$LATEST"
        self.invoked_function_arn = invoked_function_arn
        self.memory_limit_in_mb = str(spec.memory_mb)
        self.aws_request_id = request_id
        self.log_group_name = spec.log_group_name
        self.log_stream_name = log_stream_name
        self.identity = None
        self.client_context = client_context
        self.tenant_id = None
        self._deadline = time.monotonic() + spec.timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class InvokerConflictError(RuntimeError):
    """Another LambdaInvoker is already installed in this process."""


class _FunctionFailed(Exception):
    """An error the Lambda runtime reports itself (import failure, timeout, unserialisable result)."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


def load_function_specs(clients: AwsClients, stack: LocalStack) -> list[FunctionSpec]:
    """Every AWS::Lambda::Function of the stack, configuration read back from Lambda (moto)."""
    specs = []
    for resource in stack.of_type("AWS::Lambda::Function"):
        config = clients.lambda_.get_function_configuration(FunctionName=resource.physical_id)
        # moto does not store LoggingConfig; the resolved template property is what Lambda would use.
        log_group = (
            resource.properties.get("LoggingConfig", {}).get("LogGroup")
            or f"/aws/lambda/{config['FunctionName']}"
        )
        specs.append(
            FunctionSpec(
                logical_id=resource.logical_id,
                name=config["FunctionName"],
                arn=config["FunctionArn"],
                handler=config["Handler"],
                timeout_seconds=int(config.get("Timeout", 3)),
                memory_mb=int(config.get("MemorySize", 128)),
                log_group_name=log_group,
                environment={
                    k: str(v) for k, v in config.get("Environment", {}).get("Variables", {}).items()
                },
            )
        )
    return specs


class LambdaInvoker:
    """Routes Lambda Invoke calls for `functions` to their handlers; records every invocation.

    `overrides` (logical id -> callable(event, context)) replace a function's handler, e.g. to inject
    failures in tests. `enforce_timeouts`: report an invocation that ran longer than the function's
    Timeout as `Sandbox.Timedout` (the handler cannot be stopped mid-way in-process; by default it is
    only logged). Only one invoker can be installed per process (InvokerConflictError).
    """

    def __init__(
        self,
        functions: Iterable[FunctionSpec],
        overrides: Mapping[str, Handler] | None = None,
        *,
        enforce_timeouts: bool = False,
    ) -> None:
        self._functions = list(functions)
        self._by_logical_id = {f.logical_id: f for f in self._functions}
        self._lookup: dict[str, FunctionSpec] = {}
        for spec in self._functions:
            account = spec.arn.split(":")[4]
            for key in (spec.name, spec.arn, f"{account}:function:{spec.name}"):
                self._lookup[key] = spec
        self._overrides: dict[str, Handler] = {}
        for logical_id, handler in (overrides or {}).items():
            self.override(logical_id, handler)
        self._enforce_timeouts = enforce_timeouts
        self._records: list[InvocationRecord] = []
        self._records_lock = threading.Lock()
        self._in_flight = 0
        self._idle = threading.Condition()
        self._async_pool = ThreadPoolExecutor(
            max_workers=_MAX_ASYNC_WORKERS, thread_name_prefix="lambda-event"
        )
        self._stream_suffix = uuid.uuid4().hex

    # --- configuration ---------------------------------------------------------------------------------

    @property
    def functions(self) -> dict[str, FunctionSpec]:
        """Logical id -> function."""
        return dict(self._by_logical_id)

    def override(self, logical_id: str, handler: Handler | None) -> None:
        """Replace (or with None, restore) the handler of a function; KeyError for an unknown id."""
        if logical_id not in self._by_logical_id:
            raise KeyError(
                f"no function {logical_id!r} in the stack; functions: {sorted(self._by_logical_id)}"
            )
        if handler is None:
            self._overrides.pop(logical_id, None)
        else:
            self._overrides[logical_id] = handler

    @contextlib.contextmanager
    def overridden(self, overrides: Mapping[str, Handler]) -> Iterator[None]:
        """Temporarily replace handlers; the previous ones come back on exit."""
        previous = {logical_id: self._overrides.get(logical_id) for logical_id in overrides}
        for logical_id, handler in overrides.items():
            self.override(logical_id, handler)
        try:
            yield
        finally:
            for logical_id, previous_handler in previous.items():
                self.override(logical_id, previous_handler)

    def load_handler(self, logical_id: str) -> Handler:
        """The function's own handler from its `Handler` setting, ignoring overrides (imported now).

        Raises ImportError/AttributeError when the module or the function does not exist.
        """
        module_name, _, attribute = self._by_logical_id[logical_id].handler.rpartition(".")
        module = importlib.import_module(module_name)
        handler: Handler = getattr(module, attribute)
        return handler

    # --- records ---------------------------------------------------------------------------------------

    @property
    def records(self) -> list[InvocationRecord]:
        with self._records_lock:
            return list(self._records)

    def clear_records(self) -> None:
        with self._records_lock:
            self._records.clear()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no invocation (synchronous or `Event`) is running; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout=timeout)

    @property
    def busy(self) -> bool:
        with self._idle:
            return self._in_flight > 0

    # --- installation ------------------------------------------------------------------------------------

    def install(self) -> None:
        """Answer Invoke for every boto3 session created after `register_invoke_hook()` (called here
        too; the default session is reset so that `boto3.client(...)` picks the hook up)."""
        global _active
        register_invoke_hook()
        with _active_lock:
            if _active is not None and _active is not self:
                raise InvokerConflictError(
                    "another local runtime already answers Lambda Invoke in this process"
                )
            newly_installed = _active is None
            _active = self
            if newly_installed:
                log_keys.install()
        boto3.DEFAULT_SESSION = None

    def uninstall(self, timeout: float = 30.0) -> None:
        """Stop answering Invoke, after waiting up to `timeout` for running invocations."""
        global _active
        self._async_pool.shutdown(wait=True, cancel_futures=False)
        self.wait_idle(timeout)
        with _active_lock:
            if _active is self:
                _active = None
                with contextlib.suppress(ValueError):
                    botocore.handlers.BUILTIN_HANDLERS.remove((_INVOKE_EVENT, _before_call_invoke))
                log_keys.uninstall()
        boto3.DEFAULT_SESSION = None

    # --- invocation --------------------------------------------------------------------------------------

    def resolve(self, function: str) -> tuple[FunctionSpec, str] | None:
        """(function, invoked ARN) for a name, ARN or partial ARN, with optional `:$LATEST`; None if
        the function is not one of ours or the qualifier names a version or alias (none exist locally)."""
        name, qualifier = function, None
        # arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>], <account>:function:<name>[:q]
        # or <name>[:q]: a qualifier is present when there is one colon more than the bare form has.
        colons = function.count(":")
        if colons == (7 if function.startswith("arn:") else 1) or colons == 3:
            name, qualifier = function.rsplit(":", 1)
        if qualifier not in (None, "$LATEST"):
            return None
        spec = self._lookup.get(name)
        if spec is None:
            return None
        return spec, spec.arn if qualifier is None else f"{spec.arn}:{qualifier}"

    def handle_invoke(self, params: Mapping[str, Any]) -> tuple[AWSResponse, dict[str, Any]] | None:
        """Answer one Invoke request (botocore's request dict), or None to let moto answer it."""
        match = _INVOKE_PATH.match(params.get("url_path", ""))
        if match is None:
            return None
        function = unquote(match.group("function"))
        qualifier = params.get("query_string", {}).get("Qualifier")
        resolved = self.resolve(f"{function}:{qualifier}" if qualifier else function)
        if resolved is None:
            return None
        spec, invoked_arn = resolved
        headers = {k.lower(): v for k, v in params.get("headers", {}).items()}
        invocation_type = headers.get("x-amz-invocation-type", "RequestResponse")
        request_id = str(uuid.uuid4())
        url = params.get("url", "")

        body = params.get("body") or b""
        if hasattr(body, "read"):
            body = body.read()
        try:
            event = json.loads(body) if body else {}
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            return _client_error(
                url, request_id, "InvalidRequestContentException", f"Could not parse request body: {error}"
            )
        client_context = _client_context(headers.get("x-amz-client-context"))

        if invocation_type == "DryRun":
            return _response(url, 204, request_id, b"", None)
        self._begin()
        if invocation_type == "Event":
            self._async_pool.submit(
                self._run_and_finish, spec, invoked_arn, event, request_id, "Event", client_context
            )
            return _response(url, 202, request_id, b"", None)
        payload, function_error = self._run_and_finish(
            spec, invoked_arn, event, request_id, "RequestResponse", client_context
        )
        return _response(url, 200, request_id, payload, function_error)

    def _begin(self) -> None:
        with self._idle:
            self._in_flight += 1

    def _run_and_finish(
        self,
        spec: FunctionSpec,
        invoked_arn: str,
        event: Any,
        request_id: str,
        invocation_type: str,
        client_context: Any,
    ) -> tuple[bytes, str | None]:
        try:
            return self._run(spec, invoked_arn, event, request_id, invocation_type, client_context)
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    def _run(
        self,
        spec: FunctionSpec,
        invoked_arn: str,
        event: Any,
        request_id: str,
        invocation_type: str,
        client_context: Any,
    ) -> tuple[bytes, str | None]:
        day = datetime.now(UTC).strftime("%Y/%m/%d")
        context = LambdaContext(
            spec, request_id, invoked_arn, f"{day}/[$LATEST]{self._stream_suffix}", client_context
        )
        started_at, started = time.time(), time.monotonic()
        error: BaseException | None = None
        result: Any = None
        try:
            handler = self._handler(spec)
            result = log_keys.run_invocation(handler, event, context)
        except Exception as exc:
            error = exc
        duration = time.monotonic() - started

        if error is None and duration > spec.timeout_seconds:
            log.warning(
                "%s ran %.1f s, longer than its Timeout of %d s",
                spec.logical_id,
                duration,
                spec.timeout_seconds,
            )
            if self._enforce_timeouts:
                error = _FunctionFailed(
                    "Sandbox.Timedout",
                    f"RequestId: {request_id} Error: Task timed out after {spec.timeout_seconds:.2f} seconds",
                )
        payload = b""
        if error is None:
            try:
                payload = json.dumps(result).encode()
            except (TypeError, ValueError) as exc:
                error = _FunctionFailed("Runtime.MarshalError", f"Unable to marshal response: {exc}")
        error_type: str | None = None
        if error is not None:
            error_type = error.error_type if isinstance(error, _FunctionFailed) else type(error).__name__
            payload = json.dumps(
                {
                    "errorMessage": str(error),
                    "errorType": error_type,
                    "requestId": request_id,
                    "stackTrace": traceback.format_list(traceback.extract_tb(error.__traceback__)),
                }
            ).encode()
            log.info("%s failed with %s: %s", spec.logical_id, error_type, error)
        record = InvocationRecord(
            logical_id=spec.logical_id,
            function_name=spec.name,
            request_id=request_id,
            invocation_type=invocation_type,
            started_at=started_at,
            duration_seconds=duration,
            error_type=None
            if error is None
            else (error.error_type if isinstance(error, _FunctionFailed) else type(error).__name__),
            error_message=None if error is None else str(error),
        )
        with self._records_lock:
            self._records.append(record)
        return payload, None if error is None else "Unhandled"

    def _handler(self, spec: FunctionSpec) -> Handler:
        override = self._overrides.get(spec.logical_id)
        if override is not None:
            return override
        # Imported at first use (not at start): a handler module may not exist yet while the others do.
        module_name, _, attribute = spec.handler.rpartition(".")
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            raise _FunctionFailed(
                "Runtime.ImportModuleError", f"Unable to import module '{module_name}': {exc}"
            ) from exc
        handler = getattr(module, attribute, None)
        if not callable(handler):
            raise _FunctionFailed(
                "Runtime.HandlerNotFound", f"Handler '{attribute}' missing on module '{module_name}'"
            )
        return handler


def _response(
    url: str, status: int, request_id: str, payload: bytes, function_error: str | None
) -> tuple[AWSResponse, dict[str, Any]]:
    headers = {"x-amzn-requestid": request_id}
    parsed: dict[str, Any] = {
        "StatusCode": status,
        "Payload": StreamingBody(io.BytesIO(payload), len(payload)),
    }
    if status == 200:
        headers["x-amz-executed-version"] = "$LATEST"
        parsed["ExecutedVersion"] = "$LATEST"
    if function_error is not None:
        headers["x-amz-function-error"] = function_error
        parsed["FunctionError"] = function_error
    parsed["ResponseMetadata"] = {
        "RequestId": request_id,
        "HTTPStatusCode": status,
        "HTTPHeaders": headers,
        "RetryAttempts": 0,
    }
    return AWSResponse(url, status, cast(Any, headers), None), parsed


def _client_error(url: str, request_id: str, code: str, message: str) -> tuple[AWSResponse, dict[str, Any]]:
    parsed = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {
            "RequestId": request_id,
            "HTTPStatusCode": 400,
            "HTTPHeaders": {},
            "RetryAttempts": 0,
        },
    }
    return AWSResponse(url, 400, cast(Any, {}), None), parsed


def _client_context(header: str | None) -> Any:
    if not header:
        return None
    try:
        data = json.loads(base64.b64decode(header))
    except (ValueError, json.JSONDecodeError):
        return None
    return SimpleNamespace(client=data.get("client"), custom=data.get("custom"), env=data.get("env"))


_active: LambdaInvoker | None = None
_active_lock = threading.Lock()


def register_invoke_hook() -> None:
    """Add the Invoke hook to botocore's built-in handlers (idempotent).

    botocore copies BUILTIN_HANDLERS into a session when the session is created, so this must run
    before the sessions that should be answered in-process are created. While no invoker is installed
    the hook lets every call through to moto.
    """
    with _active_lock:
        if (_INVOKE_EVENT, _before_call_invoke) not in botocore.handlers.BUILTIN_HANDLERS:
            botocore.handlers.BUILTIN_HANDLERS.append((_INVOKE_EVENT, _before_call_invoke))


def _before_call_invoke(params: Mapping[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
    """botocore hook: answer Invoke in-process while an invoker is installed; else let it through."""
    invoker = _active
    if invoker is None:
        return None
    return invoker.handle_invoke(params)
