"""features.imaging: one series per patient, chosen under the index-date rule; regions and radiomics as columns."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa

from mmhealth.features.imaging import column_name, imaging_features
from mmhealth.lakehouse.schemas import FEATURES_RADIOMICS

INDEX = dt.date(2018, 1, 1)


def region(
    patient: str, series: str, taken: dt.date | None, name: str, voxels: int, **features: float
) -> dict[str, Any]:
    return {
        "series_uid": series,
        "patient_id": patient,
        "study_uid": f"study-{series}",
        "study_date": taken,
        "region_label": 1 if name == "lesion" else 2,
        "region": name,
        "voxels": voxels,
        "volume_mm3": voxels * 2.5,
        "features": sorted(features.items()) if voxels else None,
        "model_version": "segmenter-v1.pt@abc",
        "params_version": "radiomics-v1.yaml@def",
        "device": "cpu",
        "seconds": 1.0,
        "source_key": f"radiomics/run/output/features/{series}.json",
        "object_id": series,
        "run_id": "run",
    }


def index_dates(*patients: str) -> pa.Table:
    return pa.table(
        {"patient_id": list(patients), "index_date": pa.array([INDEX] * len(patients), pa.date32())}
    )


def radiomics(*rows: dict[str, Any]) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=FEATURES_RADIOMICS)


def test_the_latest_series_before_the_index_date_is_used() -> None:
    # Given a patient with an old MR, a recent one before the index, and one after the index
    rows = radiomics(
        region("p1", "old", dt.date(2015, 6, 1), "hippocampus", 400, original_firstorder_Mean=10.0),
        region("p1", "recent", dt.date(2017, 6, 1), "hippocampus", 300, original_firstorder_Mean=20.0),
        region("p1", "recent", dt.date(2017, 6, 1), "lesion", 80, original_shape_Sphericity=0.7),
        region("p1", "after", dt.date(2018, 3, 1), "hippocampus", 100, original_firstorder_Mean=99.0),
    )

    # When the features are built
    [row] = imaging_features(rows, index_dates("p1")).to_pylist()

    # Then the recent series is the one described, and the later one is not counted
    assert (row["series_uid"], row["mr_series_before_index"]) == ("recent", 2)
    assert row["mr_days_before_index"] == (INDEX - dt.date(2017, 6, 1)).days
    assert row["hippocampus_firstorder_mean"] == 20.0
    assert (row["lesion_present"], row["lesion_volume_ml"]) == (True, 0.2)
    assert row["lesion_shape_sphericity"] == 0.7


def test_a_series_on_or_after_the_index_date_or_undated_is_never_used() -> None:
    rows = radiomics(
        region("p1", "on-index", INDEX, "hippocampus", 300, original_firstorder_Mean=1.0),
        region("p2", "undated", None, "hippocampus", 300, original_firstorder_Mean=1.0),
    )
    assert imaging_features(rows, index_dates("p1", "p2")).num_rows == 0


def test_moving_the_only_series_after_the_index_removes_the_patient_not_zeroes_it() -> None:
    before = radiomics(
        region("p1", "s", dt.date(2017, 1, 1), "hippocampus", 300, original_firstorder_Mean=5.0)
    )
    after = radiomics(
        region("p1", "s", dt.date(2019, 1, 1), "hippocampus", 300, original_firstorder_Mean=5.0)
    )
    assert imaging_features(before, index_dates("p1")).num_rows == 1
    assert imaging_features(after, index_dates("p1")).num_rows == 0


def test_an_empty_lesion_is_absent_with_null_radiomics_and_patients_without_index_are_left_out() -> None:
    rows = radiomics(
        region("p1", "s1", dt.date(2016, 1, 1), "hippocampus", 300, original_firstorder_Mean=5.0),
        region("p1", "s1", dt.date(2016, 1, 1), "lesion", 0),
        region("p2", "s2", dt.date(2016, 1, 1), "lesion", 50, original_shape_Sphericity=0.5),
        region("p3", "s3", dt.date(2016, 1, 1), "hippocampus", 300, original_firstorder_Mean=5.0),
    )
    table = imaging_features(rows, index_dates("p1", "p2"))  # p3 has no index date
    by_patient = {r["patient_id"]: r for r in table.to_pylist()}
    assert set(by_patient) == {"p1", "p2"}
    assert (by_patient["p1"]["lesion_present"], by_patient["p1"]["lesion_volume_ml"]) == (False, 0.0)
    assert by_patient["p1"]["lesion_shape_sphericity"] is None
    assert by_patient["p2"]["hippocampus_present"] is False
    assert by_patient["p2"]["hippocampus_firstorder_mean"] is None


def test_column_names_drop_the_original_prefix_and_lowercase() -> None:
    assert column_name("lesion", "original_glcm_JointEnergy") == "lesion_glcm_jointenergy"
    assert (
        column_name("hippocampus", "original_shape_Maximum3DDiameter")
        == "hippocampus_shape_maximum3ddiameter"
    )


def test_no_radiomics_gives_an_empty_table_with_the_fixed_columns() -> None:
    table = imaging_features(None, index_dates("p1"))
    assert table.num_rows == 0
    assert table.column_names[:3] == ["patient_id", "index_date", "series_uid"]
