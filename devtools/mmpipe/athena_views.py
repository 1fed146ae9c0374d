"""The Athena views of mmhealth.lakehouse.views as CloudFormation resources (Glue tables of type VIRTUAL_VIEW).

    .venv/bin/python -m mmpipe.athena_views            # print the template section
    .venv/bin/python -m mmpipe.athena_views --write    # replace it in template.yaml

A view Athena creates with CREATE VIEW is a Glue table whose ViewOriginalText holds base64 JSON ("Presto
View": the SQL, its catalog and schema, and the output columns with their Trino types) and whose
StorageDescriptor repeats the columns with Hive types; Athena refuses a view whose declared columns do not
match what its SQL returns ("stale"). The columns are therefore computed, not written by hand: each view
runs on DuckDB over empty tables of the lakehouse's real schemas, and its result types are mapped to
Trino's and Hive's. The stage's database names come in through Fn::Sub, the encoding through Fn::Base64.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from mmhealth.features.clinical import FEATURES_CLINICAL, FEATURES_LABELS
from mmhealth.features.genomic import features_schema as features_genomic_schema
from mmhealth.features.imaging import REGIONS
from mmhealth.lakehouse.catalog import NAMESPACES, SCHEMAS
from mmhealth.lakehouse.feature_tables import features_imaging_schema
from mmhealth.lakehouse.views import VIEW_DATABASE, VIEWS, View

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
BEGIN = "  # BEGIN GENERATED: Athena views (python -m mmpipe.athena_views --write)\n"
END = "  # END GENERATED: Athena views\n"
PREFIX = "${Prefix}"  # the stage's Glue prefix, substituted by Fn::Sub

# DuckDB result type -> (Trino type in the Presto view JSON, Hive type in the Glue columns)
TYPES: dict[str, tuple[str, str]] = {
    "VARCHAR": ("varchar", "string"),
    "BIGINT": ("bigint", "bigint"),
    "INTEGER": ("integer", "int"),
    "SMALLINT": ("smallint", "smallint"),
    "TINYINT": ("tinyint", "tinyint"),
    "DOUBLE": ("double", "double"),
    "BOOLEAN": ("boolean", "boolean"),
    "DATE": ("date", "date"),
    "TIMESTAMP WITH TIME ZONE": ("timestamp(6) with time zone", "timestamp"),
    "TIMESTAMP": ("timestamp(6)", "timestamp"),
}


def lakehouse_schemas() -> dict[str, pa.Schema]:
    """Every table a view may read, with the types Athena sees: the pipeline's Arrow schemas as Iceberg
    stores them (Iceberg has no 8- or 16-bit integers: they are written as int)."""
    written = {
        **SCHEMAS,
        "features.labels": FEATURES_LABELS,
        "features.clinical": FEATURES_CLINICAL,
        "features.genomic": features_genomic_schema(),
        "features.imaging": features_imaging_schema(REGIONS, ()),
    }
    return {name: pa.schema([_as_iceberg(f) for f in schema]) for name, schema in written.items()}


def _as_iceberg(field: pa.Field) -> pa.Field:
    if pa.types.is_int8(field.type) or pa.types.is_int16(field.type) or pa.types.is_uint8(field.type):
        return field.with_type(pa.int32())
    if pa.types.is_uint16(field.type) or pa.types.is_uint32(field.type):
        return field.with_type(pa.int64())
    return field


def empty_lakehouse(databases: dict[str, str]) -> duckdb.DuckDBPyConnection:
    """DuckDB with every lakehouse table (empty) under its database name, and the views created in order."""
    con = duckdb.connect()
    for name in databases.values():
        con.execute(f'CREATE SCHEMA "{name}"')
    for table, schema in lakehouse_schemas().items():
        namespace, _, short = table.partition(".")
        empty = pa.Table.from_pylist([], schema=schema)  # noqa: F841 - read by DuckDB's replacement scan
        con.execute(f'CREATE TABLE "{databases[namespace]}"."{short}" AS SELECT * FROM empty')  # noqa: S608 - our own names
    for view in VIEWS:
        con.execute(f'CREATE VIEW "{databases[VIEW_DATABASE]}"."{view.name}" AS {view.render(databases)}')
    return con


def view_columns(
    con: duckdb.DuckDBPyConnection, view: View, databases: dict[str, str]
) -> list[tuple[str, str]]:
    """(column, DuckDB type) of the view's result."""
    query = f'DESCRIBE SELECT * FROM "{databases[VIEW_DATABASE]}"."{view.name}"'  # noqa: S608 - our own names
    described = con.execute(query).fetchall()
    return [(row[0], str(row[1])) for row in described]


