"""The version rule (mmhealth.lakehouse.versions): one row set per key, the newest, whatever the commit order."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.compute as pc

from mmhealth.clinical.fhir import flatten_fhir
from mmhealth.clinical.importer import OWNERS as CLINICAL_OWNERS
from mmhealth.lakehouse.catalog import read_table, replace_rows
from mmhealth.lakehouse.schemas import delivered_at_micros
from mmhealth.lakehouse.versions import newest

TS = pa.timestamp("us", tz="UTC")


def versions(*rows: dict[str, object]) -> pa.Table:
    """Rows of a versioned table: key, value, and the rule's columns (defaults for the rest)."""
    defaults = {"last_updated": None, "delivered_at": None, "source_position": 0, "run_id": "r1"}
    full = [{**defaults, **row} for row in rows]
    schema = pa.schema(
        [
            ("resource_id", pa.string()),
            ("value", pa.string()),
            ("last_updated", TS),
            ("delivered_at", TS),
            ("source_key", pa.string()),
            ("source_position", pa.int64()),
            ("object_id", pa.string()),
            ("run_id", pa.string()),
        ]
    )
    return pa.Table.from_pylist(full, schema=schema)


def at(day: int) -> datetime:
    return datetime(2026, 1, day, tzinfo=UTC)


def kept(table: pa.Table) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for row in table.to_pylist():
        out.setdefault(row["resource_id"], []).append(row["value"])
    return {k: sorted(v) for k, v in out.items()}


def test_the_same_resource_in_two_files_of_a_run_keeps_the_later_delivered_one() -> None:
    # Given Organization o1 in two Bundles of one run, the second delivered a day later
    staged = versions(
        {
            "resource_id": "o1",
            "value": "old",
            "delivered_at": at(1),
            "source_key": "b.json",
            "object_id": "B",
        },
        {
            "resource_id": "o1",
            "value": "new",
            "delivered_at": at(2),
            "source_key": "a.json",
            "object_id": "A",
        },
        {
            "resource_id": "o2",
            "value": "only",
            "delivered_at": at(1),
            "source_key": "b.json",
            "object_id": "B",
        },
    )

    resolved = newest("clinical.other_resource", staged, None, "resource_id", "r1")

    # Then one row per resource, the later delivery's; the other version is recorded with the rule
    assert kept(resolved.rows) == {"o1": ["new"], "o2": ["only"]}
    records = resolved.superseded.to_pylist()
    assert [(r["key"], r["superseded_object_id"], r["kept_object_id"], r["rule"]) for r in records] == [
        ("o1", "B", "A", "delivered later")
    ]


def test_meta_last_updated_outranks_delivery_order() -> None:
    # Given a version with a later meta.lastUpdated that was delivered first
    staged = versions(
        {"resource_id": "c1", "value": "v2", "last_updated": at(5), "delivered_at": at(1),
         "source_key": "x", "object_id": "X"},
        {"resource_id": "c1", "value": "v1", "last_updated": at(3), "delivered_at": at(2),
         "source_key": "y", "object_id": "Y"},
    )  # fmt: skip

    resolved = newest("clinical.condition", staged, None, "resource_id", "r1")

    assert kept(resolved.rows) == {"c1": ["v2"]}
    assert resolved.superseded["rule"].to_pylist() == ["later meta.lastUpdated"]


def test_a_later_line_of_the_same_file_wins_and_multi_row_resources_stay_whole() -> None:
    # Given an Observation panel twice in one NDJSON file (two component rows each), lines 3 and 7
    staged = versions(
        {"resource_id": "bp", "value": "sys-1", "source_key": "f", "object_id": "F", "source_position": 3},
        {"resource_id": "bp", "value": "dia-1", "source_key": "f", "object_id": "F", "source_position": 3},
        {"resource_id": "bp", "value": "sys-2", "source_key": "f", "object_id": "F", "source_position": 7},
        {"resource_id": "bp", "value": "dia-2", "source_key": "f", "object_id": "F", "source_position": 7},
    )

    resolved = newest("clinical.observation", staged, None, "resource_id", "r1")

    assert kept(resolved.rows) == {"bp": ["dia-2", "sys-2"]}
    assert resolved.superseded.num_rows == 1  # one version lost, not one row per component
    assert resolved.superseded["rule"].to_pylist() == ["later in the file"]


