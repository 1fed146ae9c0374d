"""`mmpipe local run`: drop a folder into the local landing bucket and let the events drive the pipeline.

Nothing here calls a handler or the state machine directly: the files are uploaded, S3 notifies SQS, the
event-source poller invokes the trigger, the trigger starts executions, and this module only watches and
then writes what a person needs (run.json, tables/, quarantine.jsonl, logs.jsonl).

SIGINT (Ctrl-C) and SIGTERM both unwind `run()` (mmpipe.local.signals): the runtime stops, which ends the
running jobs (the radiomics / training job subprocesses and their workers) and removes their folders; the
exit code is 130 or 143 (128 + the signal), as shells expect. At start it ends the jobs and removes the
folders that a killed `local run` / `local up` left (mmpipe.local.job_processes) and says so in one line.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mmhealth.classify import MARKER_NAME
from mmpipe import report
from mmpipe.local.signals import exits_cleanly_on_signals

TERMINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}


def delivery_files(input_dir: Path) -> list[Path]:
    """Every file under the folder, skipping hidden files and folders (e.g. the cohort's .truth/)."""
    files = []
    for path in sorted(input_dir.rglob("*")):
        rel = path.relative_to(input_dir)
        if path.is_file() and not any(part.startswith(".") for part in rel.parts):
            files.append(path)
    return files


def route_handler_logs(log_file: Path) -> None:
    """Send the handlers' structured JSON logs (and pyiceberg's) to a file: the console shows progress only."""
    from mmhealth.observability import logger as powertools_logger

    handler = logging.FileHandler(log_file)
    handler.setFormatter(powertools_logger.registered_formatter)
    for name in (powertools_logger.service, "pyiceberg"):
        target = logging.getLogger(name)
        for existing in list(target.handlers):
            target.removeHandler(existing)
        target.addHandler(handler)
        target.propagate = False
    # An overwrite into an empty table "deletes nothing": expected on a table's first commit.
    warnings.filterwarnings("ignore", message="Delete operation did not match any records")


class Progress:
    """One status line every few seconds on stderr: uploads, queue depth, executions by status."""

    def __init__(self, stream: Any = sys.stderr, every: float = 2.0) -> None:
        self.stream = stream
        self.every = every
        self.started = time.monotonic()
        self.last = 0.0

    def due(self) -> bool:
        return time.monotonic() - self.last >= self.every

    def show(self, message: str, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.last >= self.every:
            self.last = now
            print(f"[{now - self.started:6.1f}s] {message}", file=self.stream, flush=True)


@exits_cleanly_on_signals
def run(
    input_dir: Path, out_dir: Path, delivery: str | None, timeout: float, parameters: dict[str, str]
) -> int:
    """Upload, wait for every execution the delivery starts, write the outputs. 0 only if all succeeded."""
    from mmpipe.local.runtime import LocalRuntime

    files = delivery_files(input_dir)
    if not files:
        print(f"error: no files under {input_dir}", file=sys.stderr)
        return 2
    out_dir.mkdir(parents=True, exist_ok=True)
    delivery = delivery or datetime.now(UTC).strftime("delivery-%Y%m%dT%H%M%SZ")
    progress = Progress()
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")  # EMF would flood the console locally
    route_handler_logs(out_dir / "logs.jsonl")
    # Events are not held back while uploading: the trigger records files as they land (the delivery is one
    # run whatever the batching: its completion marker closes it), which keeps the ingest queue short: moto
    # scans the whole queue on every ReceiveMessage (see mmpipe.local.moto_patches for what it costs).
    with LocalRuntime(parameters=parameters, max_batching_window=LOCAL_BATCHING_WINDOW) as runtime:
        progress.show(f"local runtime up at {runtime.endpoint_url}; uploading {len(files)} files", force=True)
        started = time.monotonic()
        _upload(runtime, input_dir, files, delivery, progress)
        uploaded = time.monotonic() - started
        executions = _wait(runtime, timeout, progress)
        wall = time.monotonic() - started
        return _write_outputs(runtime, out_dir, delivery, files, executions, (uploaded, wall), progress)


LOCAL_BATCHING_WINDOW = 5.0


def _upload(runtime: Any, input_dir: Path, files: list[Path], delivery: str, progress: Progress) -> None:
    done = 0

    def put(path: Path) -> None:
        runtime.upload(path, f"incoming/{delivery}/{path.relative_to(input_dir).as_posix()}")

    with ThreadPoolExecutor(max_workers=4) as pool:
        for start in range(0, len(files), 50):
            for _ in pool.map(put, files[start : start + 50]):
                done += 1
            progress.show(f"uploaded {done}/{len(files)}")
    if MARKER_NAME not in {path.name for path in files}:
        runtime.complete(delivery)  # last, as ops would: the marker lists every uploaded file
    progress.show(
        f"uploaded {done}/{len(files)} files to s3://{runtime.landing_bucket}/incoming/{delivery}/", True
    )


def _wait(runtime: Any, timeout: float, progress: Progress) -> list[dict[str, Any]]:
    """Until the ingest queue is drained, no batch is in flight and every execution has finished."""
    deadline = time.monotonic() + timeout
    while True:
        executions = runtime.executions()
        by_status: dict[str, int] = {}
        for execution in executions:
            by_status[execution["status"]] = by_status.get(execution["status"], 0) + 1
        summary = ", ".join(f"{n} {s.lower()}" for s, n in sorted(by_status.items())) or "none yet"
        finished = bool(executions) and all(e["status"] in TERMINAL for e in executions)
        # Queue depth is costly to ask moto for (it scans every message): only once the runs look done.
        idle = finished and runtime.event_sources_idle()
        if progress.due():
            progress.show(f"executions: {summary}{_phases(runtime, executions)}")
        if idle:
            return executions
        if time.monotonic() > deadline:
            progress.show(f"timed out after {timeout:.0f}s", force=True)
            return executions
        time.sleep(1.0)


def _phases(runtime: Any, executions: list[dict[str, Any]]) -> str:
    """One "; RUN: PHASE" per running execution (the console's phase names), read from its history."""
    from mmpipe.console import phase
    from mmpipe.status import execution_history, open_states

    sfn = runtime.client("stepfunctions")
    running = [e for e in executions if e["status"] not in TERMINAL]
    return "".join(
        f"; {e['name']}: {phase(open_states(execution_history(sfn, e['executionArn']))) or 'starting'}"
        for e in running
    )


def _write_outputs(
    runtime: Any,
    out_dir: Path,
    delivery: str,
    files: list[Path],
    executions: list[dict[str, Any]],
    seconds: tuple[float, float],
    progress: Progress,
) -> int:
    """run.json and the exports; `seconds` = (upload, whole wall time)."""
    uploaded, wall = seconds
    import boto3

    sfn = boto3.client("stepfunctions")
    s3 = boto3.client("s3")
    runs = [report.describe_execution(sfn, s3, runtime.lake_bucket, e["executionArn"]) for e in executions]
    tables = report.export_tables(out_dir, runtime.outputs["GlueDatabasePrefix"])
    quarantined = report.export_quarantine(out_dir, s3, runtime.lake_bucket, [r["run_id"] for r in runs])
    training = report.export_training(out_dir, s3, runs)
    ok = bool(runs) and all(r["status"] == "SUCCEEDED" for r in runs)
    modalities: dict[str, dict[str, int]] = {}
    for execution in runs:
        for name, entry in ((execution.get("summary") or {}).get("modalities") or {}).items():
            counts = modalities.setdefault(
                name, {"files": 0, "quarantined": 0, "runs_failed": 0, "files_not_ingested": 0}
            )
            counts["files"] += int(entry.get("files", 0))
            if entry.get("status") == "not-ingested":
                counts["files_not_ingested"] += int(entry.get("files", 0))
            counts["quarantined"] += int(entry.get("quarantined", 0))
            counts["runs_failed"] += entry.get("status") == "failed"
            for table, rows in (entry.get("tables") or {}).items():
                counts[f"rows_committed:{table}"] = counts.get(f"rows_committed:{table}", 0) + int(rows)
    document = {
        "delivery": delivery,
        "status": "SUCCEEDED" if ok else "FAILED",
        "files_delivered": len(files),
        "wall_seconds": round(wall, 2),
        "upload_seconds": round(uploaded, 2),
        "executions": runs,
        "modalities": modalities,
        "tables": tables,
        "quarantined": quarantined,
        "training": training,
        "invocations": runtime.invocation_stats(),
    }
    (out_dir / "run.json").write_text(json.dumps(document, indent=2, default=str))
    progress.show(
        f"{document['status']}: {len(runs)} execution(s), {quarantined} quarantined, outputs in {out_dir}",
        True,
    )
    return 0 if ok else 1
