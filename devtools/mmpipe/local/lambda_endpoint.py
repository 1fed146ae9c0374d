"""Lambda Invoke over HTTP for other processes (what `sam local start-lambda` offers).

The runtime answers Invoke in-process, through a botocore hook of its own sessions; a client in another
process (`mmpipe invoke` attached to `mmpipe local up`) would reach moto's server instead, which cannot
run our handlers. This loopback endpoint speaks the Lambda Invoke API
(`POST /2015-03-31/functions/<name>/invocations`) and forwards each call to the runtime's own Lambda
client, so the call goes through the same in-process invoker as the state machine's.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from botocore.exceptions import ClientError

from mmpipe.local.server import LOOPBACK

log = logging.getLogger(__name__)

_INVOKE_PATH = re.compile(r"^/2015-03-31/functions/(?P<function>[^/]+)/invocations$")

# function (name, ARN or partial ARN) -> True when it is one of the runtime's functions
IsLocalFunction = Callable[[str], bool]


class LambdaEndpoint:
    """A ThreadingHTTPServer on 127.0.0.1 (a free port) forwarding Invoke to `lambda_client`.

    `is_local_function` keeps unknown names from reaching moto (which would answer for a function it
    cannot run): they get Lambda's ResourceNotFoundException.
    """

    def __init__(self, lambda_client: Any, is_local_function: IsLocalFunction) -> None:
        self._client = lambda_client
        self._is_local = is_local_function
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the Lambda endpoint is not running")
        return f"http://{LOOPBACK}:{self._server.server_address[1]}"

    def start(self) -> LambdaEndpoint:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # the http.server API
                endpoint._answer(self)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("lambda endpoint: " + format, *args)

        server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="lambda-endpoint", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _answer(self, request: BaseHTTPRequestHandler) -> None:
        url = urlsplit(request.path)
        match = _INVOKE_PATH.match(url.path)
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        if match is None:
            _send_error(request, 404, "UnknownOperationException", f"only Invoke is served here: {url.path}")
            return
        function = unquote(match.group("function"))
        qualifiers = parse_qs(url.query).get("Qualifier") or []
        if not self._is_local(function):
            _send_error(request, 404, "ResourceNotFoundException", f"Function not found: {function}")
            return
        kwargs: dict[str, Any] = {
            "FunctionName": function,
            "Payload": body,
            "InvocationType": request.headers.get("X-Amz-Invocation-Type") or "RequestResponse",
        }
        if qualifiers:
            kwargs["Qualifier"] = qualifiers[0]
        if request.headers.get("X-Amz-Client-Context"):
            kwargs["ClientContext"] = request.headers["X-Amz-Client-Context"]
        try:
            response = self._client.invoke(**kwargs)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 400)
            _send_error(request, status, str(error.get("Code")), str(error.get("Message")))
            return
        payload = response["Payload"].read()
        request.send_response(int(response["StatusCode"]))
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(payload)))
        request.send_header("x-amzn-RequestId", response["ResponseMetadata"].get("RequestId", ""))
        if response.get("ExecutedVersion"):
            request.send_header("X-Amz-Executed-Version", response["ExecutedVersion"])
        if response.get("FunctionError"):
            request.send_header("X-Amz-Function-Error", response["FunctionError"])
        request.end_headers()
        request.wfile.write(payload)


def _send_error(request: BaseHTTPRequestHandler, status: int, code: str, message: str) -> None:
    body = json.dumps({"Type": "User", "message": message}).encode()
    request.send_response(status)
    request.send_header("Content-Type", "application/json")
    request.send_header("Content-Length", str(len(body)))
    request.send_header("x-amzn-ErrorType", code)
    request.end_headers()
    request.wfile.write(body)
