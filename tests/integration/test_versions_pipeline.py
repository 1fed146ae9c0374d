"""One row per resource and per callset on the local runtime: the same resource in two files of one run, an
object overwritten inside the trigger's batching window, and a re-delivery in a later run.

Real template, state machine and handlers; the duplicates are counted on the Iceberg tables.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator

import pytest

from mmhealth.lakehouse.catalog import read_table
from mmpipe.local import LocalRuntime
from tests.unit.genomic.vcf_files import genotype_vcf

pytestmark = pytest.mark.integration

SNOMED = "http://snomed.info/sct"


def bundle(patient: str, condition_code: str, condition_id: str = "c-shared") -> bytes:
    """A transaction Bundle as generators write them: the shared Practitioner repeated in every Bundle."""
    entries = [
        {"resourceType": "Patient", "id": patient, "gender": "female", "birthDate": "1950-01-01"},
        {"resourceType": "Practitioner", "id": "pr-shared", "active": True},
        {"resourceType": "Condition", "id": condition_id, "subject": {"reference": f"Patient/{patient}"},
         "code": {"coding": [{"system": SNOMED, "code": condition_code}]}, "onsetDateTime": "2016-01-01"},
    ]  # fmt: skip
    return json.dumps(
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in entries],
        }
    ).encode()


def observations(value: float, extra: bool) -> bytes:
    obs = [{"resourceType": "Observation", "id": "o1", "status": "final", "subject": {"reference": "Patient/p1"},
            "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
            "effectiveDateTime": "2016-05-01", "valueQuantity": {"value": value, "code": "mm[Hg]"}}]  # fmt: skip
    if extra:
        obs.append({**obs[0], "id": "o2"})
    return "".join(json.dumps(o) + "\n" for o in obs).encode()


def vcf(genotype: str) -> bytes:
    records = [f"1\t{1000 + i}\t.\tA\tG\t50\tPASS\t.\tGT\t{genotype}" for i in range(5)]
    return genotype_vcf(records, samples=("p1",)).encode()


@pytest.fixture
def runtime() -> Iterator[LocalRuntime]:
    with LocalRuntime() as rt:
        yield rt


def duplicates(table: str, key: str = "resource_id") -> dict[str, int]:
    rows = read_table(table)
    assert rows is not None, table
    return {k: n for k, n in Counter(rows[key].to_pylist()).items() if n > 1}


def test_repeated_overwritten_and_redelivered_resources_keep_one_row_each(runtime: LocalRuntime) -> None:
    # Given one delivery whose Bundles repeat the shared Practitioner and the same Condition id, and whose
    # observation NDJSON and VCF are each overwritten (new bytes, same key) inside the batching window
    with runtime.events_held():
        runtime.put_object("incoming/d1/clinical/b-1.json", bundle("p1", "44054006"))
        runtime.put_object("incoming/d1/clinical/b-2.json", bundle("p2", "73211009"))
        runtime.put_object("incoming/d1/clinical/obs.ndjson", observations(120, extra=False))
        runtime.put_object("incoming/d1/clinical/obs.ndjson", observations(130, extra=True))
        runtime.put_object("incoming/d1/genomic/p1.vcf", vcf("0/1"))
        runtime.put_object("incoming/d1/genomic/p1.vcf", vcf("1/1"))
        runtime.complete("d1")
    runtime.drain()
    first = runtime.wait_for_executions(count=1, timeout=300)
    assert [e["status"] for e in first] == ["SUCCEEDED"], first[-1].get("cause")

    # Then every table has one row (set) per resource id and the callset once
    for table in (
        "clinical.patient",
        "clinical.condition",
        "clinical.other_resource",
        "clinical.observation",
    ):
        assert duplicates(table) == {}, table
    assert read_table("clinical.other_resource")["resource_id"].to_pylist() == ["pr-shared"]  # type: ignore[index]
    # And the overwritten files were read once, at their newer bytes
    obs = read_table("clinical.observation")
    assert obs is not None
    assert sorted(zip(obs["resource_id"].to_pylist(), obs["value_quantity"].to_pylist(), strict=True)) == [
        ("o1", 130.0),
        ("o2", 130.0),
    ]
    variants = read_table("genomic.variants")
    assert variants is not None
    assert variants.num_rows == 5
    assert set(variants["zygosity"].to_pylist()) == {"homozygous"}
    assert duplicates("genomic.samples", "sample_id") == {}
    # And what was superseded is recorded: two overwritten objects, one repeated Practitioner, the Condition
    superseded = read_table("ops.superseded")
    assert superseded is not None
    rows = superseded.to_pylist()
    assert sorted(r["key"] for r in rows if r["table"] == "landing") == [
        "incoming/d1/clinical/obs.ndjson",
        "incoming/d1/genomic/p1.vcf",
    ]
    assert sorted((r["table"], r["key"]) for r in rows if r["table"] != "landing") == [
        ("clinical.condition", "c-shared"),
        ("clinical.other_resource", "pr-shared"),
    ]

    # When a later delivery re-sends the Condition with a corrected code
    runtime.put_object("incoming/d2/clinical/b-fix.json", bundle("p1", "15777000"))
    runtime.complete("d2")
    runtime.drain()
    second = runtime.wait_for_executions(count=2, timeout=300)
    assert [e["status"] for e in second] == ["SUCCEEDED"] * 2, second[-1].get("cause")

    # Then the Condition, the Patient and the Practitioner still have one row each, now the corrected one
    for table in ("clinical.patient", "clinical.condition", "clinical.other_resource"):
        assert duplicates(table) == {}, table
    conditions = read_table("clinical.condition")
    assert conditions is not None
    assert conditions["code_code"].to_pylist() == ["15777000"]
