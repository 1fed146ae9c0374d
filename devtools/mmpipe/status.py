"""`mmpipe status`: recent executions, and for one run (or each wave of a delivery) its progress, counts,
quarantine and failure.

Reads only public AWS APIs (Step Functions ListExecutions / DescribeExecution / GetExecutionHistory, S3
reads of runs/<run>/manifest.json, summary.json and quarantine/*.json), so the same code answers for a
deployed stack and for the local runtime. Output carries identifiers, counts, states and reasons; never a
file's contents, and not a quarantine record's `detail` (a validation message can quote the rejected
value).
"""

from __future__ import annotations

import difflib
import json
import re
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from mmhealth.lakehouse.layout import RunPaths
from mmhealth.naming import delivery_slug, parse_run_name
from mmhealth.runs import short_cause
from mmpipe.statemachine import BRANCHES
from mmpipe.targets import Target

TERMINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}
FAILED = {"FAILED", "TIMED_OUT", "ABORTED"}
QUARANTINE_FIELDS = ("key", "modality", "stage", "reason", "line")


class RunNotFoundError(LookupError):
    """No execution of that name (or ARN) on the state machine, and no delivery of that name."""


# --- executions ------------------------------------------------------------------------------------------


def execution_arn(state_machine_arn: str, name: str) -> str:
    """arn:aws:states:<region>:<account>:stateMachine:<sm> -> ...:execution:<sm>:<name>"""
    return state_machine_arn.replace(":stateMachine:", ":execution:", 1) + f":{name}"


def run_id_of(description: dict[str, Any]) -> str:
    """The run id is the execution input's `run_id` (a re-started run's execution is named `<run>-r<n>`)."""
    try:
        run_id = json.loads(description.get("input") or "{}").get("run_id")
    except (json.JSONDecodeError, AttributeError):
        run_id = None
    return str(run_id or description["name"])


def describe(sfn: Any, arn: str) -> dict[str, Any] | None:
    """DescribeExecution, or None when there is no such execution (or the name could not be one: a
    delivery name with a space makes an ARN Step Functions rejects as invalid)."""
    try:
        return dict(sfn.describe_execution(executionArn=arn))
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("ExecutionDoesNotExist", "InvalidArn"):
            return None
        raise


_ATTEMPT = re.compile(r"^(?P<run>.+)-r(?P<n>\d+)$")


def attempts(target: Target, run: str) -> list[dict[str, Any]]:
    """Every execution of a run, oldest first: the one named RUN (or the ARN given), then the restarts
    `mmpipe redrive` started where RedriveExecution is not available (`RUN-r1`, `RUN-r2`, ...).

    Raises RunNotFoundError when there is none.
    """
    sfn = target.client("stepfunctions")
    if run.startswith("arn:"):
        description = describe(sfn, run)
        if description is None:
            raise RunNotFoundError(f"no execution {run}")
        return [description]
    first = describe(sfn, execution_arn(target.state_machine_arn, run))
    if first is None:
        raise RunNotFoundError(f"no execution named {run} on {target.state_machine_arn}")
    found = [first]
    for n in range(1, 1000):
        restart = describe(sfn, execution_arn(target.state_machine_arn, f"{run}-r{n}"))
        if restart is None:
            break
        found.append(restart)
    return found


def next_attempt_name(target: Target, run: str) -> str:
    """The name for a new execution of a run: `<run>-r<n>` with n one past the last restart."""
    base, _ = split_attempt(run)
    try:
        return f"{base}-r{len(attempts(target, base))}"
    except RunNotFoundError:
        return f"{base}-r1"


def listed_executions(target: Target, limit: int | None = None) -> list[dict[str, Any]]:
    """ListExecutions of the state machine, newest first: the newest `limit`, or every one kept (Step
    Functions keeps an execution 90 days after it stopped)."""
    sfn = target.client("stepfunctions")
    listed: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {
        "stateMachineArn": target.state_machine_arn,
        "maxResults": min(limit or 1000, 1000),
    }
    while limit is None or len(listed) < limit:
        page = sfn.list_executions(**kwargs)
        listed.extend(page["executions"])
        if not page.get("nextToken"):
            break
        kwargs["nextToken"] = page["nextToken"]
    listed.sort(key=lambda e: e["startDate"], reverse=True)
    return listed[:limit]


def recent_executions(target: Target, limit: int = 20) -> list[dict[str, Any]]:
    """The newest `limit` executions, newest first, each with its run id and (if it failed) its cause."""
    sfn = target.client("stepfunctions")
    return [
        execution_row(describe(sfn, summary["executionArn"]) or dict(summary))
        for summary in listed_executions(target, limit)
    ]


