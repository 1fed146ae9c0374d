"""Rows for the training-pipeline tests, committed to the moto lakehouse: three patients' labels, and a
commit that fills in what a test does not care about.

A plain module rather than a conftest: the test modules import these by name.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pyarrow as pa

from mmhealth.lakehouse.catalog import SCHEMAS, replace_all, replace_rows

_FILLER = {pa.string(): "x", pa.int32(): 0, pa.int64(): 0, pa.float64(): 0.0, pa.bool_(): False}


def labels() -> pa.Table:
    return pa.table(
        {
            "patient_id": ["p3", "p1", "p2"],
            "index_date": [date(2018, 1, 1)] * 3,
            "hypertension": [True, False, None],
            "coronary_heart_disease": [False, False, True],
            "stroke": [False, None, False],
            "alzheimers_disease": [False, True, False],
        }
    )


def commit(name: str, table: pa.Table, run_id: str = "run-seed") -> None:
    """Commit `table` under its registered schema: a column not given is null, or a filler when required."""
    schema = SCHEMAS.get(name)
    if schema is None:  # the feature tables: their schema is the table's own
        replace_rows(name, table, run_id, replace_all)
        return
    columns = {}
    for f in schema:
        if f.name in table.column_names:
            columns[f.name] = table[f.name]
        elif f.nullable:
            columns[f.name] = pa.nulls(table.num_rows, f.type)
        else:
            filler = _FILLER.get(f.type, datetime(2020, 1, 1, tzinfo=UTC))
            columns[f.name] = pa.array([filler] * table.num_rows).cast(f.type)
    replace_rows(name, pa.table(columns, schema=schema), run_id, replace_all)
