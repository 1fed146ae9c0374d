"""The report's patient view, written with each dataset snapshot as `patients.json` (one entry per patient
of the snapshot) and, for imaged patients, the radiomics job's pictures copied into the snapshot's `images/`
folder, so the training job (and its report) needs nothing but its dataset channel.

Per patient:
- `header`: age and sex at the index date, the index date, and per outcome its label and onset;
- `timeline`: conditions, medications, procedures and encounters (date, kind, code, display), oldest first,
  at most TIMELINE_EVENTS_PER_PATIENT (the newest);
- `measurements`: each vital sign or lab of features.clinical's MEASUREMENTS as [date, value] pairs in its
  unit, at most MEASUREMENT_POINTS (the newest), from every Patient linked to the person;
- `variants`: PASS alleles carried that ClinVar calls pathogenic or likely pathogenic;
- `radiomics`: per region its volume and first-order mean;
- `images`: the series uid and its `thumbnail` / `overlay` pictures (paths relative to the snapshot folder).
Dates and codes, no names or addresses: the FHIR tables carry none of them into these columns.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mmhealth import storage
from mmhealth.features.clinical import MEASUREMENTS, measurement_values
from mmhealth.features.genomic import is_pathogenic
from mmhealth.identity.resolve import Identity, person_of_reference
from mmhealth.lakehouse import layout
from mmhealth.lakehouse.catalog import read_columns, read_table
from mmhealth.settings import settings

TIMELINE_EVENTS_PER_PATIENT = 400
MEASUREMENT_POINTS = 100
REGIONS = ("lesion", "hippocampus")
_TIMELINE_SOURCES = (
    ("condition", "clinical.condition", "onset_at", "code"),
    ("medication", "clinical.medication_request", "authored_at", "medication"),
    ("procedure", "clinical.procedure", "performed_start", "code"),
    ("encounter", "clinical.encounter", "period_start", "type"),
)


def patient_views(
    patient_ids: list[str], identity: Identity, dataset_id: str | None = None
) -> list[dict[str, Any]]:
    """Every patient's view; with `dataset_id`, the pictures are copied into that snapshot's images/."""
    views: dict[str, dict[str, Any]] = {
        p: {
            "patient_id": p,
            "header": {},
            "timeline": [],
            "measurements": {},
            "variants": [],
            "radiomics": {},
            "images": {},
        }
        for p in patient_ids
    }

    def view_of(reference: str | None) -> dict[str, Any] | None:
        if not reference:
            return None
        return views.get(person_of_reference(identity, reference) or reference)

    _headers(views)
    _timelines(view_of)
    _measurements(view_of)
    for variant in _variants_of_note():
        view = views.get(identity.person_of("vcf_sample", variant.pop("patient_id")) or "")
        if view is not None:
            view["variants"].append(variant)
    _radiomics(views, dataset_id)
    return list(views.values())


def _headers(views: dict[str, dict[str, Any]]) -> None:
    clinical = read_columns("features.clinical", ["patient_id", "age_at_index_years", "sex"])
    for row in clinical.to_pylist() if clinical is not None else []:
        if row["patient_id"] in views:
            views[row["patient_id"]]["header"] |= {
                "age": row.get("age_at_index_years"),
                "sex": row.get("sex"),
            }
    labels = read_table("features.labels")
    if labels is None:
        return
    outcomes = [c for c in labels.column_names if f"{c}_onset" in labels.column_names]
    for row in labels.to_pylist():
        view = views.get(row["patient_id"])
        if view is None:
            continue
        view["header"]["index_date"] = _iso(row.get("index_date"))
        view["header"]["labels"] = {
            o: {"label": None if row[o] is None else int(row[o]), "onset": _iso(row.get(f"{o}_onset"))}
            for o in outcomes
        }


def _timelines(view_of: Any) -> None:
    touched: list[dict[str, Any]] = []
    for kind, table, date_column, code in _TIMELINE_SOURCES:
        rows = read_table(table, columns=["patient_id", date_column, f"{code}_code", f"{code}_display"])
        for row in rows.to_pylist() if rows is not None else []:
            view = view_of(row["patient_id"])
            if view is None or row[date_column] is None:
                continue
            view["timeline"].append(
                {
                    "date": row[date_column].date().isoformat(),
                    "kind": kind,
                    "code": row[f"{code}_code"],
                    "display": row[f"{code}_display"],
                }
            )
            touched.append(view)
    for view in {id(v): v for v in touched}.values():
        view["timeline"] = sorted(view["timeline"], key=lambda e: e["date"])[-TIMELINE_EVENTS_PER_PATIENT:]


def _measurements(view_of: Any) -> None:
    """Every readable vital sign and lab, per person and measurement, as [date, value] in time order."""
    observations = read_table(
        "clinical.observation",
        columns=[
            "patient_id",
            "status",
            "code_code",
            "value_quantity",
            "value_unit",
            "effective_at",
            "issued_at",
        ],
    )
    if observations is None or observations.num_rows == 0:
        return
    measure, value = measurement_values(observations)
    when = pc.coalesce(observations["effective_at"], observations["issued_at"])
    keep = (measure >= 0) & np.isfinite(value) & np.asarray(pc.is_valid(when).to_numpy(zero_copy_only=False))
    keep &= ~np.isin(
        np.asarray(observations["status"].to_pylist(), dtype=object), ["entered-in-error", "cancelled"]
    )
    rows = np.flatnonzero(keep)
    patients = observations["patient_id"].take(rows).to_pylist()
    dates = [d.date().isoformat() for d in when.take(rows).to_pylist()]
    series: dict[int, dict[str, list[list[Any]]]] = {}
    for patient, date, m, v in zip(patients, dates, measure[rows], value[rows], strict=True):
        view = view_of(patient)
        if view is not None:
            view["measurements"].setdefault(MEASUREMENTS[m].name, []).append([date, round(float(v), 3)])
            series[id(view)] = view["measurements"]
    for by_name in series.values():
        for name, points in by_name.items():
            by_name[name] = sorted(points)[-MEASUREMENT_POINTS:]


def _radiomics(views: dict[str, dict[str, Any]], dataset_id: str | None) -> None:
    imaging = read_table("features.imaging")
    pictures = _pictures()
    lake = settings().lake_bucket
    for row in imaging.to_pylist() if imaging is not None else []:
        view = views.get(row["patient_id"])
        if view is None:
            continue
        view["radiomics"] = {
            region: {
                "volume_ml": row.get(f"{region}_volume_ml"),
                "firstorder_mean": row.get(f"{region}_firstorder_mean"),
            }
            for region in REGIONS
        }
        images: dict[str, Any] = {"series_uid": row.get("series_uid")}
        for kind, key in pictures.get(row.get("series_uid") or "", {}).items():
            if dataset_id is None:
                continue
            target = f"images/{row['series_uid']}/{kind}.png"
            storage.client("s3").copy_object(
                Bucket=lake,
                Key=f"{layout.dataset_prefix(dataset_id)}{target}",
                CopySource={"Bucket": lake, "Key": key},
            )
            images[kind] = target
        view["images"] = images


def _pictures() -> dict[str, dict[str, str]]:
    """series uid -> {"thumbnail": key, "overlay": key} of the radiomics job's pictures (the newest row)."""
    rows = read_table("features.radiomics")
    if rows is None or "thumbnail_key" not in rows.column_names:
        return {}
    pictures: dict[str, dict[str, str]] = {}
    for row in rows.select(["series_uid", "thumbnail_key", "overlay_key"]).to_pylist():
        found = {k: row[f"{k}_key"] for k in ("thumbnail", "overlay") if row[f"{k}_key"]}
        if found:
            pictures[row["series_uid"]] = found
    return pictures


def _variants_of_note() -> list[dict[str, Any]]:
    """PASS alleles carried that ClinVar calls pathogenic or likely pathogenic (features.genomic's rule)."""
    variants = read_table(
        "genomic.variants",
        columns=["sample_id", "chrom", "pos", "ref", "alt", "variant_id", "filter", "zygosity"],
    )
    clinvar = read_table(
        "genomic.clinvar", columns=["chrom", "pos", "ref", "alt", "gene", "clinical_significance"]
    )
    if variants is None or clinvar is None:
        return []
    significance = clinvar["clinical_significance"].to_pylist()
    clinvar = clinvar.filter(pa.array([bool(s) and is_pathogenic(s) for s in significance]))
    variants = variants.filter(pc.equal(variants["filter"], "PASS"))
    joined = variants.join(clinvar, ["chrom", "pos", "ref", "alt"], join_type="inner")
    return [
        {
            "patient_id": r["sample_id"],
            "gene": r["gene"],
            "variant": r["variant_id"] or f"{r['chrom']}:{r['pos']} {r['ref']}>{r['alt']}",
            "significance": r["clinical_significance"],
            "zygosity": r["zygosity"],
        }
        for r in joined.to_pylist()
    ]


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat()
