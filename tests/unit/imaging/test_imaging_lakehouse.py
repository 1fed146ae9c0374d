"""The imaging schemas map to Iceberg: real rows of both tables committed through pyiceberg (moto's Glue
and S3, the local runtime's engine) and read back equal, lists and dates included."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pytest

from mmhealth.imaging.series import summarise_series
from mmhealth.lakehouse.catalog import read_table, replace_all, replace_rows
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