# --- a name people type: a run, or a delivery and its waves ----------------------------------------------


def split_attempt(name: str) -> tuple[str, int]:
    """`<run>-r<n>` -> (run, n); a run's first execution -> (name, 0)."""
    match = _ATTEMPT.match(name)
    return (match.group("run"), int(match.group("n"))) if match else (name, 0)


# Run ids before waves: `<delivery, made safe, at most 50 characters>-<20 hex of the run's objects>`.
_OLDER_RUN = re.compile(r"^(?P<delivery>.+)-[0-9a-f]{20}$")


def delivery_of(run: str) -> str | None:
    """The delivery part of a run id (a wave's slug, or an older run id's delivery); None for other names."""
    parsed = parse_run_name(run)
    if parsed is not None:
        return parsed[0]
    older = _OLDER_RUN.match(run)
    return older.group("delivery") if older else None


def delivery_runs(target: Target, delivery: str, listed: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """A delivery's runs, newest first, each as its executions oldest first (as `attempts` gives them): the
    executions whose name, less a restart's `-r<n>`, is a run name of the delivery's slug (its waves) or an
    older run id of the delivery."""
    slug = delivery_slug(delivery)
    runs: dict[str, list[tuple[int, str]]] = {}
    for summary in listed:
        run, attempt = split_attempt(summary["name"])
        if delivery_of(run) == slug:
            runs.setdefault(run, []).append((attempt, summary["executionArn"]))
    sfn = target.client("stepfunctions")
    found = []
    for executions in runs.values():
        described = [describe(sfn, arn) for _, arn in sorted(executions)]
        found.append([d for d in described if d is not None])
    found.sort(key=lambda run: run[0]["startDate"], reverse=True)
    return found


def find_runs(target: Target, name: str) -> tuple[str | None, list[list[dict[str, Any]]]]:
    """What NAME means: (None, [the run]) for an execution name or ARN, else (NAME, the delivery's runs,
    newest first); each run as its executions oldest first. Raises RunNotFoundError with a did-you-mean."""
    try:
        return None, [attempts(target, name)]
    except RunNotFoundError:
        if name.startswith("arn:"):
            raise
    delivery = name.removeprefix("incoming/").rstrip("/")  # the landing folder, pasted, names it too
    listed = listed_executions(target)
    runs = delivery_runs(target, delivery, listed)
    if not runs:
        raise RunNotFoundError(
            f"no run or delivery {name!r} on {target.description}{_did_you_mean(delivery, listed)}"
        )
    return delivery, runs


def _did_you_mean(name: str, listed: list[dict[str, Any]]) -> str:
    """The closest delivery names, else the closest run names (a delivery's runs would crowd it out)."""
    runs = {split_attempt(summary["name"])[0] for summary in listed}
    deliveries = {delivery for run in runs if (delivery := delivery_of(run)) is not None}
    close = difflib.get_close_matches(name, sorted(deliveries), n=3) or difflib.get_close_matches(
        name, sorted(runs), n=3
    )
    if not close:
        return "; `mmpipe status` lists the recent executions"
    choices = close[0] if len(close) == 1 else f"{', '.join(close[:-1])} or {close[-1]}"
    return f"; did you mean {choices}?"


def execution_row(description: dict[str, Any]) -> dict[str, Any]:
    """One execution as status reports it (JSON-ready)."""
    start, stop = description["startDate"], description.get("stopDate")
    row: dict[str, Any] = {
        "execution": description["name"],
        "execution_arn": description["executionArn"],
        "run_id": run_id_of(description),
        "status": description["status"],
        "started_at": _iso(start),
        "stopped_at": _iso(stop),
        "seconds": round((stop - start).total_seconds(), 1) if stop else None,
    }
    if description.get("redriveCount"):
        row["redrive_count"] = description["redriveCount"]
    if description["status"] in FAILED:
        row["error"] = description.get("error")
        row["cause"] = short_cause(description.get("cause") or "")
    return row


# --- history ---------------------------------------------------------------------------------------------


def execution_history(sfn: Any, arn: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for page in sfn.get_paginator("get_execution_history").paginate(executionArn=arn):
        events.extend(page["events"])
    return events


def _details(event: dict[str, Any]) -> dict[str, Any]:
    for key, value in event.items():
        if key.endswith("EventDetails") and isinstance(value, dict):
            return value
    return {}


def _is_failure(event: dict[str, Any]) -> bool:
    kind = event["type"]
    return kind.endswith(("Failed", "TimedOut", "Aborted")) and not kind.startswith("Execution")


def state_of(event: dict[str, Any], by_id: dict[int, dict[str, Any]]) -> str | None:
    """The state an event belongs to: the nearest *StateEntered up its previousEventId chain."""
    seen = 0
    current: dict[str, Any] | None = event
    while current is not None and seen < 10_000:
        if current["type"].endswith("StateEntered"):
            return str(current["stateEnteredEventDetails"]["name"])
        current = by_id.get(current.get("previousEventId") or 0)
        seen += 1
    return None


def failures(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every failed attempt of a state, with what became of it: `retried` (the state's Retry ran it again),
    `caught` (a Catch took over) or `uncaught` (the execution failed there)."""
    by_id = {e["id"]: e for e in events}
    following: dict[int, dict[str, Any]] = {}
    for event in events:
        previous = event.get("previousEventId")
        if previous and previous not in following:
            following[previous] = event
    found = []
    for event in events:
        if not _is_failure(event):
            continue
        details = _details(event)
        if not (details.get("error") or details.get("cause")):
            continue  # e.g. MapStateFailed / ParallelStateFailed: the cause is on the failed task
        after = following.get(event["id"])
        caught_by = None
        if after is None or after["type"].startswith("Execution"):
            outcome = "uncaught"
        elif after["type"].endswith(("Scheduled", "Started")):
            outcome = "retried"
        else:
            outcome = "caught"
            target = following.get(after["id"])
            if target is not None and target["type"].endswith("StateEntered"):
                caught_by = target["stateEnteredEventDetails"]["name"]
        found.append(
            {
                "state": state_of(event, by_id),
                "event": event["type"],
                "error": details.get("error"),
                "cause": short_cause(details.get("cause") or ""),
                "outcome": outcome,
                "caught_by": caught_by,
                "at": _iso(event.get("timestamp")),
            }
        )
    return found


def failing_state(failed: list[dict[str, Any]], events: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Where a failed run went wrong: the first failure neither retried nor caught into a chunk's
    quarantine (those are file-level problems the run goes on after), else the state it ended in."""
    final = [f for f in failed if f["outcome"] != "retried"]
    run_level = [f for f in final if not _CHUNK_FAILURE.match(f.get("caught_by") or "")]
    if run_level:
        return run_level[0]
    return final[0] if final else execution_failure(events)


_CHUNK_FAILURE = re.compile(r"^Record\w+ChunkFailure$")


def execution_failure(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    """ExecutionFailed / TimedOut / Aborted: the state it ended in, its error and cause."""
    by_id = {e["id"]: e for e in events}
    for event in reversed(events):
        if event["type"] in ("ExecutionFailed", "ExecutionTimedOut", "ExecutionAborted"):
            details = _details(event)
            return {
                "state": state_of(event, by_id),
                "error": details.get("error"),
                "cause": short_cause(details.get("cause") or ""),
            }
    return None


def state_counts(events: Iterable[dict[str, Any]]) -> tuple[Counter[str], Counter[str]]:
    """How often each state was entered and exited."""
    entered: Counter[str] = Counter()
    exited: Counter[str] = Counter()
    for event in events:
        if event["type"].endswith("StateEntered"):
            entered[event["stateEnteredEventDetails"]["name"]] += 1
        elif event["type"].endswith("StateExited"):
            exited[event["stateExitedEventDetails"]["name"]] += 1
    return entered, exited


def modality_progress(
    events: list[dict[str, Any]], manifest: dict[str, Any] | None
) -> dict[str, dict[str, Any]]:
    """Per modality of the run: files and chunks (manifest), chunks done / failed and phase (history)."""
    entered, exited = state_counts(events)
    chunks: Counter[str] = Counter()
    files: Counter[str] = Counter()
    for ref in (manifest or {}).get("chunks", []):
        chunks[ref["modality"]] += 1
        files[ref["modality"]] += int(ref.get("files", 0))
    progress: dict[str, dict[str, Any]] = {}
    for modality, p in BRANCHES.items():
        if not chunks[modality] and not entered[f"Has{p}Files"]:
            continue
        final_catalog = "CatalogRadiomics" if modality == "imaging" else f"Catalog{p}"
        if entered[f"{p}Skipped"]:
            phase = "skipped"
        elif entered[f"{p}Failed"]:
            phase = "failed"
        elif exited[final_catalog]:
            phase = "done"
        elif modality == "imaging" and exited["CatalogImaging"]:
            phase = "radiomics"
        elif entered[f"Catalog{p}"]:
            phase = "cataloguing"
        elif entered[f"Import{p}Chunks"]:
            phase = "importing"
        else:
            phase = "pending"
        progress[modality] = {
            "phase": phase,
            "files": files[modality],
            "chunks": chunks[modality],
            "chunks_done": exited[f"{p}ChunkDone"],
            "chunks_failed": exited[f"Record{p}ChunkFailure"],
        }
    return progress


def open_states(events: list[dict[str, Any]]) -> dict[str, int]:
    """States entered and not yet exited (what a running execution is doing now), with how many."""
    entered, exited = state_counts(events)
    return {name: n - exited[name] for name, n in sorted(entered.items()) if n > exited[name]}


# --- the run's files in the lake -------------------------------------------------------------------------


def read_json(s3: Any, bucket: str, key: str) -> dict[str, Any] | None:
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
            return None
        raise
    data = json.loads(body)
    return data if isinstance(data, dict) else None


def quarantined(s3: Any, bucket: str, run_id: str, limit: int) -> tuple[int, list[dict[str, Any]]]:
    """(how many records the run has, up to `limit` of them: key, modality, stage, reason, line)."""
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=RunPaths(run_id).quarantine_prefix
    ):
        keys.extend(item["Key"] for item in page.get("Contents", []))
    records = []
    for key in sorted(keys)[:limit]:
        record = read_json(s3, bucket, key) or {}
        records.append({name: record.get(name) for name in QUARANTINE_FIELDS})
    records.sort(key=lambda r: (str(r["key"]), r["line"] or 0))
    return len(keys), records


# --- one run ---------------------------------------------------------------------------------------------


def status_of(target: Target, name: str, quarantine_limit: int = 100) -> dict[str, Any]:
    """Everything `mmpipe status --run NAME` shows, JSON-ready: a run's document (see run_document) or, for a
    delivery, {"delivery", "slug", "runs": [a document per run, newest first]}. Raises RunNotFoundError."""
    delivery, runs = find_runs(target, name)
    documents = [run_document(target, executions, quarantine_limit) for executions in runs]
    if delivery is None:
        return documents[0]
    return {"delivery": delivery, "slug": delivery_slug(delivery), "runs": documents}


def run_status(target: Target, run: str, quarantine_limit: int = 100) -> dict[str, Any]:
    """One run's document, by execution name or ARN. Raises RunNotFoundError."""
    return run_document(target, attempts(target, run), quarantine_limit)


def exit_code(document: dict[str, Any]) -> int:
    """1 when the run, or any run of the delivery, failed, timed out or was aborted (its newest attempt);
    else 0 (succeeded, or still running)."""
    runs = document.get("runs", [document])
    return 1 if any(run["execution"]["status"] in FAILED for run in runs) else 0


def run_document(target: Target, executions: list[dict[str, Any]], quarantine_limit: int) -> dict[str, Any]:
    """A run's progress, counts, failure and quarantine from its executions (oldest first; the newest is
    the one that counts)."""
    latest = executions[-1]
    run_id = run_id_of(latest)
    sfn, s3 = target.client("stepfunctions"), target.client("s3")
    events = execution_history(sfn, latest["executionArn"])
    paths = RunPaths(run_id)
    manifest = read_json(s3, target.lake_bucket, paths.manifest)
    # While the newest attempt runs, a summary can only be an earlier attempt's: not this one's outcome.
    finished = latest["status"] in TERMINAL
    summary = read_json(s3, target.lake_bucket, paths.summary) if finished else None
    total, records = quarantined(s3, target.lake_bucket, run_id, quarantine_limit)
    progress = modality_progress(events, manifest)
    for name, entry in ((summary or {}).get("modalities") or {}).items():
        merged = progress.setdefault(name, {"phase": entry.get("status")})
        merged["status"] = entry.get("status")
        for key in ("files", "tables", "quarantined", "error", "cause"):
            if entry.get(key) is not None:
                merged[key] = entry[key]
    failed = failures(events)
    parsed = parse_run_name(run_id)
    document: dict[str, Any] = {
        "run_id": run_id,
        "wave": parsed[1] if parsed else None,
        "execution": execution_row(latest),
        "attempts": [execution_row(e) for e in executions[:-1]],
        "deliveries": (manifest or {}).get("deliveries", []),
        "unknown_files": len((manifest or {}).get("unknown", [])),
        "modalities": progress,
        "open_states": {} if finished else open_states(events),
        "failing_state": failing_state(failed, events) if latest["status"] in FAILED else None,
        "failures": failed,
        "execution_failure": execution_failure(events),
        "summary_status": (summary or {}).get("status"),
        "summary_cause": (summary or {}).get("cause"),
        "features": (summary or {}).get("features"),
        "training": (summary or {}).get("training"),
        "quarantined": total,
        "quarantine": records,
    }
    return document


# --- rendering -------------------------------------------------------------------------------------------


def render(document: dict[str, Any]) -> str:
    """`status --run`'s text: a delivery's runs, or one run."""
    return render_delivery(document) if "runs" in document else render_run(document)


def render_executions(rows: list[dict[str, Any]], where: str) -> str:
    if not rows:
        return f"no executions on {where}"
    lines = [f"executions on {where}, newest first:"]
    lines.append(f"  {_ROW_HEADER}  EXECUTION")
    for row in rows:
        name = row["execution"] + ("" if row["run_id"] == row["execution"] else f" (run {row['run_id']})")
        lines.append(f"  {_row(row)}  {name}")
        if row.get("error") or row.get("cause"):
            lines.append(f"  {'':<10} {error_text(row.get('error'), row.get('cause'))}")
    return "\n".join(lines)


def render_delivery(doc: dict[str, Any]) -> str:
    """One line per run of the delivery (newest first; a failed one with its failing state), then the
    newest run in detail."""
    runs = doc["runs"]
    statuses = Counter(run["execution"]["status"] for run in runs)
    counts = ", ".join(f"{n} {status.lower()}" for status, n in sorted(statuses.items()))
    lines = [f"delivery {doc['delivery']}: {len(runs)} run(s), {counts}; newest first:"]
    lines.append(f"  {'WAVE':<5} {_ROW_HEADER}  RUN")
    for run in runs:
        execution = run["execution"]
        wave = "-" if run["wave"] is None else f"w{run['wave']}"
        restarts = f" (restarted {len(run['attempts'])}x)" if run["attempts"] else ""
        lines.append(f"  {wave:<5} {_row(execution)}  {run['run_id']}{restarts}")
        failing = run["failing_state"]
        if failing:
            lines.append(
                f"  {'':<5} {'':<10} failing state {failing['state']}: "
                + error_text(failing["error"], failing["cause"])
            )
    lines.append("the newest run (`mmpipe status --run RUN` shows another):")
    lines.append(render_run(runs[0]))
    return "\n".join(lines)


_ROW_HEADER = f"{'STATUS':<10} {'STARTED (UTC)':<20} {'SECONDS':>8}"


def _row(row: dict[str, Any]) -> str:
    """An execution row's status, start and duration, in _ROW_HEADER's columns."""
    seconds = "-" if row["seconds"] is None else f"{row['seconds']:.1f}"
    return f"{row['status']:<10} {_short_time(row['started_at']):<20} {seconds:>8}"


def render_run(doc: dict[str, Any], quarantine_lines: int = 50) -> str:
    execution = doc["execution"]
    seconds = "" if execution["seconds"] is None else f" in {execution['seconds']:.1f} s"
    wave = f" (wave {doc['wave']})" if doc.get("wave") else ""
    lines = [f"run {doc['run_id']}{wave}: {execution['status']}{seconds}"]
    lines.append(f"  execution   {execution['execution_arn']}")
    lines.append(f"  started     {execution['started_at']}")
    for earlier in doc["attempts"]:
        lines.append(f"  earlier     {earlier['execution']}: {earlier['status']}")
    if doc["deliveries"]:
        lines.append(f"  deliveries  {', '.join(doc['deliveries'])}")
    if doc["open_states"]:
        now = ", ".join(f"{name}" + (f" x{n}" if n > 1 else "") for name, n in doc["open_states"].items())
        lines.append(f"  now in      {now}")
    lines.append("modalities:")
    if not doc["modalities"]:
        lines.append("  (none yet)")
    for name, entry in doc["modalities"].items():
        lines.append(f"  {name:<9} {_modality_line(entry)}")
    if doc["unknown_files"]:
        lines.append(f"  {'unknown':<9} {doc['unknown_files']} file(s) of no known type (quarantined)")
    failing = doc["failing_state"]
    if failing:
        lines.append(f"failing state: {failing['state']}: {error_text(failing['error'], failing['cause'])}")
        for failure in doc["failures"]:
            if failure != failing:
                lines.append(f"  also {failure['state']} ({_outcome(failure)}): {failure['error']}")
        ended = doc["execution_failure"]
        if ended and ended != failing:
            lines.append(
                f"  execution ended in {ended['state']}: {error_text(ended['error'], ended['cause'])}"
            )
    elif doc["failures"]:
        handled = Counter(f"{f['state']} {_outcome(f)}: {f['error']}" for f in doc["failures"])
        lines.append("handled failures: " + "; ".join(f"{k} (x{n})" for k, n in handled.items()))
    unlinked = (doc.get("features") or {}).get("unlinked")
    if unlinked is not None:
        lines.append(f"linkage: {linkage_line(unlinked)}")
    if doc["training"] is not None:
        lines.append(f"training: {training_line(doc['training'])}")
    lines.append(f"quarantined: {doc['quarantined']}")
    for record in doc["quarantine"][:quarantine_lines]:
        line = f" line {record['line']}" if record.get("line") else ""
        lines.append(
            f"  {record['reason']:<28} {record['modality']:<9} {record['stage']:<9} {record['key']}{line}"
        )
    hidden = doc["quarantined"] - min(len(doc["quarantine"]), quarantine_lines)
    if hidden > 0:
        lines.append(f"  ... and {hidden} more (--json --quarantine-limit N for all)")
    return "\n".join(lines)


def _outcome(failure: dict[str, Any]) -> str:
    caught_by = failure.get("caught_by")
    return f"caught by {caught_by}" if caught_by else str(failure["outcome"])


def _modality_line(entry: dict[str, Any]) -> str:
    parts = [str(entry.get("status") or entry.get("phase"))]
    if entry.get("files"):
        parts.append(f"{entry['files']} file(s)")
    if entry.get("chunks"):
        done = f"{entry.get('chunks_done', 0)}/{entry['chunks']} chunk(s) done"
        if entry.get("chunks_failed"):
            done += f", {entry['chunks_failed']} failed"
        parts.append(done)
    if entry.get("tables"):
        parts.append(", ".join(f"{table} +{rows}" for table, rows in entry["tables"].items()))
    if entry.get("quarantined"):
        parts.append(f"{entry['quarantined']} quarantined")
    line = "; ".join(parts)
    if entry.get("error") or entry.get("cause"):
        line += f"\n  {'':<9} {error_text(entry.get('error'), entry.get('cause'))}"
    return line


LINKAGE_NAMES = {
    "patient_id": "patient id(s) without a Patient resource",
    "identifier": "identifier(s) no Patient carries",
    "vcf_sample": "VCF sample(s)",
    "dicom_patient_id": "DICOM PatientID(s)",
}


def linkage_line(unlinked: dict[str, dict[str, Any]], shown: int = 5) -> str:
    """What identity resolution left unlinked, per source kind, with the first few of each (ids only)."""
    parts = []
    for kind, name in LINKAGE_NAMES.items():
        entry = unlinked.get(kind) or {}
        if entry.get("count"):
            first = ", ".join(entry.get("first", [])[:shown])
            more = " ..." if entry["count"] > shown else ""
            parts.append(f"{entry['count']} {name} unlinked ({first}{more})")
    return "; ".join(parts) if parts else "every patient reference, VCF sample and DICOM PatientID is linked"


def training_line(training: dict[str, Any]) -> str:
    """The run summary's training outcome in one line (skipped reason, failure, or artifacts + headline)."""
    if training.get("status") == "failed":
        return f"failed: {error_text(training.get('error'), training.get('cause'))}"
    if training.get("skipped"):
        reason = training["skipped"]
        return "skipped" if reason is True else f"skipped: {reason}"
    parts = [f"model {training.get('model_uri')}", f"report {training.get('report_uri')}"]
    for outcome, values in (training.get("headline") or {}).items():
        auc, f1 = values.get("roc_auc"), values.get("f1")
        parts.append(f"{outcome} AUC {_number(auc)} F1 {_number(f1)}")
    return "; ".join(parts)


def error_text(error: Any, cause: Any) -> str:
    """`error: cause`, without repeating the error when the cause already starts with it."""
    error, cause = str(error or ""), str(cause or "")
    if not cause or cause == error:
        return error or "-"
    if not error or cause.startswith(f"{error}:"):
        return cause
    return f"{error}: {cause}"


def _number(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _short_time(iso: str | None) -> str:
    return "" if iso is None else iso[:19].replace("T", " ")
