"""report.html: one self-contained file (nothing loaded from the network) with every section, and a patient
view whose script runs (under Node.js with a minimal DOM) and shows the chosen patient."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from tests.unit.training.conftest import OUTCOMES, SETS, JobRun
from training_job.dataset import load_dataset
from training_job.report import render_report

pytestmark = pytest.mark.slow  # reads the shared end-to-end run

SECTIONS = ("cohort", "prevalence", "metrics", "roc", "ablation", "importance", "patients")
SCRIPT = re.compile(r"<script([^>]*)>(.*?)</script>", re.S)


def _report(job_run: JobRun) -> str:
    return (job_run.output / "report.html").read_text(encoding="utf-8")


def test_the_report_loads_nothing_from_the_network(job_run: JobRun) -> None:
    html = _report(job_run)
    assert not re.search(r"<script[^>]*\bsrc\s*=", html, re.I)
    assert not re.search(r"<link\b", html, re.I)
    scripts = SCRIPT.findall(html)
    plotly = max((body for _, body in scripts), key=len)
    assert "plotly.js v" in plotly[:200]  # the library itself is inline
    # Outside plotly's own code, no address at all: no src/href/url() that a browser could fetch.
    rest = html.replace(plotly, "")
    assert not re.findall(r"https?://", rest), re.findall(r".{40}https?://.{40}", rest)[:3]
    assert not re.search(r"\b(src|href)\s*=\s*(?![\"']?#)", rest, re.I)  # only in-page anchors


def test_the_report_has_every_section(job_run: JobRun) -> None:
    html = _report(job_run)
    for section in SECTIONS:
        assert f'<section id="{section}">' in html, section
    for outcome in OUTCOMES:
        assert f'id="fig-roc-{outcome}"' in html
        assert f'id="fig-importance-{outcome}"' in html
    assert 'id="fig-ablation"' in html
    assert 'id="patient-select"' in html
    metrics_section = html.split('<section id="metrics">')[1].split("</section>")[0]
    for modality_set in SETS:
        assert f"<td>{modality_set}</td>" in metrics_section
    assert "control: shuffled labels" in metrics_section
    # Every estimate with its interval
    assert len(re.findall(r"<span class='ci'>\[", metrics_section)) == len(OUTCOMES) * (len(SETS) + 1) * 6


def test_patient_data_cannot_break_out_of_its_script_element(job_run: JobRun) -> None:
    html = _report(job_run)
    # The fixture's timeline holds "<b>140</b>": embedded escaped, never as markup.
    data = next(body for attrs, body in SCRIPT.findall(html) if 'id="patient-data"' in attrs)
    assert "<" not in data
    assert "\\u003cb\\u003e140" in data
    assert len(json.loads(data)["patients"]) == 12


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js")
def test_the_patient_view_script_runs_and_shows_the_chosen_patient(job_run: JobRun, tmp_path: Path) -> None:
    html = _report(job_run)
    scripts = {attrs: body for attrs, body in SCRIPT.findall(html)}
    data = next(body for attrs, body in scripts.items() if 'id="patient-data"' in attrs)
    view = next(body for attrs, body in scripts.items() if 'id="patient-view-script"' in attrs)
    harness = tmp_path / "harness.js"
    harness.write_text(
        """
function element(tag) {
  return {
    tag: tag, children: [], own: "", listeners: {}, value: "",
    appendChild(child) { this.children.push(child); return child; },
    set textContent(text) { this.own = String(text); this.children = []; },
    get textContent() { return [this.own].concat(this.children.map((c) => c.textContent)).join("|"); },
    addEventListener(type, listener) { this.listeners[type] = listener; },
  };
}
const nodes = {"patient-data": {textContent: DATA}, "patient-select": element("select"),
               "patient-detail": element("div")};
global.document = {getElementById: (id) => nodes[id] || null, createElement: element};
SCRIPT
const select = nodes["patient-select"], detail = nodes["patient-detail"];
const first = detail.textContent;
select.value = "3";
select.listeners.change();
console.log(JSON.stringify({options: select.children.map((o) => o.textContent), first: first,
                            chosen: detail.textContent}));
""".replace("DATA", json.dumps(data)).replace("SCRIPT", view)
    )
    completed = subprocess.run(
        ["node", str(harness)], capture_output=True, text=True, timeout=60, check=False
    )
    assert completed.returncode == 0, completed.stderr
    shown = json.loads(completed.stdout)
    options = shown["options"]
    assert sorted(options) == [f"pt-{i:04d}" for i in range(12)]
    for heading in ("Clinical timeline", "Variants of note", "Radiomics", "Model scores (test split)"):
        assert heading in shown["first"]
    # The fixture's patient pt-000i has "Systolic BP <b>140 + i</b>" in its timeline.
    first, chosen = (140 + int(options[k].removeprefix("pt-")) for k in (0, 3))
    assert f"Systolic BP <b>{first}</b>" in shown["first"]
    assert "LDLR" in shown["first"]
    assert f"Systolic BP <b>{chosen}</b>" in shown["chosen"]
    assert f"<b>{first}</b>" not in shown["chosen"]


def test_without_patients_json_the_report_says_so(job_run: JobRun, tmp_path: Path) -> None:
    channel = job_run.root / "input" / "data" / "dataset"
    bare = tmp_path / "dataset"
    bare.mkdir()
    for name in ("dataset.parquet", "manifest.json"):
        shutil.copy(channel / name, bare / name)
    dataset = load_dataset(bare, OUTCOMES)
    html = render_report(
        job_run.metrics(),
        dataset,
        pd.read_parquet(job_run.output / "predictions.parquet"),
        pd.read_csv(job_run.output / "feature_importance.csv"),
    )
    patients = html.split('<section id="patients">')[1].split("</section>")[0]
    assert "No patient view: patients.json was not part of the dataset snapshot." in patients
    assert "patient-select" not in patients


def test_the_cohort_section_lists_what_was_left_unlinked(job_run: JobRun) -> None:
    cohort = _report(job_run).split('<section id="cohort">')[1].split("</section>")[0]
    assert "<h3>Linkage to persons</h3>" in cohort
    row = cohort.split("<td>VCF samples</td>")[1].split("</tr>")[0]
    assert re.findall(r"<td[^>]*>([^<]*)</td>", row) == ["640", "2", "SYNTH_OC_0007, SYNTH_OC_0009"]
