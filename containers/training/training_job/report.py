"""report.html: one self-contained file (plotly.js, data and script inline; no network request when opened).

Sections: cohort, label prevalence, test metrics with intervals, ROC curves, modality ablation, feature
importance, patient view. Every value from the data is HTML-escaped (tables) or inserted with textContent
(patient view), so a display string cannot inject markup.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from training_job import CONTROL, MODALITIES
from training_job.dataset import PATIENT_ID, Dataset
from training_job.evaluate import METRICS, roc_points

REPORT_FILE = "report.html"
TOP_FEATURES = 15
MAX_PATIENTS = 500  # bounds the file; patients scored in a test split come first
METRIC_LABELS = {
    "accuracy": "Accuracy",
    "balanced_accuracy": "Balanced acc.",
    "precision": "Precision",
    "recall": "Recall",
    "f1": "F1",
    "roc_auc": "ROC AUC",
}
SIGNIFICANCE_ORDER = ("pathogenic", "likely pathogenic", "uncertain significance")
_PLOT_CONFIG = {"displaylogo": False, "responsive": True}

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
.note { color: #52606d; font-size: 0.9rem; }
.figure { margin: 0.5rem 0 1.5rem; }
select { font-size: 1rem; padding: 0.2rem; }
"""

_PATIENT_SCRIPT = """
(function () {
  "use strict";
  var source = document.getElementById("patient-data");
  var select = document.getElementById("patient-select");
  var view = document.getElementById("patient-detail");
  if (!source || !select || !view) { return; }
  var patients = JSON.parse(source.textContent).patients;
  function text(value) {
    if (value === null || value === undefined) { return ""; }
    if (typeof value === "number") { return String(Number(value.toPrecision(4))); }
    return String(value);
  }
  function table(title, headers, rows) {
    var heading = document.createElement("h3");
    heading.textContent = title;
    view.appendChild(heading);
    if (!rows.length) {
      var none = document.createElement("p");
      none.className = "note";
      none.textContent = "None recorded.";
      view.appendChild(none);
      return;
    }
    var grid = document.createElement("table");
    var head = document.createElement("tr");
    headers.forEach(function (name) {
      var th = document.createElement("th");
      th.textContent = name;
      head.appendChild(th);
    });
    grid.appendChild(head);
    rows.forEach(function (row) {
      var tr = document.createElement("tr");
      row.forEach(function (value) {
        var td = document.createElement("td");
        td.textContent = text(value);
        tr.appendChild(td);
      });
      grid.appendChild(tr);
    });
    view.appendChild(grid);
  }
  function show(index) {
    var p = patients[index];
    view.textContent = "";
    table("Clinical timeline", ["Date", "Kind", "Code", "Display"], (p.timeline || []).map(function (e) {
      return [e.date, e.kind, e.code, e.display];
    }));
    table("Variants of note", ["Gene", "Variant", "Significance", "Zygosity"], (p.variants || []).map(function (v) {
      return [v.gene, v.variant, v.significance, v.zygosity];
    }));
    var radiomics = [];
    Object.keys(p.radiomics || {}).forEach(function (region) {
      var features = p.radiomics[region] || {};
      Object.keys(features).forEach(function (name) { radiomics.push([region, name, features[name]]); });
    });
    table("Radiomics", ["Region", "Feature", "Value"], radiomics);
    table("Model scores (test split)", ["Outcome", "Modality set", "Label", "Predicted probability"],
      (p.scores || []).map(function (s) { return [s.outcome, s.set, s.y_true ? "yes" : "no", s.y_score]; }));
  }
  patients.forEach(function (p, index) {
    var option = document.createElement("option");
    option.value = String(index);
    option.textContent = p.patient_id;
    select.appendChild(option);
  });
  select.addEventListener("change", function () { show(Number(select.value)); });
  if (patients.length) { show(0); }
})();
"""


