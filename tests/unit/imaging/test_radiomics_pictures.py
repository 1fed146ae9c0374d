"""The radiomics job's pictures in features.radiomics: each row of a series carries the lake keys of its
thumbnail and overlay; null when the job drew none, and in rows catalogued before the columns existed."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pyarrow as pa
import pytest
from pyiceberg.expressions import In

from mmhealth.imaging.radiomics import feature_rows
from mmhealth.lakehouse.catalog import ensure_table, lakehouse_catalog, read_table, replace_rows
from mmhealth.lakehouse.schemas import FEATURES_RADIOMICS

RUN_ID = "2026-12-05-site-a-0123456789abcdef0123"
PICTURE_COLUMNS = ("thumbnail_key", "overlay_key")


def result(uid: str, pictures: str = "drawn") -> dict[str, Any]:
    """A job's ok features document with two regions; its pictures "drawn", "failed" or "absent" (a
    document from before the job drew any)."""
    document: dict[str, Any] = {
        "series_uid": uid,
        "patient_id": "pt-1",
        "study_uid": "st-1",
        "study_date": "2024-03-01",
        "status": "ok",
        "model_version": "segmenter-v1.pt:abc",
        "params_version": "radiomics-v2.yaml:def",
        "device": "cpu",
        "seconds": {"total": 1.0},
        "regions": [
            {"label": 1, "name": "lesion", "voxels": 0, "volume_mm3": 0.0, "features": None},
            {"label": 2, "name": "hippocampus", "voxels": 9, "volume_mm3": 9.0, "features": {"a": 1.0}},
        ],
    }
    if pictures == "drawn":
        document["images"] = {
            "thumbnail": f"features/{uid}/thumbnail.png",
            "overlay": f"features/{uid}/overlay.png",
            "plane": "axial",
            "slice_index": 7,
            "slices": 20,
            "width": 256,
            "height": 256,
            "window": {"center": 300.0, "width": 600.0, "source": "percentiles-1-99"},
        }
        document["images_error"] = None
    elif pictures == "failed":
        document["images"] = None
        document["images_error"] = "the pictures could not be drawn: ValueError: ..."
    return document


def test_every_row_of_a_series_carries_the_lake_keys_of_its_pictures() -> None:
    rows = feature_rows([result("1.2.3")], RUN_ID).to_pylist()
    output = f"radiomics/{RUN_ID}/output/"
    assert [(r["region"], r["thumbnail_key"], r["overlay_key"]) for r in rows] == [
        (region, f"{output}features/1.2.3/thumbnail.png", f"{output}features/1.2.3/overlay.png")
        for region in ("lesion", "hippocampus")
    ]
    # beside the features document they were drawn with
    assert rows[0]["source_key"] == f"{output}features/1.2.3.json"


def test_a_series_without_pictures_keeps_its_rows_with_null_keys() -> None:
    # Given a series whose pictures failed, and a document from before the job drew any
    rows = feature_rows([result("failed", "failed"), result("older", "absent")], RUN_ID).to_pylist()
    # Then both keep their rows and features, the picture keys null
    assert len(rows) == 4
    assert {(r[PICTURE_COLUMNS[0]], r[PICTURE_COLUMNS[1]]) for r in rows} == {(None, None)}
    assert all(r["features"] for r in rows if r["region"] == "hippocampus")


def test_the_picture_columns_are_nullable_strings_before_the_lineage() -> None:
    for name in PICTURE_COLUMNS:
        field = FEATURES_RADIOMICS.field(name)
        assert (field.type, field.nullable) == (pa.string(), True)
    assert FEATURES_RADIOMICS.names[-3:] == ["source_key", "object_id", "run_id"]


@pytest.mark.slow
def test_a_radiomics_table_created_before_the_pictures_gains_their_columns(aws: SimpleNamespace) -> None:
    # Given a features.radiomics table created and filled before the picture columns existed
    before = pa.schema([f for f in FEATURES_RADIOMICS if f.name not in PICTURE_COLUMNS])
    old = feature_rows([result("1.2.old")], "run-1").select(before.names).cast(before)
    ensure_table(lakehouse_catalog(), "features.radiomics", before).append(old)

    # When a later run commits rows that carry them
    new = feature_rows([result("1.2.new")], RUN_ID)
    replace_rows("features.radiomics", new, RUN_ID, lambda rows: In("series_uid", ["1.2.new"]))

    # Then the table has the columns; the old rows read null and keep their values; the new read their keys
    back = read_table("features.radiomics")
    assert back is not None
    assert set(PICTURE_COLUMNS) <= set(back.column_names)
    rows = {(r["series_uid"], r["region"]): r for r in back.to_pylist()}
    assert len(rows) == 4
    assert {
        rows[("1.2.old", region)][c] for region in ("lesion", "hippocampus") for c in PICTURE_COLUMNS
    } == {None}
    assert rows[("1.2.old", "hippocampus")]["features"] == [("a", 1.0)]
    assert rows[("1.2.new", "lesion")]["thumbnail_key"] == new["thumbnail_key"][0].as_py()
    assert rows[("1.2.new", "lesion")]["overlay_key"].endswith("features/1.2.new/overlay.png")
