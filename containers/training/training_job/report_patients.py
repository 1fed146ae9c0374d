"""The report's patient view: a searchable picker over every patient of the snapshot, then for the chosen one a
header (age, sex, index date, labels, predicted risks), a collapsed timeline, vitals and labs plotted,
variants of note, and radiomics with the series' thumbnail and mask overlay.

Data: the snapshot's patients.json (mmhealth.training.patient_views), the pictures in its images/ folder
(embedded as data URIs: the report is one self-contained file), and each patient's predicted risks from the
full set's predictors (training_job.scoring, the same numbers the scoring step writes). The data travels as
JSON inside a <script type="application/json"> element, escaped so no value can close it; the script builds
the view with textContent only (no HTML from data) and draws the plots with the inlined plotly.
"""

from __future__ import annotations

import base64
import json
from html import escape
from pathlib import Path
from typing import Any

import pandas as pd

from training_job.report_html import section

MEASUREMENT_LABELS = {
    "systolic_mmhg": "Systolic blood pressure (mmHg)",
    "diastolic_mmhg": "Diastolic blood pressure (mmHg)",
    "heart_rate_per_min": "Heart rate (/min)",
    "body_weight_kg": "Body weight (kg)",
    "body_height_cm": "Body height (cm)",
    "bmi_kg_m2": "BMI (kg/m2)",
    "total_cholesterol_mg_dl": "Total cholesterol (mg/dL)",
    "ldl_mg_dl": "LDL cholesterol (mg/dL)",
    "hdl_mg_dl": "HDL cholesterol (mg/dL)",
    "hba1c_pct": "HbA1c (%)",
    "mmse_score": "MMSE score",
}
MAX_IMAGE_BYTES = 200_000
_STYLE = """
#patient-search { width: 28em; font: inherit; }
.measurements { display: grid; grid-template-columns: repeat(auto-fill, minmax(360px, 1fr)); gap: 0.5em; }
.radiomics-image { display: inline-block; margin: 0.5em 1em 0.5em 0; }
.radiomics-image img { width: 256px; image-rendering: auto; border: 1px solid #d0d7de; }
"""  # a larger picture is left out (the radiomics job writes < 60 kB)


def patient_section(
    patients: list[dict[str, Any]] | None, note: str | None, risks: pd.DataFrame | None, dataset_dir: Path
) -> str:
    """The patient view for every patient; `risks` has patient_id, outcome, probability, decision, threshold."""
    if not patients:
        return section("patients", "Patient view", f"<p>No patient view: {escape(note or 'no data')}.</p>")
    by_patient: dict[str, list[dict[str, Any]]] = {}
    if risks is not None:
        for row in risks.itertuples(index=False):
            by_patient.setdefault(str(row.patient_id), []).append(
                {"outcome": row.outcome, "probability": round(float(row.probability), 4),
                 "decision": bool(row.decision), "threshold": round(float(row.threshold), 4)}
            )  # fmt: skip
    payload = {
        "labels": MEASUREMENT_LABELS,
        "patients": [_patient(p, by_patient.get(str(p["patient_id"]), []), dataset_dir) for p in patients],
    }
    # JSON inside <script>: escape <, > and & so no value can close the element.
    data = json.dumps(payload).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    body = (
        f"<p>{len(patients):,} patients. Pick one by id (type to search). Risks are the full set's predicted "
        "probabilities; a decision is the probability at the threshold chosen on the training data. "
        "Patients the model was trained on have in-sample, optimistic risks.</p>"
        f"<style>{_STYLE}</style>"
        '<label for="patient-search">Patient </label>'
        '<input id="patient-search" list="patient-ids" autocomplete="off" placeholder="patient id">'
        '<datalist id="patient-ids"></datalist> <span id="patient-count" class="note"></span>'
        '<div id="patient-detail"></div>'
        f'<script type="application/json" id="patient-data">{data}</script>'
        f'<script id="patient-view-script">{PATIENT_SCRIPT}</script>'
    )
    return section("patients", "Patient view", body)


def _patient(p: dict[str, Any], risks: list[dict[str, Any]], dataset_dir: Path) -> dict[str, Any]:
    images = {}
    for kind in ("thumbnail", "overlay"):
        relative = (p.get("images") or {}).get(kind)
        if relative:
            images[kind] = _data_uri(dataset_dir, relative)
    return {
        "patient_id": str(p["patient_id"]),
        "header": p.get("header") or {},
        "risks": sorted(risks, key=lambda r: r["outcome"]),
        "timeline": sorted(p.get("timeline") or [], key=lambda e: str(e.get("date") or "")),
        "measurements": p.get("measurements") or {},
        "variants": p.get("variants") or [],
        "radiomics": p.get("radiomics") or {},
        "images": {k: v for k, v in images.items() if v},
    }


def _data_uri(dataset_dir: Path, relative: str) -> str | None:
    path = (dataset_dir / relative).resolve()
    if dataset_dir.resolve() not in path.parents or not path.is_file():
        return None  # outside the snapshot, or not copied
    content = path.read_bytes()
    if len(content) > MAX_IMAGE_BYTES or not content.startswith(b"\x89PNG"):
        return None
    return "data:image/png;base64," + base64.b64encode(content).decode()