def render_report(
    document: dict[str, Any], dataset: Dataset, predictions: pd.DataFrame, importance: pd.DataFrame
) -> str:
    """The whole report as one HTML string, from metrics.json's document and the job's tables."""
    dataset_id = escape(str(document.get("dataset_id") or "unknown"))
    sections = [
        _cohort(dataset),
        _prevalence(document, dataset),
        _metrics_table(document),
        _roc_curves(document, predictions),
        _ablation(document),
        _importance(importance),
        _patients(dataset, predictions, document["reference_sets"]["full"]),
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
            ("cohort", "Cohort"),
            ("prevalence", "Prevalence"),
            ("metrics", "Metrics"),
            ("roc", "ROC curves"),
            ("ablation", "Ablation"),
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
                _num(manifest_counts.get(modality, "-")),
                _num(with_values),
                _num(len(columns)),
            ]
        )
    return _section(
        "cohort",
        "Cohort",
        f"<p>{len(dataset.frame)} patients in the dataset snapshot. A patient without a modality keeps a row "
        "with empty values for it and stays in every modality set; a modality no patient has is not trained."
        "</p>"
        + _table(["Modality", "Patients (manifest)", "Patients with values", "Feature columns"], rows)
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
            [escape(label), _num(entry.get("linked", 0)), _num(entry.get("unlinked", 0)), first or "-"]
        )
    return "<h3>Linkage to persons</h3>" + _table(["Source", "Linked", "Unlinked", "First unlinked"], rows)


def _prevalence(document: dict[str, Any], dataset: Dataset) -> str:
    prevalence = dataset.manifest.get("prevalence") or {}
    rows = []
    for outcome in document["parameters"]["outcomes"]:
        stated = prevalence.get(outcome) or {}
        counts = document["counts"].get(outcome)
        rows.append(
            [
                escape(outcome),
                _num(stated.get("eligible", "-")),
                _num(stated.get("positives", "-")),
                _num(f"{stated['prevalence']:.1%}" if isinstance(stated.get("prevalence"), float) else "-"),
                _num(counts["n_train"] if counts else "not trained"),
                _num(f"{counts['n_test']} ({counts['positives_test']} positive)" if counts else "-"),
            ]
        )
    return _section(
        "prevalence",
        "Label prevalence",
        "<p>Patients with an empty label are not eligible for that outcome and are left out of its models.</p>"
        + _table(["Outcome", "Eligible", "Positive", "Prevalence", "Train", "Test"], rows),
    )


def _metrics_table(document: dict[str, Any]) -> str:
    rows = []
    classes = []
    for outcome, by_set in document["metrics"].items():
        for modality_set, metrics in by_set.items():
            rows.append([escape(outcome), escape(modality_set), *(_estimate(metrics[m]) for m in METRICS)])
            classes.append("")
        if outcome in document["control"]:
            control = document["control"][outcome]
            label = f"{CONTROL}: shuffled labels ({document['reference_sets']['full']})"
            rows.append([escape(outcome), escape(label), *(_estimate(control[m]) for m in METRICS)])
            classes.append("control")
    ci = document["evaluation"]["ci"]
    note = (
        f"<p class='note'>Test split, one per outcome and shared by every set. Value [{ci['level']:.0%} interval]: "
        f"percentile bootstrap, {ci['resamples']} resamples of the test rows (seed {ci['seed']}). "
        f"Predicted positive when the probability is &ge; {document['evaluation']['threshold']}. "
        "The shuffled-label control is the full set refit on permuted training labels: its AUC should be "
        "near 0.5. It is one permutation, so on a small training set it can land 0.1-0.2 away by chance "
        "(the permuted labels correlate a little with a strong feature); far from 0.5 on a large one "
        "suggests leakage.</p>"
    )
    return _section(
        "metrics",
        "Test metrics",
        note + _table(["Outcome", "Modality set", *(METRIC_LABELS[m] for m in METRICS)], rows, classes),
    )


