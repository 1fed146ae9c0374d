"""The state file of a running `mmpipe local up`: how another process finds the local runtime.

`mmpipe local up` writes it once the runtime is up and removes it when it stops; `mmpipe status --local`,
`mmpipe redrive --local` and `mmpipe invoke` (attached) read it. It holds addresses and resource names
only (no credentials: moto takes any).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_STATE_FILE = Path(".mmpipe/local.json")
STATE_VERSION = 1


class LocalStateError(RuntimeError):
    """No usable state file: missing, malformed, or written by a process that is gone."""


@dataclass(frozen=True)
class LocalState:
    """Where a running local runtime listens and what its stack created."""

    pid: int
    endpoint_url: str  # moto's server: every AWS API but Lambda Invoke
    lambda_endpoint_url: str  # Lambda Invoke, answered by the runtime's in-process handlers
    region: str
    account_id: str
    stack_name: str
    state_machine_arn: str
    landing_bucket: str
    lake_bucket: str
    glue_database_prefix: str
    topic_arn: str
    ingest_queue_url: str
    dead_letter_queue_url: str
    started_at: str
    functions: dict[str, str] = field(default_factory=dict)  # logical id -> function name
    inbox: str | None = None
    log_file: str | None = None
    version: int = STATE_VERSION

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LocalState:
        names = {f.name for f in dataclasses.fields(cls)}
        missing = sorted(f.name for f in dataclasses.fields(cls) if f.name not in data and _required(f))
        if missing:
            raise LocalStateError(f"the state file lacks {', '.join(missing)}")
        if data.get("version", STATE_VERSION) != STATE_VERSION:
            raise LocalStateError(f"state file version {data.get('version')} is not {STATE_VERSION}")
        return cls(**{k: v for k, v in data.items() if k in names})


def _required(f: dataclasses.Field[Any]) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def write_state(path: Path, state: LocalState) -> None:
    """Write atomically (a reader never sees half a file); creates the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as out:
            out.write(state.to_json())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_state(path: Path) -> LocalState:
    """The state of a running `mmpipe local up`.

    Raises LocalStateError when the file is missing or malformed, or when the process that wrote it is no
    longer running (a stale file left by a killed process).
    """
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise LocalStateError(
            f"no {path}: start the local runtime with `mmpipe local up --inbox DIR`"
        ) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise LocalStateError(f"{path} is not a state file: {exc}") from exc
    if not isinstance(data, dict):
        raise LocalStateError(f"{path} is not a state file: not a JSON object")
    state = LocalState.from_dict(data)
    if not pid_alive(state.pid):
        raise LocalStateError(f"{path} was written by process {state.pid}, which is gone (stale state file)")
    return state


def remove_state(path: Path, pid: int) -> None:
    """Remove the state file if it is still the one process `pid` wrote."""
    with contextlib.suppress(FileNotFoundError, json.JSONDecodeError, OSError):
        if json.loads(path.read_text()).get("pid") == pid:
            path.unlink()


def pid_alive(pid: int) -> bool:
    """True if a process with this id exists (signal 0 checks without signalling)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True
