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

from tests.unit.training.conftest import OUTCOMES, PERMUTATIONS, SETS, JobRun
from training_job.dataset import load_dataset
from training_job.report import render_report

pytestmark = pytest.mark.slow  # reads the shared end-to-end run

SECTIONS = (
    "findings",
    "cohort",
    "prevalence",
    "population-clinical",
    "population-genomic",
    "population-imaging",
    "data-quality",
    "metrics",
    "control",
    "roc",
    "pr",
    "calibration",
    "ablation",
    "subgroups",
    "warnings",
    "importance",
    "patients",
)
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
        for figure in ("roc", "pr", "calibration", "importance"):
            assert f'id="fig-{figure}-{outcome}"' in html, (figure, outcome)
    for figure in ("ablation", "permutations"):
        assert f'id="fig-{figure}"' in html
    assert 'id="patient-search"' in html
    # Sections in order: the evaluation right after the population, metrics that matter first
    positions = [html.index(f'<section id="{section}">') for section in SECTIONS]
    assert positions == sorted(positions)


def _section(html: str, anchor: str) -> str:
    return html.split(f'<section id="{anchor}">')[1].split("</section>")[0]


def _headers(table: str) -> list[str]:
    return re.findall(r"<th>([^<]*)</th>", table)


def test_the_evaluation_table_shows_each_set_beside_the_age_sex_baseline(job_run: JobRun) -> None:
    html = _report(job_run)
    metrics = job_run.metrics()
    # Per outcome: the main table, then the confusion matrix and available cases
    tables = _section(html, "metrics").split("<table>")[1:]
    assert len(tables) == 2 * len(OUTCOMES)
    main, subsets = tables[0::2], tables[1::2]
    headers = _headers(main[0])
    # Ranking and calibration first, then the metrics at the threshold; accuracy-type metrics after
    assert headers == [
        "Predictor",
        "ROC AUC",
        "Δ AUC vs age + sex",
        "AUPRC",
        "Brier",
        "Threshold",
        "F1",
        "Precision",
        "Recall",
        "Specificity",
    ]
    assert _headers(subsets[0]) == [
        "Predictor",
        "TP / FP / TN / FN",
        "Balanced acc.",
        "Available cases: AUC (n, positives)",
        "All modalities: AUC (n, positives)",
    ]
    full = "clinical+genomic+imaging"
    for outcome, table, subset in zip(OUTCOMES, main, subsets, strict=True):
        rows, subset_rows = table.split("<tr")[2:], subset.split("<tr")[2:]
        assert [_first_cell(row) for row in rows] == [
            *SETS,
            "age + sex baseline",
            f"control: shuffled labels ({full})",
        ]
        assert [_first_cell(row) for row in subset_rows] == [*SETS, "age + sex baseline"]
        full_row, full_subset = rows[SETS.index(full)], subset_rows[SETS.index(full)]
        assert f">{metrics['thresholds'][outcome][full]['threshold']:.3f}<" in full_row
        difference = metrics["age_sex_baseline"][outcome]["roc_auc_difference"][full]
        assert f"{difference['value']:+.3f}" in full_row
        confusion = metrics["confusion"][outcome][full]
        assert f"{confusion['tp']} / {confusion['fp']} / {confusion['tn']} / {confusion['fn']}" in full_subset
        # Available-case columns carry n and positives
        imaging = metrics["available_case"][outcome]["by_set"]["imaging"]
        assert f"(n {imaging['n']}, {imaging['positives']} positive)" in subset_rows[SETS.index("imaging")]


def _first_cell(row: str) -> str:
    found = re.search(r"<td>([^<]*)</td>", row)
    assert found, row
    return found.group(1)


def test_the_permutation_control_subgroups_and_warnings_render(job_run: JobRun) -> None:
    html = _report(job_run)
    metrics = job_run.metrics()
    control = _section(html, "control")
    assert _headers(control) == ["Outcome", "Permutations", "Mean AUC", "SD", "Range", "Real AUC", "p-value"]
    for outcome in OUTCOMES:
        entry = metrics["permutation"][outcome]
        assert f'<td class="num">{PERMUTATIONS}</td>' in control
        assert f"{entry['p_value']:.3f}" in control
    subgroups = _section(html, "subgroups")
    assert "&lt;45, 45-64, 65+ years" in subgroups
    for group in ("female", "male", "&lt;45", "45-64", "65+"):
        assert f"<td>{group}</td>" in subgroups
    warnings = _section(html, "warnings")
    if metrics["warnings"]:
        assert len(warnings.split("<tr>")) - 2 == len(metrics["warnings"])
    else:
        assert "<p>None.</p>" in warnings