def _roc_curves(document: dict[str, Any], predictions: pd.DataFrame) -> str:
    figures = []
    for outcome in document["metrics"]:
        figure = go.Figure()
        scored = predictions[predictions["outcome"] == outcome]
        for modality_set, rows in scored.groupby("set", sort=False):
            fpr, tpr = roc_points(rows["y_true"].to_numpy(), rows["y_score"].to_numpy())
            control = modality_set == CONTROL
            auc = (
                document["control"][outcome] if control else document["metrics"][outcome][str(modality_set)]
            )["roc_auc"]["value"]
            figure.add_trace(
                go.Scatter(
                    x=fpr,
                    y=tpr,
                    mode="lines",
                    name=f"{modality_set} (AUC {auc:.3f})",
                    line={"dash": "dash", "color": "#9aa5b1"} if control else {},
                )
            )
        figure.add_trace(
            go.Scatter(
                x=[0, 1], y=[0, 1], mode="lines", name="chance", line={"dash": "dot", "color": "#cbd2d9"}
            )
        )
        figure.update_layout(
            title=f"{outcome}",
            xaxis_title="False positive rate",
            yaxis_title="True positive rate",
            height=420,
            margin={"t": 50, "b": 40},
        )
        figures.append(_figure(figure, f"roc-{outcome}"))
    return _section("roc", "ROC curves", "".join(figures) or "<p>No model was trained.</p>")


def _ablation(document: dict[str, Any]) -> str:
    figure = go.Figure()
    for outcome, by_set in document["metrics"].items():
        entries = {s: m["roc_auc"] for s, m in by_set.items()}
        if outcome in document["control"]:
            entries[CONTROL] = document["control"][outcome]["roc_auc"]
        values = [e["value"] for e in entries.values()]
        figure.add_trace(
            go.Bar(
                name=outcome,
                x=list(entries),
                y=values,
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": [
                        (e["ci_high"] - e["value"]) if e["ci_high"] is not None else 0
                        for e in entries.values()
                    ],
                    "arrayminus": [
                        (e["value"] - e["ci_low"]) if e["ci_low"] is not None else 0 for e in entries.values()
                    ],
                },
            )
        )
    figure.add_hline(y=0.5, line_dash="dot", line_color="#9aa5b1")
    figure.update_layout(
        barmode="group",
        yaxis_title="Test ROC AUC (95% interval)",
        yaxis_range=[0, 1],
        height=460,
        margin={"t": 30},
    )
    rows = [
        [
            escape(outcome),
            escape(f"{gain['full']} - {gain['baseline']}"),
            _estimate({k: gain[k] for k in ("value", "ci_low", "ci_high")}, signed=True),
        ]
        for outcome, gain in document["gain"].items()
    ]
    gain_table = (
        "<h3>Multimodal gain</h3><p class='note'>AUC of the full set minus AUC of the clinical set on the same "
        "test patients; the interval comes from a paired bootstrap (the same resampled rows for both).</p>"
        + _table(["Outcome", "Sets", "AUC difference"], rows)
        if rows
        else "<p class='note'>No multimodal gain: the clinical set or the full set was not trained.</p>"
    )
    return _section(
        "ablation",
        "Modality ablation",
        "<p>Test ROC AUC per modality set, every set trained and tested on the same patients.</p>"
        + _figure(figure, "ablation")
        + gain_table,
    )


def _importance(importance: pd.DataFrame) -> str:
    if importance.empty:
        return _section("importance", "Feature importance", "<p>No feature importance was computed.</p>")
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
        figures.append(_figure(figure, f"importance-{outcome}"))
    return _section(
        "importance",
        "Feature importance",
        f"<p class='note'>Permutation importance of the full set's predictor on a test subsample; top "
        f"{TOP_FEATURES} per outcome, bars &plusmn; one standard deviation over the shuffles.</p>"
        + "".join(figures),
    )


