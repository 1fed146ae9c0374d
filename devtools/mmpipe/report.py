"""What a finished local (or cloud) run leaves for people: run.json, the tables as Parquet, quarantine.jsonl,
the training report. Shared by `mmpipe local run` and `mmpipe export`.

Everything here reads through the public AWS APIs (Step Functions history, S3, the Glue-backed Iceberg
catalog), so the same code describes a run in the cloud or on the local runtime.
"""

from __future__ import annotations

import json
import tarfile
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import pyarrow.parquet as pq
from botocore.exceptions import ClientError
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.expressions import AlwaysTrue, BooleanExpression

from mmhealth.lakehouse.catalog import NAMESPACES, lakehouse_catalog
from mmhealth.training.job import REPORT_FILES

# Which rows of the table "<namespace>.<table>" to export: a pyiceberg row filter, or None to leave it out.
TableSelection = Callable[[str], BooleanExpression | None]


def state_timings(sfn: Any, execution_arn: str) -> dict[str, dict[str, Any]]:
    """Per state name: how often it ran, total and max seconds, first entry and last exit (ISO times), from
    the execution history."""
    entered: dict[tuple[str, int], datetime] = {}
    stats: dict[str, dict[str, Any]] = defaultdict(lambda: {"count": 0, "total_s": 0.0, "max_s": 0.0})
    paginator = sfn.get_paginator("get_execution_history")
    events = [e for page in paginator.paginate(executionArn=execution_arn) for e in page["events"]]
    for event in events:
        kind = event["type"]
        if kind.endswith("StateEntered"):
            detail = event["stateEnteredEventDetails"]
            entered[(detail["name"], event["id"])] = event["timestamp"]
        elif kind.endswith("StateExited"):
            name = event["stateExitedEventDetails"]["name"]
            start = _matching_entry(entered, name, event)
            if start is None:
                continue
            seconds = (event["timestamp"] - start).total_seconds()
            row = stats[name]
            row["count"] += 1
            row["total_s"] = round(row["total_s"] + seconds, 3)
            row["max_s"] = round(max(row["max_s"], seconds), 3)
            row["first_at"] = min(row.get("first_at") or start.isoformat(), start.isoformat())
            row["last_at"] = max(row.get("last_at") or "", event["timestamp"].isoformat())
    return dict(stats)


def _matching_entry(
    entered: dict[tuple[str, int], datetime], name: str, exited: dict[str, Any]
) -> datetime | None:
    """The StateEntered of this exit: the nearest earlier entry of that name (Map iterations interleave)."""
    candidates = [key for key in entered if key[0] == name and key[1] < exited["id"]]
    if not candidates:
        return None
    key = max(candidates, key=lambda k: k[1])
    return entered.pop(key)


def describe_execution(sfn: Any, s3: Any, lake_bucket: str, arn: str) -> dict[str, Any]:
    """Status, timings, the failing cause and the run summary (when Finalize wrote one)."""
    desc = sfn.describe_execution(executionArn=arn)
    stop = desc.get("stopDate")
    result: dict[str, Any] = {
        "execution_arn": arn,
        "run_id": desc["name"],
        "status": desc["status"],
        "started_at": desc["startDate"].isoformat(),
        "stopped_at": stop.isoformat() if stop else None,
        "seconds": round((stop - desc["startDate"]).total_seconds(), 3) if stop else None,
        "states": state_timings(sfn, arn),
    }
    if desc["status"] != "SUCCEEDED":
        result["error"] = desc.get("error")
        result["cause"] = desc.get("cause")
    try:
        body = s3.get_object(Bucket=lake_bucket, Key=f"runs/{desc['name']}/summary.json")["Body"].read()
        result["summary"] = json.loads(body)
    except s3.exceptions.NoSuchKey:
        result["summary"] = None
    return result


def every_table(name: str) -> BooleanExpression | None:
    """Every table, whole (`mmpipe local run`: the lakehouse it started empty holds only this delivery)."""
    return AlwaysTrue()


