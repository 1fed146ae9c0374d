"""What `mmpipe local up` prints for a person: one line per delivery as it progresses, not per file.

    [10:02:11] site-b: 12 files uploaded (3.1 MB)
    [10:02:12] site-b-w1: waiting for the delivery to complete
    [10:02:23] site-b-w1: ingesting + radiomics job
    [10:02:58] site-b-w1: building features
    [10:03:01] site-b-w1: training
    [10:06:40] site-b-w1 SUCCEEDED in 269 s: genomic 3 files (11 rows), clinical 2 files (7 rows); 1 quarantined;
               model trained (hypertension AUC 0.84, ...); report .mmpipe/reports/site-b-w1/report.html

A phase line is printed when what the run is doing changes (the states it has open, from its execution
history); the finished line reads the run's summary and, when the run trained, exports its report next to
the state file so a person can open it. With `verbose`, every uploaded file gets its own line too.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

from mmpipe import report
from mmpipe.status import (
    TERMINAL,
    execution_history,
    execution_row,
    failing_state,
    failures,
    open_states,
    read_json,
)


class Uploaded(Protocol):
    """A file `local up` uploaded (mmpipe.local_up.InboxFile)."""

    @property
    def relative(self) -> str: ...
    @property
    def key(self) -> str: ...
    @property
    def size(self) -> int: ...


# The phase a person reads, by the state the run has open (first match; containers are left out).
_PHASES: tuple[tuple[Callable[[str], bool], str], ...] = (
    (
        lambda s: s in {"Collect", "DeliveryComplete", "WaitForDelivery"},
        "waiting for the delivery to complete",
    ),
    (lambda s: s == "Prepare", "preparing"),
    (lambda s: "Radiomics" in s, "radiomics job"),
    (lambda s: s == "BuildFeatures", "building features"),
    (lambda s: "Training" in s, "training"),
    (lambda s: s in {"Finalize", "NotifyRun", "RunOutcome", "NoTraining", "NotifyFailure"}, "finishing"),
    (lambda s: s != "IngestModalities", "ingesting"),
)

_ORDER = [
    "waiting for the delivery to complete",
    "preparing",
    "ingesting",
    "radiomics job",
    "building features",
    "training",
    "finishing",
]


def phase(open_state_names: Iterable[str]) -> str:
    """The phases of the open states, in pipeline order, joined: "ingesting + radiomics job"."""
    found = set()
    for name in open_state_names:
        for matches, label in _PHASES:
            if matches(name):
                found.add(label)
                break
    return " + ".join(sorted(found, key=_ORDER.index))


class DeliveryConsole:
    """Lines for a person (see the module docstring); `say` prints one with its timestamp."""

    def __init__(
        self, runtime: Any, say: Callable[[str], None], reports: Path, *, verbose: bool = False
    ) -> None:
        self.runtime = runtime
        self.say = say
        self.reports = reports
        self.verbose = verbose
        self._phases: dict[str, str] = {}
        self._finished: set[str] = set()

    def uploaded(self, files: Sequence[Uploaded]) -> None:
        """One line per delivery of an upload burst (and per file with `verbose`)."""
        by_delivery: dict[str, list[Uploaded]] = defaultdict(list)
        for file in files:
            by_delivery[file.key.split("/")[1]].append(file)
            if self.verbose:
                self.say(
                    f"uploaded {file.relative} ({file.size} bytes) -> s3://{self.runtime.landing_bucket}/{file.key}"
                )
        for delivery, mine in sorted(by_delivery.items()):
            size = sum(f.size for f in mine)
            self.say(
                f"{delivery}: {len(mine)} file{'s' if len(mine) != 1 else ''} uploaded ({_megabytes(size)})"
            )

    def poll(self) -> None:
        """A line for each run whose phase changed, and one for each run that finished, since the last call."""
        sfn = self.runtime.client("stepfunctions")
        for execution in self.runtime.executions():
            arn = execution["executionArn"]
            if arn in self._finished:
                continue
            if execution["status"] in TERMINAL:
                self._finished.add(arn)
                description = dict(sfn.describe_execution(executionArn=arn))
                self.say(self.finished_line(description, execution_history(sfn, arn)))
                continue
            now = phase(open_states(execution_history(sfn, arn)))
            if now and self._phases.get(arn) != now:
                self._phases[arn] = now
                self.say(f"{execution['name']}: {now}")

    def finished_line(self, description: dict[str, Any], events: list[dict[str, Any]]) -> str:
        row = execution_row(description)
        line = f"{row['execution']} {row['status']}"
        if row["seconds"] is not None:
            line += f" in {row['seconds']:.0f} s"
        s3 = self.runtime.client("s3")
        summary = read_json(s3, self.runtime.lake_bucket, f"runs/{row['run_id']}/summary.json") or {}
        parts = [_modalities(summary.get("modalities") or {})] if summary else []
        if summary:
            parts.append(f"{summary.get('quarantined', 0)} quarantined")
            delivery = summary.get("delivery") or {}
            if delivery.get("missing"):
                parts.append(f"{delivery['missing']} file(s) the marker listed never arrived")
            if delivery.get("unrecorded"):
                parts.append(f"{delivery['unrecorded']} object(s) never reached the trigger (see the DLQ)")
            parts.append(self._training(row["run_id"], summary.get("training") or {}))
        if row["status"] != "SUCCEEDED":
            failed = failing_state(failures(events), events)
            where = f" at {failed['state']}" if failed else ""
            parts.append(f"failed{where}: {row.get('error')}: {row.get('cause')}")
            parts.append(f"mmpipe status --local --run {row['execution']}")
        return line + (": " + "; ".join(p for p in parts if p) if parts else "")

    def _training(self, run_id: str, training: dict[str, Any]) -> str:
        if training.get("status") == "failed":
            return f"training failed: {training.get('error')}: {training.get('cause')}"
        if training.get("skipped") or not training.get("report_uri"):
            return f"no training: {training.get('skipped') or 'skipped'}"
        folder = self.reports / run_id
        folder.mkdir(parents=True, exist_ok=True)
        written = report.training_artifacts(folder, self.runtime.client("s3"), training)
        headline = ", ".join(
            f"{outcome} AUC {values['roc_auc']:.2f}"
            for outcome, values in (training.get("headline") or {}).items()
            if values.get("roc_auc") is not None
        )
        where = f"; report {folder / 'report.html'}" if "report.html" in written else ""
        return f"model trained ({headline or 'no AUC'}){where}"


def _modalities(modalities: dict[str, Any]) -> str:
    shown = []
    for name, entry in modalities.items():
        status = entry.get("status")
        if status == "skipped":
            continue
        files = entry.get("files", 0)
        if status == "ingested":
            rows = sum(int(n) for n in (entry.get("tables") or {}).values())
            shown.append(f"{name} {files} file{'s' if files != 1 else ''} ({rows:,} rows)")
        else:
            shown.append(f"{name} {status}")
    return ", ".join(shown) or "no data files"


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size / 1e3:.0f} kB"