PATIENT_SCRIPT = r"""
(function () {
  var data = JSON.parse(document.getElementById("patient-data").textContent);
  var patients = data.patients, byId = {};
  var input = document.getElementById("patient-search");
  var list = document.getElementById("patient-ids");
  var view = document.getElementById("patient-detail");
  patients.forEach(function (p) {
    byId[p.patient_id] = p;
    var option = document.createElement("option");
    option.value = p.patient_id;
    list.appendChild(option);
  });
  document.getElementById("patient-count").textContent = patients.length + " patients";
  function el(tag, text, className) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    if (className) { node.className = className; }
    return node;
  }
  function fmt(value) {
    if (value === null || value === undefined) { return "-"; }
    if (typeof value === "number") { return String(Number(value.toPrecision(4))); }
    return String(value);
  }
  function grid(headers, rows) {
    if (!rows.length) { return el("p", "None recorded.", "note"); }
    var table = el("table"), head = el("tr");
    headers.forEach(function (h) { head.appendChild(el("th", h)); });
    table.appendChild(head);
    rows.forEach(function (row) {
      var tr = el("tr");
      row.forEach(function (v) { tr.appendChild(el("td", fmt(v))); });
      table.appendChild(tr);
    });
    return table;
  }
  function header(p) {
    var h = p.header || {}, labels = h.labels || {}, risks = {};
    (p.risks || []).forEach(function (r) { risks[r.outcome] = r; });
    var box = el("div", null, "patient-header");
    box.appendChild(el("h3", "Patient " + p.patient_id));
    var age = typeof h.age === "number" ? Math.floor(h.age) + " years" : "unknown";
    box.appendChild(el("p", "Age " + age + " at the index date " + fmt(h.index_date) + "; sex " + fmt(h.sex)));
    var outcomes = Object.keys(labels).concat(Object.keys(risks).filter(function (o) { return !(o in labels); }));
    box.appendChild(grid(["Outcome", "Label (after the index date)", "Onset", "Predicted risk", "Decision"],
      outcomes.map(function (o) {
        var l = labels[o] || {}, r = risks[o];
        var label = l.label === null || l.label === undefined ? "not eligible" : (l.label ? "yes" : "no");
        return [o.replace(/_/g, " "), label, l.onset, r ? r.probability : null,
                r ? (r.decision ? "at risk (\u2265 " + fmt(r.threshold) + ")" : "below " + fmt(r.threshold)) : null];
      })));
    return box;
  }
  function timeline(p) {
    var details = el("details");
    details.appendChild(el("summary", "Timeline: " + (p.timeline || []).length + " events (click to open)"));
    var years = {};
    (p.timeline || []).forEach(function (e) { (years[e.date.slice(0, 4)] = years[e.date.slice(0, 4)] || []).push(e); });
    Object.keys(years).sort().forEach(function (year) {
      var inner = el("details");
      inner.appendChild(el("summary", year + ": " + years[year].length + " events"));
      inner.appendChild(grid(["Date", "Kind", "Code", "Display"], years[year].map(function (e) {
        return [e.date, e.kind, e.code, e.display];
      })));
      details.appendChild(inner);
    });
    return details;
  }
  function measurements(p) {
    var box = el("div", null, "measurements");
    var names = Object.keys(p.measurements || {});
    if (!names.length) { box.appendChild(el("p", "No vitals or labs recorded.", "note")); return box; }
    names.forEach(function (name, index) {
      var points = p.measurements[name], plot = el("div", null, "measurement-plot");
      plot.id = "measurement-" + index;
      box.appendChild(plot);
      setTimeout(function () {
        var trace = {x: points.map(function (q) { return q[0]; }), y: points.map(function (q) { return q[1]; }),
                     mode: "lines+markers", name: name};
        var layout = {title: {text: data.labels[name] || name, font: {size: 13}}, height: 220,
                      margin: {l: 45, r: 10, t: 35, b: 35}, template: "plotly_white", xaxis: {type: "date"}};
        if (points.length === 1) {  // one value: a year around it, not a microsecond axis
          var day = new Date(points[0][0]).getTime(), half = 183 * 86400000;
          layout.xaxis.range = [new Date(day - half).toISOString().slice(0, 10),
                                new Date(day + half).toISOString().slice(0, 10)];
        }
        Plotly.newPlot(plot, [trace], layout, {displaylogo: false, responsive: true});
      }, 0);
    });
    return box;
  }
  function imaging(p) {
    var box = el("div");
    var regions = Object.keys(p.radiomics || {});
    box.appendChild(grid(["Region", "Volume (ml)", "First-order mean"], regions.map(function (r) {
      return [r, (p.radiomics[r] || {}).volume_ml, (p.radiomics[r] || {}).firstorder_mean];
    })));
    ["thumbnail", "overlay"].forEach(function (kind) {
      if (p.images && p.images[kind]) {
        var figure = el("figure", null, "radiomics-image"), img = el("img");
        img.setAttribute("src", p.images[kind]);  // a data: URI, embedded
        img.alt = kind === "overlay" ? "axial slice with the segmented regions" : "axial slice";
        figure.appendChild(img);
        figure.appendChild(el("figcaption", kind === "overlay" ? "Mask overlay" : "Slice"));
        box.appendChild(figure);
      }
    });
    return box;
  }
  function show(id) {
    var p = byId[id];
    if (!p) { return; }
    view.textContent = "";
    view.appendChild(header(p));
    view.appendChild(el("h3", "Timeline"));
    view.appendChild(timeline(p));
    view.appendChild(el("h3", "Vitals and labs"));
    view.appendChild(measurements(p));
    view.appendChild(el("h3", "Variants of note"));
    view.appendChild(grid(["Gene", "Variant", "Significance", "Zygosity"], (p.variants || []).map(function (v) {
      return [v.gene, v.variant, v.significance, v.zygosity];
    })));
    view.appendChild(el("h3", "Radiomics"));
    view.appendChild(imaging(p));
  }
  input.addEventListener("change", function () { show(input.value.trim()); });
  input.addEventListener("input", function () { if (byId[input.value.trim()]) { show(input.value.trim()); } });
  var first = patients.filter(function (p) { return p.images && p.images.overlay; })[0] || patients[0];
  if (first) { input.value = first.patient_id; show(first.patient_id); }
})();
"""
