"""The imaging schemas map to Iceberg: real rows of both tables committed through pyiceberg (moto's Glue
and S3, the local runtime's engine) and read back equal, lists and dates included."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pytest
from pyiceberg.expressions import In

from mmhealth.imaging.series import summarise_series
from mmhealth.lakehouse.catalog import ensure_table, lakehouse_catalog, read_table, replace_all, replace_rows
from mmhealth.lakehouse.imaging_tables import IMAGING_INSTANCES, IMAGING_SERIES, IMAGING_TABLES
from mmhealth.lakehouse.schemas import LINEAGE
from tests.unit.imaging.dicom_files import RUN_ID, index_files, write_synthetic_series


def test_both_schemas_end_with_the_lineage_columns_and_are_registered() -> None:
    # Given the imaging schemas, Then each ends with LINEAGE and is keyed by its table name
    for schema in (IMAGING_INSTANCES, IMAGING_SERIES):
        assert list(schema)[-len(LINEAGE) :] == LINEAGE
    assert IMAGING_TABLES == {"imaging.instances": IMAGING_INSTANCES, "imaging.series": IMAGING_SERIES}


@pytest.mark.slow
def test_instances_and_series_round_trip_through_iceberg(aws: SimpleNamespace, tmp_path: Path) -> None:
    # Given the instance and series rows of a synthetic oblique series
    synthetic = write_synthetic_series(tmp_path, tilted=True)
    instances = index_files(synthetic.files)
    series = summarise_series(instances, run_id=RUN_ID).series
    assert series.num_rows == 1

    # When both are committed to Iceberg tables created from their Arrow schemas and read back
    for name, rows in (("imaging.instances", instances), ("imaging.series", series)):
        replace_rows(name, rows, RUN_ID, replace_all)
    read = {name: read_table(name) for name in IMAGING_TABLES}

    # Then every value survives, the lists (orientation, positions, normal) and the dates included
    for name, rows in (("imaging.instances", instances), ("imaging.series", series)):
        back = read[name]
        assert isinstance(back, pa.Table)
        assert back.column_names == rows.column_names
        assert back.sort_by("object_id").to_pylist() == rows.sort_by("object_id").to_pylist()


GEOMETRY_MEASURES = ("stack_drift_mm", "slice_spacing_deviation")


def test_the_geometry_measures_are_nullable_floats() -> None:
    # Given the series schema, Then the measures added after tables existed are nullable floats: ensure_table
    # can add them to an existing table, whose older rows (and single-slice series) read null
    for name in GEOMETRY_MEASURES:
        field = IMAGING_SERIES.field(name)
        assert (field.type, field.nullable) == (pa.float64(), True)


@pytest.mark.slow
def test_a_series_table_created_before_the_geometry_measures_gains_them(
    aws: SimpleNamespace, tmp_path: Path
) -> None:
    # Given an imaging.series table created and filled before the measures existed
    synthetic = write_synthetic_series(tmp_path, tilted=True)
    series = summarise_series(index_files(synthetic.files), run_id=RUN_ID).series
    before = pa.schema([f for f in IMAGING_SERIES if f.name not in GEOMETRY_MEASURES])
    old_uid = "1.2.826.0.1.3680043.8.498.31415"
    old_row = series.select(before.names).cast(before)
    old_row = old_row.set_column(
        before.get_field_index("series_uid"), before.field("series_uid"), pa.array([old_uid])
    )
    table = ensure_table(lakehouse_catalog(), "imaging.series", before)
    table.append(old_row)

    # When a later run commits a series row that carries them
    replace_rows(
        "imaging.series",
        series,
        "run-2",
        lambda rows: In("series_uid", rows["series_uid"].to_pylist()),
    )

    # Then the table has the columns, the old row reads them as null and keeps its values, the new row
    # reads back what it was committed with
    back = read_table("imaging.series")
    assert back is not None
    assert set(GEOMETRY_MEASURES) <= set(back.column_names)
    rows = {r["series_uid"]: r for r in back.to_pylist()}
    assert {name: rows[old_uid][name] for name in GEOMETRY_MEASURES} == dict.fromkeys(GEOMETRY_MEASURES)
    assert rows[old_uid]["instances_digest"] == series["instances_digest"][0].as_py()
    committed = series.to_pylist()[0]
    assert {name: rows[committed["series_uid"]][name] for name in GEOMETRY_MEASURES} == {
        name: committed[name] for name in GEOMETRY_MEASURES
    }
    assert committed["stack_drift_mm"] is not None
