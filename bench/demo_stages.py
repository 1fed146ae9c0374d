"""Demo end-to-end wall time on this machine, split by stage, from a finished `mmpipe local run`.

    make demo                                    # or: mmpipe local run --input DIR --out OUT
    .venv/bin/python bench/demo_stages.py out/demo [--json out/bench/demo_stages.json]

Reads OUT/run.json (per execution, per state: count, total seconds, first entry and last exit, from the
Step Functions execution history). A delivery is one run (a late file makes a follow-up wave), so span and
busy normally agree; each stage gets both figures:
- span: from the first time any run entered the stage to the last time any run left it (wall clock);
- busy: the sum of its states' durations over every run (how much work, as the engine saw it).
Stages: upload (local_run's own timing), ingest per modality (import/poll/catalog), radiomics job, features
(+ dataset snapshot), training job, finalize + notify.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from pathlib import Path
from typing import Any

STAGES: dict[str, tuple[str, ...]] = {
    "collect (until the delivery is complete)": ("Collect", "DeliveryComplete", "WaitForDelivery"),
    "prepare": ("Prepare",),
    "genomic ingest": (
        "HasGenomicFiles",
        "ImportGenomicChunks",
        "ImportGenomicChunksInChildren",
        "CatalogGenomic",
    ),
    "clinical ingest": (
        "HasClinicalFiles",
        "ImportClinicalChunks",
        "ImportClinicalChunksInChildren",
        "CatalogClinical",
    ),
    "imaging ingest": (
        "HasImagingFiles",
        "ImportImagingChunks",
        "ImportImagingChunksInChildren",
        "CatalogImaging",
    ),
    "radiomics job": (
        "StartRadiomics",
        "RadiomicsFinished",
        "WaitForRadiomics",
        "PollRadiomics",
        "CatalogRadiomics",
    ),
    "features + dataset": ("BuildFeatures",),
    "training job": (
        "StartTraining",
        "TrainingFinished",
        "WaitForTraining",
        "PollTraining",
        "CatalogTraining",
    ),
    "finalize + notify": ("Finalize", "NotifyRun", "RunOutcome"),
}


def stage_table(run: dict[str, Any]) -> list[dict[str, Any]]:
    rows = [
        {
            "stage": "upload (to the local S3; the trigger records files meanwhile)",
            "span_s": run.get("upload_seconds"),
            "busy_s": None,
        }
    ]
    for stage, states in STAGES.items():
        busy = 0.0
        first: datetime | None = None
        last: datetime | None = None
        for execution in run["executions"]:
            for name in states:
                timing = (execution.get("states") or {}).get(name)
                if not timing:
                    continue
                busy += float(timing["total_s"])
                if timing.get("first_at"):
                    start = datetime.fromisoformat(timing["first_at"])
                    end = datetime.fromisoformat(timing["last_at"])
                    first = start if first is None or start < first else first
                    last = end if last is None or end > last else last
        span = round((last - first).total_seconds(), 1) if first and last else None
        rows.append({"stage": stage, "span_s": span, "busy_s": round(busy, 1)})
    rows.append(
        {"stage": "whole demo (upload to last run finished)", "span_s": run["wall_seconds"], "busy_s": None}
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out", type=Path, help="the OUT folder of a finished local run (holds run.json)")
    parser.add_argument("--json", type=Path, help="also write the table here")
    args = parser.parse_args()
    run = json.loads((args.out / "run.json").read_text())
    rows = stage_table(run)
    print(f"{run['files_delivered']} files, {len(run['executions'])} execution(s), status {run['status']}")
    print(f"{'stage':<44} {'span s':>8} {'busy s':>8}")
    for row in rows:
        span = "" if row["span_s"] is None else f"{row['span_s']:.1f}"
        busy = "" if row["busy_s"] is None else f"{row['busy_s']:.1f}"
        print(f"{row['stage']:<44} {span:>8} {busy:>8}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"executions": len(run["executions"]), "stages": rows}, indent=2))


if __name__ == "__main__":
    main()
