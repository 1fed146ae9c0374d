"""The feature tables go into the lakehouse as they are: created from FEATURE_TABLES, read back unchanged.

Runs on moto's Glue + S3 (the shared `aws` fixture), the engine the local runtime uses.
"""

from __future__ import annotations

from types import SimpleNamespace

import pyarrow as pa

from mmhealth.features.clinical import FEATURE_TABLES, clinical_features
from mmhealth.lakehouse.catalog import (
    glue_identifier,
    lakehouse_catalog,
    read_table,
    replace_all,
    replace_rows,
)


def test_feature_tables_round_trip_through_iceberg(aws: SimpleNamespace, tables: dict[str, pa.Table]) -> None:
    # Given the cohort's features and labels
    result = clinical_features(tables)
    catalog = lakehouse_catalog()
    for name, rows in result.tables.items():
        # When each table is committed to the lakehouse and read back
        replace_rows(name, rows, "run-features", replace_all, catalog)
        back = read_table(name, catalog)
        # Then the rows are the same (Iceberg has no int8: indicators and labels come back wider) and every
        # column keeps its doc as the Iceberg column comment
        assert back is not None
        assert back.select(rows.column_names).cast(FEATURE_TABLES[name]).equals(rows)
        docs = {f.name: f.doc for f in catalog.load_table(glue_identifier(name)).schema().fields}
        assert all(docs[f.name] == f.metadata[b"doc"].decode() for f in FEATURE_TABLES[name])
