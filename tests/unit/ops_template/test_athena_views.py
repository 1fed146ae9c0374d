"""The stack's Athena views: generated into template.yaml, their SQL run on DuckDB over the lakehouse's schemas."""

from __future__ import annotations

import base64
import json
from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa
from cfnlint.decode import decode

from mmhealth.lakehouse.catalog import NAMESPACES
from mmpipe import athena_views
from tests.conftest import REPO

DATABASES = {namespace: f"mmpipe_dev_{namespace}" for namespace in NAMESPACES}


def _template_views() -> dict[str, Any]:
    template, errors = decode(str(REPO / "template.yaml"))
    assert not errors
    return {k: v for k, v in template["Resources"].items() if k.startswith("AthenaView")}


def _presto(resource: dict[str, Any]) -> dict[str, Any]:
    """The view's Presto JSON, as CloudFormation resolves it for the dev stage."""
    join = resource["Properties"]["TableInput"]["ViewOriginalText"]["Fn::Join"][1]
    text, _ = join[1]["Fn::Base64"]["Fn::Sub"]
    encoded = base64.b64encode(text.replace("${Prefix}", "mmpipe_dev_").encode()).decode()
    assert (join[0], join[2]) == ("/* Presto View: ", " */")
    return dict(json.loads(base64.b64decode(encoded)))


def test_the_templates_views_are_the_generators() -> None:
    assert json.loads(json.dumps(_template_views())) == json.loads(json.dumps(athena_views.resources()))


def test_each_view_declares_the_columns_its_sql_returns_in_both_type_systems() -> None:
    for logical_id, resource in _template_views().items():
        table = resource["Properties"]["TableInput"]
        presto = _presto(resource)
        hive = [(c["Name"], c["Type"]) for c in table["StorageDescriptor"]["Columns"]]
        assert [c["name"] for c in presto["columns"]] == [name for name, _ in hive], logical_id
        pairs = {(c["type"], t) for c, (_, t) in zip(presto["columns"], hive, strict=True)}
        assert pairs <= set(athena_views.TYPES.values()), logical_id
        assert presto["schema"] == "mmpipe_dev_features"
        assert (table["TableType"], table["Parameters"]["presto_view"]) == ("VIRTUAL_VIEW", "true")
        assert "${" not in presto["originalSql"]


def _insert(con: Any, table: str, rows: list[dict[str, Any]]) -> None:
    namespace, _, short = table.partition(".")
    schema = athena_views.lakehouse_schemas()[table]
    full = [{f.name: row.get(f.name) for f in schema} for row in rows]
    data = pa.Table.from_pylist(full, schema=pa.schema([f.with_nullable(True) for f in schema]))  # noqa: F841
    con.execute(f'INSERT INTO "{DATABASES[namespace]}"."{short}" SELECT * FROM data')


def test_the_views_answer_on_lakehouse_rows() -> None:
    con = athena_views.empty_lakehouse(DATABASES)
    early, late = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)
    _insert(con, "features.predictions", [
        {"patient_id": "p1", "outcome": "hypertension", "probability": 0.2, "scored_at": early, "run_id": "r1"},
        {"patient_id": "p1", "outcome": "hypertension", "probability": 0.7, "scored_at": late, "run_id": "r2"},
        {"patient_id": "p1", "outcome": "stroke", "probability": 0.1, "scored_at": early, "run_id": "r1"},
    ])  # fmt: skip
    _insert(con, "features.labels", [{"patient_id": "p1", "index_date": date(2020, 1, 1), "hypertension": 1},
                                     {"patient_id": "p2", "index_date": date(2020, 1, 1)}])  # fmt: skip
    _insert(con, "features.clinical", [{"patient_id": "p1", "age_at_index_years": 70.0, "sex": "female"}])
    _insert(con, "features.genomic", [{"patient_id": "p1"}])
    _insert(con, "genomic.variants", [
        {"sample_id": "s1", "chrom": "19", "pos": 1, "ref": "C", "alt": "T", "filter": "PASS"},
        {"sample_id": "s2", "chrom": "19", "pos": 1, "ref": "C", "alt": "T", "filter": "LowQual"},
    ])  # fmt: skip
    _insert(con, "genomic.clinvar", [{"chrom": "19", "pos": 1, "ref": "C", "alt": "T", "gene": "APOE",
                                      "clinical_significance": "Pathogenic"}])  # fmt: skip
    _insert(con, "ops.quarantine", [
        {"run_id": "r1", "key": "a.dcm", "modality": "imaging", "stage": "import", "reason": "dicom-missing-tag"},
        {"run_id": "r2", "key": "a.dcm", "modality": "imaging", "stage": "import", "reason": "dicom-missing-tag"},
    ])  # fmt: skip

    def rows(view: str) -> list[tuple[Any, ...]]:
        return con.execute(f'SELECT * FROM "mmpipe_dev_features"."{view}" ORDER BY 1, 2').fetchall()

    current = rows("current_predictions")
    assert [(r[0], r[1], r[2]) for r in current] == [("p1", "hypertension", 0.7), ("p1", "stroke", 0.1)]
    summary = {r[0]: r for r in rows("patient_summary")}
    assert summary["p1"][1:6] == (70.0, "female", date(2020, 1, 1), True, False)
    assert (summary["p1"][10], summary["p1"][11]) == (0.7, 0.1)  # newest hypertension risk, stroke risk
    assert summary["p2"][10] is None
    assert rows("genomic_carriers") == [("APOE", "Pathogenic", 1, 1)]
    assert rows("quarantine_by_reason") == [("imaging", "import", "dicom-missing-tag", 2, 2, 1)]
