"""`mmpipe export --run RUN --out DIR`: one run's outputs as files, for a person to open, attach or load.

    DIR/summary.json, manifest.json     runs/<run>/ in the lake, as Finalize and the trigger wrote them
    DIR/quarantine.jsonl                the run's quarantine records, one JSON object per rejected file or line
    DIR/report.html, metrics.json, leaderboard.csv, feature_importance.csv, predictions.parquet,
        model_card.json                 when the run trained a model: the training job's output
    DIR/tables/features.<t>.parquet     every feature table as the lakehouse holds it now (features are rebuilt
                                        over all deliveries, so they are not one run's rows)
    DIR/tables/ops.quarantine.parquet   the run's rows of ops.quarantine (once the run reached Finalize)
    DIR/tables/dataset.parquet          the dataset snapshot the model was trained on

RUN is what `mmpipe status --run` takes; a delivery name exports its newest run. Reads only public AWS APIs
through a Target (S3, Step Functions, Glue + Iceberg), so it works the same on a deployed stack and on the
local runtime. Unlike status, the files carry data: quarantine `detail` can quote a rejected value and the
tables are per patient, so DIR is to be kept where patient data may be.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from pyiceberg.expressions import AlwaysTrue, BooleanExpression, EqualTo

from mmhealth.lakehouse.layout import RunPaths, dataset_prefix
from mmpipe import report
from mmpipe.status import TERMINAL, find_runs, read_json, run_id_of, training_line
from mmpipe.targets import Target


def run_tables(run_id: str) -> report.TableSelection:
    """The tables an export holds: every features.* table whole, ops.quarantine's rows of the run."""

    def select(name: str) -> BooleanExpression | None:
        if name.startswith("features."):
            return AlwaysTrue()
        if name == "ops.quarantine":
            return EqualTo("run_id", run_id)  # type: ignore[call-arg, arg-type]  # pydantic __new__
        return None

    return select


def export_run(target: Target, name: str, out_dir: Path) -> dict[str, Any]:
    """Write RUN's files into `out_dir` (created; files of the same name overwritten). Returns what was
    written, JSON-ready. Raises RunNotFoundError (with a did-you-mean) when nothing has that name."""
    _, runs = find_runs(target, name)
    latest = runs[0][-1]  # a delivery's newest run, its newest attempt
    run_id = run_id_of(latest)
    s3, lake = target.client("s3"), target.lake_bucket
    paths = RunPaths(run_id)
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    # As in status: while the newest attempt runs, a summary can only be an earlier attempt's.
    summary = read_json(s3, lake, paths.summary) if latest["status"] in TERMINAL else None
    manifest = read_json(s3, lake, paths.manifest)
    for file_name, key, document in (
        ("summary.json", paths.summary, summary),
        ("manifest.json", paths.manifest, manifest),
    ):
        if document is not None:
            (out_dir / file_name).write_text(json.dumps(document, indent=2) + "\n")
            files[file_name] = f"s3://{lake}/{key}"
    records = report.export_quarantine(out_dir, s3, lake, [run_id])
    files["quarantine.jsonl"] = f"{records} record(s)"
    training = (summary or {}).get("training") or {}
    if training.get("report_uri"):
        files |= report.training_artifacts(out_dir, s3, training)
    tables = report.export_tables(
        out_dir,
        target.glue_database_prefix,
        catalog=target.lakehouse_catalog(),
        glue=target.client("glue"),
        select=run_tables(run_id),
    )
    if training.get("dataset_id"):
        rows = _export_dataset(s3, lake, training["dataset_id"], out_dir / "tables")
        if rows is not None:
            tables["dataset"] = rows
    report_path = out_dir / "report.html"
    return {
        "run_id": run_id,
        "status": latest["status"],
        "target": target.description,
        "out": str(out_dir),
        "files": files,
        "tables": tables,
        "training": training_line(training) if training else None,
        "report": str(report_path.resolve()) if "report.html" in files else None,
    }


def _export_dataset(s3: Any, lake: str, dataset_id: str, tables_dir: Path) -> int | None:
    """tables/dataset.parquet: the training snapshot; its rows, or None when the snapshot is gone."""
    body = report.read_optional(s3, f"s3://{lake}/{dataset_prefix(dataset_id)}dataset.parquet")
    if body is None:
        return None
    path = tables_dir / "dataset.parquet"
    path.write_bytes(body)
    return int(pq.ParquetFile(path).metadata.num_rows)


def render(result: dict[str, Any]) -> str:
    """What was written, one file a line, and where the report is."""
    lines = [f"run {result['run_id']} ({result['status']}) from {result['target']} -> {result['out']}"]
    for name, origin in result["files"].items():
        lines.append(f"  {name:<34} {origin}")
    for name, rows in sorted(result["tables"].items()):
        lines.append(f"  {'tables/' + name + '.parquet':<34} {rows:,} row(s)")
    if "summary.json" not in result["files"]:
        lines.append("no summary.json: the run has not reached Finalize (or its newest attempt is running)")
    if result["report"]:
        lines.append(f"training report: {result['report']}")
    elif result["training"]:
        lines.append(f"no training report: {result['training']}")
    lines.append("these files hold patient-level data (features, quarantine details): keep them accordingly")
    return "\n".join(lines)
