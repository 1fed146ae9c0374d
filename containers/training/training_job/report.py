"""report.html: one self-contained file (plotly.js, data and script inline; no network request when opened).

Sections: cohort, label prevalence, the evaluation (report_evaluation.py: metrics with intervals beside the
age + sex baseline, label-shuffle permutations, ROC, precision-recall and reliability curves, modality
ablation, subgroups, warnings), feature importance, patient view. Every value from the data is HTML-escaped
(tables) or inserted with textContent (patient view), so a display string cannot inject markup.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from training_job import MODALITIES
from training_job.dataset import Dataset
from training_job.report_evaluation import EVALUATION_SECTIONS, evaluation_sections
from training_job.report_findings import findings_section
from training_job.report_html import figure_html, num_cell, section, table
from training_job.report_patients import patient_section
from training_job.report_population import POPULATION_SECTIONS, load_population, population_sections

REPORT_FILE = "report.html"
TOP_FEATURES = 15

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1100px;
       padding: 0 1.5rem 3rem; color: #1f2933; line-height: 1.45; }
header { border-bottom: 2px solid #d9e2ec; margin-bottom: 1rem; }
nav a { margin-right: 1rem; }
h2 { margin-top: 2.2rem; border-bottom: 1px solid #d9e2ec; }
table { border-collapse: collapse; margin: 0.6rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #d9e2ec; padding: 0.25rem 0.55rem; text-align: left; vertical-align: top; }
th { background: #f0f4f8; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td .ci { color: #616e7c; font-size: 0.8rem; }
tr.control td { color: #7b8794; font-style: italic; }
tr.baseline td { background: #f8fafc; }
td .warn, .warn { color: #b54708; font-size: 0.8rem; }
td.note { color: #52606d; font-size: 0.8rem; max-width: 14rem; }
#metrics table { font-size: 0.78rem; }
#metrics th, #metrics td { padding: 0.2rem 0.35rem; }
section { overflow-x: auto; }
.note { color: #52606d; font-size: 0.9rem; }
.figure { margin: 0.5rem 0 1.5rem; }
select { font-size: 1rem; padding: 0.2rem; }
"""


