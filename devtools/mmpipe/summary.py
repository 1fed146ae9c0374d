"""`mmpipe summary OUT`: the counts a person wants after a run, from OUT/run.json and OUT/tables/."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mmhealth.training.featurize import label_prevalence
from mmpipe.status import linkage_line


def print_summary(out_dir: Path) -> int:
    """Print status, per-table rows (with distinct patients where known) and quarantine reasons."""
    run_file = out_dir / "run.json"
    if not run_file.exists():
        print(f"error: {run_file} not found; run `mmpipe local run` first", file=sys.stderr)
        return 2
    run = json.loads(run_file.read_text())
    print(f"delivery {run['delivery']}: {run['status']} in {run['wall_seconds']} s")
    statuses = Counter(e["status"] for e in run["executions"])
    print(
        f"  files delivered: {run['files_delivered']}; executions: {len(run['executions'])} "
        f"({', '.join(f'{n} {s.lower()}' for s, n in sorted(statuses.items()))})"
    )
    for execution in run["executions"]:
        if execution["status"] != "SUCCEEDED":
            print(f"  - {execution['run_id']}: {execution['status']}: {(execution.get('cause') or '')[:300]}")
    print("modalities:")
    for name, counts in sorted(run.get("modalities", {}).items()):
        line = f"  {name:<10} {counts['files']:>6} files, {counts['quarantined']} quarantined"
        if counts.get("runs_failed"):
            line += f", {counts['runs_failed']} run(s) failed"
        if counts.get("files_not_ingested"):
            line += (
                f" ({counts['files_not_ingested']} not ingested: this modality has no pipeline branch yet)"
            )
        print(line)
    print("tables:")
    for name, rows in sorted(run["tables"].items()):
        detail = ""
        path = out_dir / "tables" / f"{name}.parquet"
        if path.exists():
            columns = pq.read_schema(path).names
            if "sample_id" in columns:
                samples = pc.count_distinct(pq.read_table(path, columns=["sample_id"])["sample_id"]).as_py()
                detail = f" ({samples} samples)"
        print(f"  {name:<28} {rows:>10,} rows{detail}")
    labels = out_dir / "tables" / "features.labels.parquet"
    if labels.exists():
        print("labels (incident after the index date; eligible patients only):")
        for outcome, counts in label_prevalence(pq.read_table(labels)).items():
            print(
                f"  {outcome:<24} {counts['positives']:>5} / {counts['eligible']:<5} "
                f"prevalence {counts['prevalence']:.3f}"
            )
    _print_imaging(out_dir)
    _print_metrics(out_dir)
    links_path = out_dir / "tables" / "identity.links.parquet"
    if links_path.exists():
        print(f"linkage: {linkage_line(unlinked_by_kind(pq.read_table(links_path)))}")
    quarantine = out_dir / "quarantine.jsonl"
    records = (
        [json.loads(line) for line in quarantine.read_text().splitlines()] if quarantine.exists() else []
    )
    print(f"quarantined: {len(records)}")
    for (modality, reason), count in sorted(Counter((r["modality"], r["reason"]) for r in records).items()):
        print(f"  {modality:<10} {reason:<28} {count}")
    return 0 if run["status"] == "SUCCEEDED" else 1


def unlinked_by_kind(links: pa.Table) -> dict[str, dict[str, Any]]:
    """identity.links -> per source kind, the unlinked count and values (status.linkage_line's input)."""
    found: dict[str, list[str]] = {}
    for row in links.to_pylist():
        if row["person_id"] is None:
            found.setdefault(row["source_kind"], []).append(row["source_value"])
    return {kind: {"count": len(values), "first": sorted(values)} for kind, values in found.items()}


def _print_imaging(out_dir: Path) -> None:
    """Series, the radiomics job's output and the imaging features, when the run had imaging."""
    tables = out_dir / "tables"
    series_path, radiomics_path = tables / "imaging.series.parquet", tables / "features.radiomics.parquet"
    if not series_path.exists():
        return
    series = pq.read_table(series_path, columns=["series_uid", "slice_count"])
    print(f"imaging: {series.num_rows} consistent series, {pc.sum(series['slice_count']).as_py()} slices")
    if radiomics_path.exists():
        radiomics = pq.read_table(radiomics_path, columns=["series_uid", "region", "voxels", "model_version"])
        done = pc.count_distinct(radiomics["series_uid"]).as_py()
        regions = Counter(r["region"] for r in radiomics.to_pylist() if r["voxels"] > 0)
        versions = sorted(set(radiomics["model_version"].to_pylist()))
        print(
            f"  radiomics: {done} series segmented ({', '.join(f'{n} with {r}' for r, n in sorted(regions.items()))}),"
            f" 107 features per region, model {', '.join(versions)}"
        )
    imaging = tables / "features.imaging.parquet"
    if imaging.exists():
        schema = pq.read_schema(imaging)
        rows = pq.ParquetFile(imaging).metadata.num_rows
        print(
            f"  features.imaging: {rows} patients with an MR before the index date, {len(schema.names) - 2} columns"
        )


def _print_metrics(out_dir: Path) -> None:
    """The trained models' test metrics (OUT/metrics.json): per outcome and modality set, ROC AUC, F1 and
    balanced accuracy with their 95% bootstrap intervals, the label-shuffle control and the multimodal gain."""
    path = out_dir / "metrics.json"
    if not path.exists():
        print("training: no model trained (see each run's summary for why)")
        return
    document = json.loads(path.read_text())
    print(
        f"training: dataset {document.get('dataset_id')}, test split of each outcome; "
        "value [95% bootstrap CI]; report in report.html"
    )
    print(
        f"  {'outcome':<24} {'modality set':<26} {'n test':>6}  {'ROC AUC':<20} {'F1':<20} {'balanced acc':<20}"
    )
    for outcome, by_set in document.get("metrics", {}).items():
        n_test = document.get("counts", {}).get(outcome, {}).get("n_test", "")
        rows = list(by_set.items())
        if outcome in document.get("control", {}):
            rows.append(("label-shuffle control", document["control"][outcome]))
        for modality_set, metrics in rows:
            print(
                f"  {outcome:<24} {modality_set:<26} {n_test:>6}  {_estimate(metrics.get('roc_auc')):<20} "
                f"{_estimate(metrics.get('f1')):<20} {_estimate(metrics.get('balanced_accuracy')):<20}"
            )
        gain = document.get("gain", {}).get(outcome)
        if gain:
            print(
                f"  {'':<24} gain {gain['full']} over {gain['baseline']}: ROC AUC {_estimate(gain, signed=True)}"
            )


def _estimate(estimate: dict[str, float | None] | None, signed: bool = False) -> str:
    if not estimate or estimate.get("value") is None:
        return "n/a"
    sign = "+" if signed else ""
    low, high = estimate.get("ci_low"), estimate.get("ci_high")
    interval = f" [{low:{sign}.2f}, {high:{sign}.2f}]" if low is not None and high is not None else ""
    return f"{estimate['value']:{sign}.2f}{interval}"
