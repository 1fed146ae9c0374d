"""The report's population and data-quality sections, from the snapshot's population.json (written by the
Features step: mmhealth.training.population). Counts and distributions only; every label is escaped.

    document, note = load_population(dataset_dir)
    html = population_sections(document)     # clinical, genomic, imaging, data quality
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from training_job.report_html import figure_html, num_cell, section, table

POPULATION_FILE = "population.json"
POPULATION_SECTIONS = (
    ("population-clinical", "Clinical"),
    ("population-genomic", "Genomic"),
    ("population-imaging", "Imaging"),
    ("data-quality", "Data quality"),
)
SIGNIFICANCE_COLOURS = {
    "pathogenic / likely pathogenic": "#b2182b",
    "uncertain / conflicting": "#f4a582",
    "benign / likely benign": "#4393c3",
    "not provided": "#bababa",
    "other": "#878787",
}
_LAYOUT = {"height": 320, "margin": {"l": 50, "r": 20, "t": 40, "b": 50}, "template": "plotly_white"}


def load_population(dataset_dir: Path) -> tuple[dict[str, Any] | None, str | None]:
    """population.json of the snapshot, or (None, why not) - the report says why its sections are empty."""
    path = dataset_dir / POPULATION_FILE
    if not path.is_file():
        return None, f"the dataset snapshot has no {POPULATION_FILE} (written by snapshots since 2026-12-05)"
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        return None, f"{POPULATION_FILE} cannot be read: {error}"
    return (document, None) if isinstance(document, dict) else (None, f"{POPULATION_FILE} is not an object")


def population_sections(document: dict[str, Any] | None, note: str | None = None) -> str:
    if document is None:
        return section(
            "population", "Population", f"<p class='note'>{escape(note or 'no population data')}</p>"
        )
    return (
        section("population-clinical", "Population: clinical", _clinical(document.get("clinical") or {}))
        + section("population-genomic", "Population: genomic", _genomic(document.get("genomic") or {}))
        + section("population-imaging", "Population: imaging", _imaging(document.get("imaging") or {}))
        + section("data-quality", "Data quality", _quality(document.get("quality") or {}))
    )


def _unavailable(part: dict[str, Any]) -> str | None:
    return (
        f"<p class='note'>not available: {escape(str(part['unavailable']))}</p>"
        if "unavailable" in part
        else None
    )


# ------------------------------------------------------------------------------------------------ clinical


def _clinical(clinical: dict[str, Any]) -> str:
    if (missing := _unavailable(clinical)) is not None:
        return missing
    parts = []
    age_sex = clinical.get("age_sex") or []
    if age_sex:
        figure = go.Figure(
            layout={**_LAYOUT, "title": "Patients by age at the index date and sex", "barmode": "group"}
        )
        for sex in sorted({r["sex"] for r in age_sex}):
            rows = [r for r in age_sex if r["sex"] == sex]
            figure.add_bar(x=[r["band"] for r in rows], y=[r["patients"] for r in rows], name=sex)
        parts.append(figure_html(figure, "age-sex"))
    months = clinical.get("encounters_by_month") or []
    if months:
        figure = go.Figure(layout={**_LAYOUT, "title": "Encounters per month"})
        figure.add_scatter(
            x=[r["month"] for r in months], y=[r["count"] for r in months], mode="lines", name="encounters"
        )
        parts.append(figure_html(figure, "encounters"))
    claims = clinical.get("claims_by_month") or []
    if claims:
        figure = go.Figure(layout={**_LAYOUT, "title": "Claims per month (count; total billed on the right axis)",
                                   "yaxis2": {"overlaying": "y", "side": "right", "showgrid": False}})  # fmt: skip
        figure.add_bar(x=[r["month"] for r in claims], y=[r["claims"] for r in claims], name="claims")
        figure.add_scatter(
            x=[r["month"] for r in claims], y=[r["total"] for r in claims], name="total", yaxis="y2"
        )
        parts.append(figure_html(figure, "claims"))
    for key, title in (
        ("conditions", "Conditions"),
        ("procedures", "Procedures"),
        ("medications", "Medications"),
    ):
        rows = clinical.get(key) or []
        parts.append(f"<h3>{title}: the most frequent, by patients</h3>")
        parts.append(
            table(["Code", "Display", "Patients"],
                  [[escape(str(r["code"])), escape(str(r["display"])), num_cell(r["patients"])] for r in rows])
            if rows else "<p class='note'>none recorded</p>"
        )  # fmt: skip
    return "".join(parts)


# ------------------------------------------------------------------------------------------------- genomic


def _genomic(genomic: dict[str, Any]) -> str:
    if (missing := _unavailable(genomic)) is not None:
        return missing
    parts = [f"<p>{int(genomic.get('samples') or 0):,} genotyped samples.</p>"]
    carriers = genomic.get("carriers") or []
    if carriers:
        genes = sorted(
            {r["gene"] for r in carriers},
            key=lambda g: -sum(r["carriers"] for r in carriers if r["gene"] == g),
        )
        title = "Carriers per gene by ClinVar significance (PASS alleles; a carrier of two classes counts in both)"
        figure = go.Figure(layout={**_LAYOUT, "title": title, "barmode": "stack", "height": 380})
        for significance, colour in SIGNIFICANCE_COLOURS.items():
            count = {r["gene"]: r["carriers"] for r in carriers if r["significance"] == significance}
            if count:
                figure.add_bar(
                    x=genes, y=[count.get(g, 0) for g in genes], name=significance, marker_color=colour
                )
        parts.append(figure_html(figure, "carriers"))
        pathogenic = [r for r in carriers if r["significance"] == "pathogenic / likely pathogenic"]
        parts.append("<h3>Genes with pathogenic or likely pathogenic carriers</h3>")
        parts.append(
            table(["Gene", "Carriers"], [[escape(r["gene"]), num_cell(r["carriers"])] for r in pathogenic])
            if pathogenic else "<p class='note'>none</p>"
        )  # fmt: skip
    else:
        parts.append(
            "<p class='note'>no ClinVar-annotated allele is carried (or no annotation VCF was delivered)</p>"
        )
    burden = genomic.get("burden") or {}
    if burden:
        figure = go.Figure(layout={**_LAYOUT, "title": "Pathogenic burden (alleles per patient)"})
        figure.add_bar(x=list(burden), y=list(burden.values()), name="patients")
        parts.append(figure_html(figure, "burden"))
    return "".join(parts)


# ------------------------------------------------------------------------------------------------- imaging


def _imaging(imaging: dict[str, Any]) -> str:
    if (missing := _unavailable(imaging)) is not None:
        return missing
    series = imaging.get("series") or []
    if not series:
        return "<p class='note'>no imaging series</p>"
    parts = [
        table(["Modality", "Body part", "Series"],
              [[escape(r["modality"]), escape(r["body_part"]), num_cell(r["series"])] for r in series])
    ]  # fmt: skip
    by_outcome = imaging.get("by_outcome") or {}
    measures = sorted({m for per in by_outcome.values() for m in per})
    for measure in measures:
        figure = go.Figure(
            layout={**_LAYOUT, "title": f"{measure.replace('_', ' ')} by outcome", "boxmode": "group"}
        )
        for group, colour in (("with", "#b2182b"), ("without", "#4393c3")):
            xs: list[str] = []
            ys: list[float] = []
            for outcome, per in by_outcome.items():
                values = (per.get(measure) or {}).get(group) or []
                xs += [outcome.replace("_", " ")] * len(values)
                ys += values
            figure.add_box(x=xs, y=ys, name=f"{group} the outcome", marker_color=colour, boxpoints="outliers")
        parts.append(figure_html(figure, f"imaging-{measure}"))
    return "".join(parts)


# ------------------------------------------------------------------------------------------------- quality


def _quality(quality: dict[str, Any]) -> str:
    if (missing := _unavailable(quality)) is not None:
        return missing
    parts = []
    coverage = quality.get("patients_per_modality") or {}
    if coverage:
        figure = go.Figure(layout={**_LAYOUT, "title": "Patients with each modality"})
        figure.add_bar(x=list(coverage), y=list(coverage.values()), name="patients")
        parts.append(figure_html(figure, "coverage"))
    files = quality.get("files") or {}
    if files:
        parts.append("<h3>Delivered files with rows in the lakehouse</h3>")
        parts.append(
            table(["Modality", "Files"], [[escape(m), num_cell(f"{n:,}")] for m, n in files.items()])
        )
    quarantined = quality.get("quarantined") or []
    parts.append("<h3>Quarantined, by modality and reason</h3>")
    parts.append(
        table(["Modality", "Reason", "Files", "Records (files or lines)"],
              [[escape(r["modality"]), escape(r["reason"]), num_cell(r.get("files", "-")), num_cell(r["records"])]
               for r in quarantined])
        if quarantined else "<p>Nothing was quarantined.</p>"
    )  # fmt: skip
    rows = quality.get("rows") or {}
    parts.append("<h3>Rows per lakehouse table</h3>")
    parts.append(table(["Table", "Rows"], [[escape(name), num_cell(f"{n:,}")] for name, n in rows.items()]))
    return "".join(parts)