def _patients(dataset: Dataset, predictions: pd.DataFrame, full_set: str) -> str:
    if dataset.patients is None:
        return _section(
            "patients",
            "Patient view",
            f"<p>No patient view: {escape(dataset.patients_note or 'no data')}.</p>",
        )
    scored = predictions[predictions["set"] == full_set]
    scores: dict[str, list[dict[str, Any]]] = {}
    for row in scored.itertuples(index=False):
        scores.setdefault(str(getattr(row, PATIENT_ID)), []).append(
            {"outcome": row.outcome, "set": row.set, "y_true": int(row.y_true), "y_score": float(row.y_score)}
        )
    ordered = sorted(dataset.patients, key=lambda p: str(p[PATIENT_ID]) not in scores)
    shown = ordered[:MAX_PATIENTS]
    payload = {
        "patients": [
            {
                "patient_id": str(p[PATIENT_ID]),
                "timeline": sorted(p.get("timeline") or [], key=lambda e: str(e.get("date") or "")),
                "variants": sorted(p.get("variants") or [], key=_significance_rank),
                "radiomics": p.get("radiomics") or {},
                "scores": scores.get(str(p[PATIENT_ID]), []),
            }
            for p in shown
        ]
    }
    # JSON inside <script>: escape <, > and & so no value can close the element.
    data = json.dumps(payload).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    limit = (
        f" Showing {len(shown)} of {len(ordered)} patients (those scored in a test split first)."
        if len(ordered) > len(shown)
        else ""
    )
    body = (
        f"<p>Clinical timeline, variants of note and radiomics per patient, with the full set's predicted "
        f"probability for each outcome where the patient was in the test split.{limit}</p>"
        '<label for="patient-select">Patient </label><select id="patient-select"></select>'
        '<div id="patient-detail"></div>'
        f'<script type="application/json" id="patient-data">{data}</script>'
        f'<script id="patient-view-script">{_PATIENT_SCRIPT}</script>'
    )
    return _section("patients", "Patient view", body)


def _skipped(skipped: list[dict[str, Any]]) -> str:
    rows = [
        [escape(str(s["outcome"])), escape(str(s["set"] or "all")), escape(str(s["reason"]))] for s in skipped
    ]
    return _section("skipped", "Not trained", _table(["Outcome", "Set", "Reason"], rows))


def _significance_rank(variant: dict[str, Any]) -> int:
    significance = str(variant.get("significance") or "").lower().replace("_", " ")
    for rank, name in enumerate(SIGNIFICANCE_ORDER):
        if significance.startswith(name):
            return rank
    return len(SIGNIFICANCE_ORDER)


def _figure(figure: go.Figure, div_id: str) -> str:
    # "fig-": a plot's id must not collide with a section's (Plotly draws into the first element with it).
    html: str = figure.to_html(
        full_html=False, include_plotlyjs=False, div_id=f"fig-{div_id}", config=_PLOT_CONFIG
    )
    return f'<div class="figure">{html}</div>'


def _section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{escape(title)}</h2>{body}</section>\n'


def _table(headers: list[str], rows: list[list[str]], classes: list[str] | None = None) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for index, row in enumerate(rows):
        css = classes[index] if classes and classes[index] else ""
        cells = "".join(cell if cell.startswith("<td") else f"<td>{cell}</td>" for cell in row)
        body.append(f'<tr class="{css}">{cells}</tr>' if css else f"<tr>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _num(value: Any) -> str:
    return f'<td class="num">{escape(str(value))}</td>'


def _estimate(estimate: dict[str, Any], signed: bool = False) -> str:
    spec = "+.3f" if signed else ".3f"
    text = escape(format(estimate["value"], spec))
    if estimate.get("ci_low") is not None and estimate.get("ci_high") is not None:
        text += f"<br><span class='ci'>[{format(estimate['ci_low'], spec)}, {format(estimate['ci_high'], spec)}]</span>"
    return f'<td class="num">{text}</td>'