def render_report(
    document: dict[str, Any],
    dataset: Dataset,
    predictions: pd.DataFrame,
    importance: pd.DataFrame,
    *,
    dataset_dir: Path | None = None,
    risks: pd.DataFrame | None = None,
) -> str:
    """The whole report as one HTML string, from metrics.json's document, the job's tables, the snapshot's
    population.json and pictures (under `dataset_dir`) and every patient's predicted risks (`risks`)."""
    dataset_id = escape(str(document.get("dataset_id") or "unknown"))
    population, note = (
        load_population(dataset_dir) if dataset_dir is not None else (None, "no dataset folder")
    )
    sections = [
        findings_section(document),
        _cohort(dataset),
        _prevalence(document, dataset),
        population_sections(population, note),
        *evaluation_sections(document, predictions),
        _importance(importance),
        patient_section(dataset.patients, dataset.patients_note, risks, dataset_dir or Path(".")),
    ]
    if document["skipped"]:
        sections.append(_skipped(document["skipped"]))
    versions = ", ".join(f"{escape(k)} {escape(v)}" for k, v in document["versions"].items())
    parameters = ", ".join(
        f"{escape(k)}={escape(json.dumps(v))}" for k, v in document["parameters"].items() if v is not None
    )
    nav = " ".join(
        f'<a href="#{anchor}">{title}</a>'
        for anchor, title in (
            ("findings", "Findings"),
            ("cohort", "Cohort"),
            ("prevalence", "Prevalence"),
            *POPULATION_SECTIONS,
            *EVALUATION_SECTIONS,
            ("importance", "Feature importance"),
            ("patients", "Patients"),
        )
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Outcome models - dataset {dataset_id}</title>
<style>{_STYLE}</style>
<script>window.PlotlyConfig = {{MathJaxConfig: "local"}};</script>
<script>{get_plotlyjs()}</script>
</head>
<body>
<header>
<h1>Outcome models</h1>
<p>Dataset <strong>{dataset_id}</strong> (run {escape(str(document.get("run_id") or "-"))}), trained
{escape(str(document["finished_at"]))} in {document["wall_seconds"]} s.
Research, synthetic-data demo: not for clinical use.</p>
<nav>{nav}</nav>
</header>
{"".join(sections)}
<footer><h2>Provenance</h2><p class="note">Parameters: {parameters}.</p><p class="note">Versions: {versions}.</p>
</footer>
</body>
</html>
"""


def _cohort(dataset: Dataset) -> str:
    manifest_counts = dataset.manifest.get("patients_per_modality") or {}
    rows = []
    for modality in MODALITIES:
        columns = dataset.columns.get(modality, [])
        with_values = int(dataset.frame[columns].notna().any(axis=1).sum()) if columns else 0
        rows.append(
            [
                escape(modality),
                num_cell(manifest_counts.get(modality, "-")),
                num_cell(with_values),
                num_cell(len(columns)),
            ]
        )
    return section(
        "cohort",
        "Cohort",
        f"<p>{len(dataset.frame)} patients in the dataset snapshot. A patient without a modality keeps a row "
        "with empty values for it and stays in every modality set; a modality no patient has is not trained."
        "</p>"
        + table(["Modality", "Patients (manifest)", "Patients with values", "Feature columns"], rows)
        + _linkage(dataset.manifest.get("linkage") or {}),
    )


LINKAGE_SOURCES = {
    "patient_id": "Patient ids (resources and the records naming them)",
    "identifier": "Patient identifiers records name them by",
    "vcf_sample": "VCF samples",
    "dicom_patient_id": "DICOM PatientIDs",
}


def _linkage(linkage: dict[str, Any]) -> str:
    """Who each source reference was linked to: counts, and the first unlinked ones (identifiers only)."""
    if not linkage:
        return ""
    rows = []
    for kind, label in LINKAGE_SOURCES.items():
        entry = linkage.get(kind) or {}
        first = ", ".join(escape(str(v)) for v in entry.get("first_unlinked", [])[:10])
        rows.append(
            [
                escape(label),
                num_cell(entry.get("linked", 0)),
                num_cell(entry.get("unlinked", 0)),
                first or "-",
            ]
        )
    return "<h3>Linkage to persons</h3>" + table(["Source", "Linked", "Unlinked", "First unlinked"], rows)


def _prevalence(document: dict[str, Any], dataset: Dataset) -> str:
    prevalence = dataset.manifest.get("prevalence") or {}
    rows = []
    for outcome in document["parameters"]["outcomes"]:
        stated = prevalence.get(outcome) or {}
        counts = document["counts"].get(outcome)
        rows.append(
            [
                escape(outcome),
                num_cell(stated.get("eligible", "-")),
                num_cell(stated.get("positives", "-")),
                num_cell(
                    f"{stated['prevalence']:.1%}" if isinstance(stated.get("prevalence"), float) else "-"
                ),
                num_cell(counts["n_train"] if counts else "not trained"),
                num_cell(f"{counts['n_test']} ({counts['positives_test']} positive)" if counts else "-"),
            ]
        )
    return section(
        "prevalence",
        "Label prevalence",
        "<p>Patients with an empty label are not eligible for that outcome and are left out of its models.</p>"
        + table(["Outcome", "Eligible", "Positive", "Prevalence", "Train", "Test"], rows),
    )


def _importance(importance: pd.DataFrame) -> str:
    if importance.empty:
        return section("importance", "Feature importance", "<p>No feature importance was computed.</p>")
    figures = []
    for outcome, rows in importance.groupby("outcome", sort=False):
        top = rows.sort_values("importance", ascending=False).head(TOP_FEATURES).iloc[::-1]
        figure = go.Figure(
            go.Bar(
                x=top["importance"],
                y=top["feature"],
                orientation="h",
                error_x={"type": "data", "array": top["stddev"].fillna(0)},
                marker_color="#486581",
            )
        )
        figure.update_layout(
            title=f"{outcome} ({rows['set'].iloc[0]})",
            xaxis_title="Drop in test ROC AUC when the feature is shuffled",
            height=120 + 24 * len(top),
            margin={"l": 220, "t": 50},
        )
        figures.append(figure_html(figure, f"importance-{outcome}"))
    return section(
        "importance",
        "Feature importance",
        f"<p class='note'>Permutation importance of the full set's predictor on a test subsample; top "
        f"{TOP_FEATURES} per outcome, bars &plusmn; one standard deviation over the shuffles.</p>"
        + "".join(figures),
    )


def _skipped(skipped: list[dict[str, Any]]) -> str:
    rows = [
        [escape(str(s["outcome"])), escape(str(s["set"] or "all")), escape(str(s["reason"]))] for s in skipped
    ]
    return section("skipped", "Not trained", table(["Outcome", "Set", "Reason"], rows))
