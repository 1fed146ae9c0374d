"""Optimistic locking for Glue UpdateTable, which moto does not enforce.

Iceberg's Glue catalog (pyiceberg, Athena, Spark) commits by UpdateTable with the VersionId it read;
AWS Glue rejects the update with ConcurrentModificationException when the table changed meanwhile, and
the writer retries on fresh metadata. moto ignores VersionId, so two runs committing to the same table at
once silently lose one run's rows. This botocore `before-call` hook (the same mechanism as the in-process
Lambda invoker; moto itself is not patched) gives moto's Glue the AWS behaviour: under one process-wide
lock it compares the caller's VersionId with the table's current one, and either performs the update or
answers ConcurrentModificationException exactly as Glue does.

Only the local runtime and the tests install it; the deployed functions never load this module.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any, cast

import boto3
import botocore.handlers
from botocore.awsrequest import AWSResponse

_EVENT = "before-call.glue.UpdateTable"
_lock = threading.Lock()
_inside = threading.local()
_clients: dict[str, Any] = {}


def register_glue_locking_hook() -> None:
    """Add the hook to botocore's built-in handlers (idempotent); sessions created afterwards use it."""
    with _lock:
        if (_EVENT, _enforce_version_id) not in botocore.handlers.BUILTIN_HANDLERS:
            botocore.handlers.BUILTIN_HANDLERS.append((_EVENT, _enforce_version_id))


def _glue() -> Any:
    endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
    if endpoint not in _clients:
        _clients[endpoint] = boto3.session.Session().client("glue", endpoint_url=endpoint or None)
    return _clients[endpoint]


def _enforce_version_id(params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
    """Perform a VersionId-guarded UpdateTable atomically, or answer ConcurrentModificationException."""
    if getattr(_inside, "active", False) or not os.environ.get("AWS_ENDPOINT_URL"):
        return None  # our own inner call, or a real AWS endpoint (which enforces this itself)
    request = json.loads(params.get("body") or b"{}")
    expected = request.get("VersionId")
    if expected is None:
        return None
    with _lock:
        _inside.active = True
        try:
            glue = _glue()
            table = glue.get_table(DatabaseName=request["DatabaseName"], Name=request["TableInput"]["Name"])
            current = table["Table"].get("VersionId")
            if current != expected:
                message = f"Update table failed due to concurrent modifications (version {expected} is not {current})"
                error = {"Error": {"Code": "ConcurrentModificationException", "Message": message}}
                return AWSResponse(params.get("url", ""), 400, cast(Any, {}), None), error
            glue.update_table(**request)
            return AWSResponse(params.get("url", ""), 200, cast(Any, {}), None), {
                "ResponseMetadata": {"HTTPStatusCode": 200}
            }
        finally:
            _inside.active = False