def resources() -> dict[str, Any]:
    """The CloudFormation resources of every view (logical id -> resource)."""
    databases = {namespace: f"{PREFIX}{namespace}" for namespace in NAMESPACES}
    con = empty_lakehouse({namespace: f"mmpipe_probe_{namespace}" for namespace in NAMESPACES})
    out: dict[str, Any] = {}
    for view in VIEWS:
        columns = view_columns(con, view, {n: f"mmpipe_probe_{n}" for n in NAMESPACES})
        unknown = [t for _, t in columns if t not in TYPES]
        if unknown:
            raise ValueError(f"view {view.name}: no Athena type for {unknown}")
        presto = {
            "originalSql": view.render(databases),
            "catalog": "awsdatacatalog",
            "schema": databases[VIEW_DATABASE],
            "columns": [{"name": name, "type": TYPES[t][0]} for name, t in columns],
            "owner": "mmpipe",
            "runAsInvoker": False,
            "properties": {},
        }
        out[f"AthenaView{''.join(p.title() for p in view.name.split('_'))}"] = {
            "Type": "AWS::Glue::Table",
            "Properties": {
                "CatalogId": {"Ref": "AWS::AccountId"},
                "DatabaseName": {"Ref": f"{VIEW_DATABASE.title()}Database"},
                "TableInput": {
                    "Name": view.name,
                    "Description": view.description,
                    "TableType": "VIRTUAL_VIEW",
                    "Parameters": {"presto_view": "true", "comment": "Presto View"},
                    "StorageDescriptor": {
                        "Columns": [{"Name": name, "Type": TYPES[t][1]} for name, t in columns],
                        "SerdeInfo": {},
                    },
                    "ViewExpandedText": "/* Presto View */",
                    "ViewOriginalText": {
                        "Fn::Join": [
                            "",
                            [
                                "/* Presto View: ",
                                {
                                    "Fn::Base64": {
                                        "Fn::Sub": [
                                            json.dumps(presto, separators=(",", ":")),
                                            {
                                                "Prefix": {
                                                    "Fn::FindInMap": [
                                                        "StageConfig",
                                                        {"Ref": "Stage"},
                                                        "GluePrefix",
                                                    ]
                                                }
                                            },
                                        ]
                                    }
                                },
                                " */",
                            ],
                        ]
                    },
                },
            },
        }
    return out


def section() -> str:
    """The template's generated section: one JSON-flow resource per line group (YAML accepts JSON)."""
    lines = [BEGIN]
    for logical_id, resource in resources().items():
        lines.append(f"  {logical_id}: {json.dumps(resource, sort_keys=False)}\n")
    lines.append(END)
    return "".join(lines)


def write(template: Path = TEMPLATE) -> bool:
    """Replace the generated section of the template; True when it changed."""
    text = template.read_text()
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(text):
        raise ValueError(f"{template} has no generated Athena views section ({BEGIN.strip()})")
    updated = pattern.sub(lambda _m: section(), text)
    if updated != text:
        template.write_text(updated)
    return updated != text


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--write", action="store_true", help="replace the section in template.yaml")
    args = parser.parse_args()
    if args.write:
        print("template.yaml updated" if write() else "template.yaml already up to date")
    else:
        print(section(), end="")


if __name__ == "__main__":
    main()
