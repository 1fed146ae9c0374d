"""Imaging features per patient (`features.imaging`), from features.radiomics, under the index-date rule.

    table = imaging_features(radiomics, index_dates)   # radiomics: features.radiomics rows;
                                                       # index_dates: patient_id, index_date (features.labels)

The clinical features' rule holds here too (features/clinical.py): a series is used only when its study
date is strictly before the patient's index date - an MR taken on or after it is not known at the index.
Of the series before the index, the patient's latest one is used (the radiomics of one series; a mean over
several scans would mix acquisitions). A series without a study date is never used (when it was taken
cannot be told), and neither is a patient without an index date.

Columns: patient_id, index_date, series_uid (the series used), mr_days_before_index, mr_series_before_index
(how many series qualified), then per region (lesion, hippocampus, foreground) `<region>_present` (a voxel at
all), `<region>_volume_ml`, and every pyradiomics feature of that region as `<region>_<feature>` (feature
names without pyradiomics' `original_` prefix). A lesion region that segmentation left empty is absent, not
missing: `lesion_present` false, `lesion_volume_ml` 0, its radiomics null. A feature whose value is null
in features.radiomics (pyradiomics gave NaN or an infinity) is null here too. Patients with no usable series
are left out (the training join leaves them missing, not zero).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable

import pyarrow as pa

from mmhealth.lakehouse.feature_tables import features_imaging_schema

# The segmenter's regions, and the fallback region a series gets when the network finds none (the radiomics
# job's foreground.py): so real series, on which the network often finds nothing plausible, reach the model.
REGIONS = ("lesion", "hippocampus", "foreground")
_NAME = re.compile(r"[^a-z0-9]+")


def column_name(region: str, feature: str) -> str:
    """`hippocampus` + `original_firstorder_Mean` -> `hippocampus_firstorder_mean`."""
    return f"{region}_{_NAME.sub('_', feature.removeprefix('original_').lower()).strip('_')}"


def imaging_features(radiomics: pa.Table | None, index_dates: pa.Table) -> pa.Table:
    """One row per patient with a usable series before the index date (see the module docstring)."""
    index_of = {
        p: d
        for p, d in zip(
            index_dates["patient_id"].to_pylist(), index_dates["index_date"].to_pylist(), strict=True
        )
    }
    rows: list[dict[str, object]] = []
    if radiomics is not None and radiomics.num_rows:
        for patient_id, series in _series_by_patient(radiomics.to_pylist()).items():
            index_date = index_of.get(patient_id)
            if index_date is None:
                continue
            before = [s for s in series if s["study_date"] is not None and s["study_date"] < index_date]
            if not before:
                continue
            latest = max(before, key=lambda s: (s["study_date"], s["series_uid"]))
            rows.append(_row(patient_id, index_date, latest, len(before)))
    return _table(rows)


def _series_by_patient(records: Iterable[dict[str, object]]) -> dict[str, list[dict[str, object]]]:
    """patient -> one dict per series: series_uid, study_date, regions {name: radiomics row}."""
    series: dict[tuple[str, str], dict[str, object]] = {}
    for record in records:
        key = (str(record["patient_id"]), str(record["series_uid"]))
        entry = series.setdefault(
            key, {"series_uid": record["series_uid"], "study_date": record["study_date"], "regions": {}}
        )
        regions = entry["regions"]
        assert isinstance(regions, dict)
        regions[record["region"]] = record
    by_patient: dict[str, list[dict[str, object]]] = {}
    for (patient_id, _), entry in sorted(series.items()):
        by_patient.setdefault(patient_id, []).append(entry)
    return by_patient


def _row(patient_id: str, index_date: dt.date, series: dict[str, object], count: int) -> dict[str, object]:
    study_date = series["study_date"]
    assert isinstance(study_date, dt.date)
    row: dict[str, object] = {
        "patient_id": patient_id,
        "index_date": index_date,
        "series_uid": series["series_uid"],
        "mr_days_before_index": (index_date - study_date).days,
        "mr_series_before_index": count,
    }
    regions = series["regions"]
    assert isinstance(regions, dict)
    for region in REGIONS:
        found = regions.get(region)
        voxels = int(found["voxels"]) if found else 0
        row[f"{region}_present"] = voxels > 0
        row[f"{region}_volume_ml"] = float(found["volume_mm3"]) / 1000.0 if found else 0.0
        for name, value in (found.get("features") or []) if found else []:
            row[column_name(region, name)] = value
    return row


def _table(rows: list[dict[str, object]]) -> pa.Table:
    schema = features_imaging_schema(REGIONS, {k for row in rows for k in row})
    return pa.Table.from_pylist(rows, schema=schema)