def test_an_older_staged_version_never_replaces_a_newer_committed_one() -> None:
    # Given the table holds a version delivered on day 5, and a slow run stages one delivered on day 2
    existing = versions(
        {"resource_id": "p1", "value": "x", "delivered_at": at(5), "source_key": "k", "object_id": "NEW",
         "run_id": "fast"}
    ).select(["resource_id", "last_updated", "delivered_at", "source_key", "source_position", "object_id",
              "run_id"]).rename_columns(
        ["key", "last_updated", "delivered_at", "source_key", "source_position", "object_id", "run_id"]
    )  # fmt: skip
    staged = versions(
        {"resource_id": "p1", "value": "old", "delivered_at": at(2), "source_key": "k", "object_id": "OLD",
         "run_id": "slow"}
    )  # fmt: skip

    resolved = newest("clinical.patient", staged, existing, "resource_id", "slow")

    # Then nothing of the slow run is written for p1, and its version is recorded as superseded
    assert resolved.rows.num_rows == 0
    record = resolved.superseded.to_pylist()[0]
    assert (record["superseded_run_id"], record["kept_run_id"]) == ("slow", "fast")


# ---------------------------------------------------------------------------------------- on the lakehouse


def flattened(
    tmp_path: Path, name: str, resources: list[dict[str, object]], delivered: str, run: str
) -> pa.Table:
    path = tmp_path / name
    path.write_text("\n".join(json.dumps(r) for r in resources) + "\n")
    result = flatten_fhir(
        path,
        source_key=f"incoming/d/{name}",
        object_id=name,
        run_id=run,
        delivered_at=delivered_at_micros(delivered),
    )
    return result.tables["clinical.condition"]


def condition(cid: str, code: str) -> dict[str, object]:
    return {
        "resourceType": "Condition",
        "id": cid,
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": code}]},
        "onsetDateTime": "2016-01-01",
    }


def test_runs_committing_out_of_order_keep_the_newest_version_and_record_the_other(
    aws: SimpleNamespace, tmp_path: Path
) -> None:
    owned_by = CLINICAL_OWNERS["clinical.condition"]
    # Given a corrected Condition (delivered later) committed first, by a fast run
    corrected = flattened(
        tmp_path, "fix.ndjson", [condition("c1", "44054006")], "2026-03-02T10:00:00Z", "fast"
    )
    original = flattened(
        tmp_path, "orig.ndjson", [condition("c1", "73211009"), condition("c2", "15777000")],
        "2026-03-01T10:00:00Z", "slow",
    )  # fmt: skip
    replace_rows("clinical.condition", corrected, "fast", owned_by)

    # When the slow run holding the original commits afterwards
    commit = replace_rows("clinical.condition", original, "slow", owned_by)

    # Then c1 keeps the corrected code, c2 is added, and one row per resource id
    table = read_table("clinical.condition")
    codes = dict(zip(table["resource_id"].to_pylist(), table["code_code"].to_pylist(), strict=True))
    assert codes == {"c1": "44054006", "c2": "15777000"}
    assert commit.superseded == 1
    superseded = read_table("ops.superseded")
    assert superseded is not None
    row = superseded.filter(pc.equal(superseded["key"], "c1")).to_pylist()[0]
    assert (row["table"], row["superseded_source_key"], row["kept_source_key"], row["rule"]) == (
        "clinical.condition",
        "incoming/d/orig.ndjson",
        "incoming/d/fix.ndjson",
        "delivered later",
    )


def test_two_clinvar_releases_in_one_run_keep_only_the_newer_file() -> None:
    # Given two annotation files staged by one run: every row of a release shares the key "clinvar"
    def release(object_id: str, day: int, sites: int) -> list[dict[str, object]]:
        return [
            {"resource_id": "clinvar", "value": f"{object_id}-{i}", "delivered_at": at(day),
             "source_key": f"{object_id}.vcf", "object_id": object_id, "source_position": None}
            for i in range(sites)
        ]  # fmt: skip

    staged = versions(*release("old", 1, 3), *release("new", 2, 2))
    resolved = newest("genomic.clinvar", staged, None, "resource_id", "r1")
    # Then the table is the newer release, whole, and the older file is one superseded version
    assert kept(resolved.rows) == {"clinvar": ["new-0", "new-1"]}
    assert resolved.superseded.select(["superseded_object_id", "kept_object_id"]).to_pylist() == [
        {"superseded_object_id": "old", "kept_object_id": "new"}
    ]
