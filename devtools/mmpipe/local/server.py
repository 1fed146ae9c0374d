"""moto's server, in-process on a loopback port, configured to really execute state machines.

One server serves the whole process: backends are process-global in moto anyway, and handlers create
their boto3 clients at import time (the Lambda best practice), capturing the endpoint URL. Keeping the
port stable for the life of the process keeps those clients valid across several `LocalRuntime`s (test
modules); each runtime resets the backends instead of restarting the server.
"""

from __future__ import annotations

import atexit
import json
import logging
import threading
import urllib.request
from typing import Any

from moto.server import ThreadedMotoServer

from mmpipe.local import moto_patches

# Step Functions: execute the ASL with moto's interpreter (default is a no-op execution).
# Lambda: never start containers; Invoke is answered in-process by the invoker's botocore hook anyway.
MOTO_CONFIG: dict[str, Any] = {
    "stepfunctions": {"execute_state_machine": True},
    "lambda": {"use_docker": False},
}

LOOPBACK = "127.0.0.1"


class MotoServer:
    """A `ThreadedMotoServer` bound to 127.0.0.1 on a port chosen by the OS.

    `start()` is idempotent; `configure()` and `reset()` talk to moto's control API (`/moto-api/...`).
    Failure modes: `start()` raises OSError if no loopback port can be bound; the control calls raise
    `urllib.error.URLError` if the server is not running.
    """

    def __init__(self) -> None:
        self._server: ThreadedMotoServer | None = None
        self._port: int | None = None
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the moto server is not running; call start() first")
        return self._port

    @property
    def endpoint_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> None:
        with self._lock:
            if self._server is not None:
                return
            _quiet_request_logging()
            moto_patches.apply()
            # Port 0: the OS picks a free port at bind time, so two processes can never race for one.
            server = ThreadedMotoServer(ip_address=LOOPBACK, port=0, verbose=False)
            server.start()
            self._port = server.get_host_and_port()[1]
            self._server = server

    def stop(self) -> None:
        with self._lock:
            if self._server is None:
                return
            self._server.stop()
            self._server = None
            self._port = None

    def configure(self, config: dict[str, Any] | None = None) -> None:
        """Apply moto's runtime config (defaults to `MOTO_CONFIG`)."""
        self._post("/moto-api/config", config if config is not None else MOTO_CONFIG)

    def current_config(self) -> dict[str, Any]:
        """moto's runtime config as it is now (to restore it later with `configure`).

        moto's GET omits the Step Functions setting; absent means off (moto's default), which is what
        a restore then sets.
        """
        with urllib.request.urlopen(self.endpoint_url + "/moto-api/config", timeout=30) as response:  # noqa: S310
            config: dict[str, Any] = json.loads(response.read())
        config.setdefault("stepfunctions", {"execute_state_machine": False})
        return config

    def reset(self) -> None:
        """Drop every resource of every backend (the server keeps running)."""
        self._post("/moto-api/reset", None)

    def _post(self, path: str, body: dict[str, Any] | None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        request = urllib.request.Request(  # noqa: S310 - always http://127.0.0.1:<port>
            self.endpoint_url + path,
            data=data,
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback URL built above
            response.read()


def _quiet_request_logging() -> None:
    # werkzeug logs one line per request at INFO; a pipeline run makes thousands of requests.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)


_process_server = MotoServer()
_process_server_lock = threading.Lock()
_stop_registered = False


def process_server() -> MotoServer:
    """The process-wide server, started on first use and stopped at interpreter exit."""
    global _stop_registered
    with _process_server_lock:
        if not _process_server.running:
            _process_server.start()
        if not _stop_registered:
            atexit.register(_process_server.stop)
            _stop_registered = True
        return _process_server