def test_a_small_sample_is_marked_next_to_its_number(job_run: JobRun) -> None:
    # Given the run's document with one outcome's test split cut to 7 positives
    document = job_run.metrics()
    outcome = OUTCOMES[1]
    document["counts"][outcome]["positives_test"] = 7
    channel = job_run.root / "input" / "data" / "dataset"
    html = render_report(
        document,
        load_dataset(channel, OUTCOMES),
        pd.read_parquet(job_run.output / "predictions.parquet"),
        pd.read_csv(job_run.output / "feature_importance.csv"),
    )
    # Then the test-split AUC of each of that outcome's predictors carries the warning, the other outcome's not
    main = _section(html, "metrics").split("<table>")[1::2]

    def auc_cells(table: str) -> list[str]:
        return [re.findall(r"<td[^>]*>.*?</td>", row)[1] for row in table.split("<tr")[2:]]

    marked = [cell for cell in auc_cells(main[1]) if "&#9888; only 7 positive" in cell]
    assert len(marked) == len(SETS) + 1  # the sets and the age + sex baseline (not the control)
    assert not any("&#9888;" in cell for cell in auc_cells(main[0]))


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
    tag: tag, children: [], own: "", listeners: {}, value: "", attributes: {},
    appendChild(child) { this.children.push(child); return child; },
    setAttribute(name, value) { this.attributes[name] = value; },
    set textContent(text) { this.own = String(text); this.children = []; },
    get textContent() { return [this.own].concat(this.children.map((c) => c.textContent)).join("|"); },
    addEventListener(type, listener) { this.listeners[type] = listener; },
  };
}
const nodes = {"patient-data": {textContent: DATA}, "patient-search": element("input"),
               "patient-ids": element("datalist"), "patient-detail": element("div"), "patient-count": element("span")};
global.document = {getElementById: (id) => nodes[id] || null, createElement: element};
const plotted = [];
global.Plotly = {newPlot: (node, traces, layout) => plotted.push(layout.title.text)};
function images(node) { return (node.attributes && node.attributes.src ? [node.attributes.src] : [])
  .concat(...(node.children || []).map(images)); }
SCRIPT
const input = nodes["patient-search"], detail = nodes["patient-detail"];
const first = detail.textContent, firstImages = images(detail);
const options = nodes["patient-ids"].children.map((o) => o.value);
input.value = options[3];
input.listeners.change();
setTimeout(() => console.log(JSON.stringify({options: options, first: first, chosen: detail.textContent,
                                              images: firstImages, plotted: plotted})), 0);
""".replace("DATA", json.dumps(data)).replace("SCRIPT", view)
    )
    completed = subprocess.run(
        ["node", str(harness)], capture_output=True, text=True, timeout=60, check=False
    )
    assert completed.returncode == 0, completed.stderr
    shown = json.loads(completed.stdout)
    options = shown["options"]
    assert sorted(options) == [f"pt-{i:04d}" for i in range(12)]
    for heading in ("Timeline", "Vitals and labs", "Variants of note", "Radiomics", "Predicted risk"):
        assert heading in shown["first"], heading
    # The first shown is the patient with a picture (pt-0000), embedded as a data URI
    assert "Patient pt-0000" in shown["first"]
    assert shown["images"]
    assert all(src.startswith("data:image/png;base64,iVBOR") for src in shown["images"])
    # The fixture's patient pt-000i has "Systolic BP <b>140 + i</b>" in its timeline: shown as text
    chosen = 140 + int(options[3].removeprefix("pt-"))
    assert f"Systolic BP <b>{chosen}</b>" in shown["chosen"]
    assert "Systolic BP <b>140</b>" not in shown["chosen"]
    assert "LDLR" in shown["first"]
    assert "Systolic blood pressure (mmHg)" in shown["plotted"]


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
    assert "patient-search" not in patients


def test_the_cohort_section_lists_what_was_left_unlinked(job_run: JobRun) -> None:
    cohort = _report(job_run).split('<section id="cohort">')[1].split("</section>")[0]
    assert "<h3>Linkage to persons</h3>" in cohort
    row = cohort.split("<td>VCF samples</td>")[1].split("</tr>")[0]
    assert re.findall(r"<td[^>]*>([^<]*)</td>", row) == ["640", "2", "SYNTH_OC_0007, SYNTH_OC_0009"]