def export_tables(
    out_dir: Path,
    glue_prefix: str,
    catalog: Catalog | None = None,
    glue: Any = None,
    select: TableSelection = every_table,
) -> dict[str, int]:
    """The lakehouse tables `select` picks, as OUT/tables/<namespace>.<table>.parquet; returns row counts.
    The catalog and Glue client default to the environment's (the local runtime's, in `local run`)."""
    catalog = catalog or lakehouse_catalog()
    glue = glue or boto3.client("glue")
    counts: dict[str, int] = {}
    (out_dir / "tables").mkdir(parents=True, exist_ok=True)
    for namespace in NAMESPACES:
        database = f"{glue_prefix}{namespace}"
        try:
            tables = [
                t
                for page in glue.get_paginator("get_tables").paginate(DatabaseName=database)
                for t in page["TableList"]
            ]
        except glue.exceptions.EntityNotFoundException:
            continue
        for entry in tables:
            name = f"{namespace}.{entry['Name']}"
            row_filter = select(name)
            if row_filter is None:
                continue
            try:
                arrow = catalog.load_table((database, entry["Name"])).scan(row_filter=row_filter).to_arrow()
            except NoSuchTableError:
                continue
            pq.write_table(arrow, out_dir / "tables" / f"{name}.parquet")
            counts[name] = arrow.num_rows
    return counts


def export_quarantine(out_dir: Path, s3: Any, lake_bucket: str, run_ids: list[str]) -> int:
    """OUT/quarantine.jsonl: one object per rejected file or line (key, modality, reason, ...)."""
    lines = []
    for run_id in run_ids:
        paginator = s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=lake_bucket, Prefix=f"runs/{run_id}/quarantine/"):
            for item in page.get("Contents", []):
                record = json.loads(s3.get_object(Bucket=lake_bucket, Key=item["Key"])["Body"].read())
                lines.append(record)
    lines.sort(key=lambda r: (r["key"], r.get("line") or 0))
    with (out_dir / "quarantine.jsonl").open("w") as handle:
        for record in lines:
            handle.write(json.dumps(record, sort_keys=True) + "\n")
    return len(lines)


def export_training(out_dir: Path, s3: Any, runs: list[dict[str, Any]]) -> dict[str, str] | None:
    """The training artifacts (see training_artifacts) of the newest run that trained a model (a delivery of
    several runs trains once: the others' summaries say why they skipped). None when no run trained."""
    trained = [
        training
        for run in runs
        if (training := ((run.get("summary") or {}).get("training") or {})).get("report_uri")
    ]
    if not trained:
        return None
    return training_artifacts(out_dir, s3, trained[-1])


def training_artifacts(out_dir: Path, s3: Any, training: dict[str, Any]) -> dict[str, str]:
    """Into OUT: the training job's report files (REPORT_FILES: metrics.json, report.html, leaderboard.csv,
    feature_importance.csv, predictions.parquet, where CatalogTraining unpacked the job's output.tar.gz,
    next to `report_uri`) and model_card.json from the model tarball. Returns file name -> S3 URI; a file
    the job did not write is left out."""
    written = {}
    report_folder = training["report_uri"].rpartition("/")[0] + "/"
    for name in REPORT_FILES:
        uri = report_folder + name
        body = read_optional(s3, uri)
        if body is not None:
            (out_dir / name).write_bytes(body)
            written[name] = uri
    if not training.get("model_uri"):
        return written
    bucket, _, key = training["model_uri"].removeprefix("s3://").partition("/")
    model = s3.get_object(Bucket=bucket, Key=key)["Body"]
    with tarfile.open(fileobj=model, mode="r|gz") as archive:  # streamed: the predictors are not needed
        for member in archive:
            if member.name.removeprefix("./") == "model_card.json" and member.isfile():
                card = archive.extractfile(member)
                if card is not None:
                    (out_dir / "model_card.json").write_bytes(card.read())
                    written["model_card.json"] = training["model_uri"]
                break
    return written


def read_optional(s3: Any, uri: str) -> bytes | None:
    """The object at an s3:// URI, or None when there is none."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    try:
        body: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
            return None
        raise
    return body
