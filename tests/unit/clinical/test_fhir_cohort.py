"""A synthetic cohort (the generator's realistic FHIR) in: row counts agree with an independent count of the
input's resources, every reference resolves, and no personal string of a Patient reaches a table - whether
the cohort comes as NDJSON (plain, gzip, one file of mixed types) or as Synthea-style Bundles.
"""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from mmhealth.clinical.fhir import FlattenResult, flatten_fhir
from mmpipe.synth import generate_cohort
from tests.unit.clinical.fhir_files import LINEAGE, pretty

TABLE_OF_TYPE = {
    "Patient": "clinical.patient",
    "Encounter": "clinical.encounter",
    "Condition": "clinical.condition",
    "Observation": "clinical.observation",
    "MedicationRequest": "clinical.medication_request",
    "Procedure": "clinical.procedure",
    "Immunization": "clinical.immunization",
    "DiagnosticReport": "clinical.diagnostic_report",
    "ImagingStudy": "clinical.imaging_study",
    "Claim": "clinical.claim",
}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """Every resource the generator wrote for 20 patients, in file order."""
    out = tmp_path_factory.mktemp("cohort")
    generate_cohort(out, patients=20, seed=3, modalities={"clinical"})
    return [
        json.loads(line)
        for f in sorted((out / "clinical").glob("*.ndjson"))
        for line in f.read_text().splitlines()
    ]


def expected_rows(resources: list[dict[str, Any]]) -> Counter[str]:
    """Independently of the code under test: one row per resource, one per component for a panel."""
    counts: Counter[str] = Counter()
    for resource in resources:
        counts[TABLE_OF_TYPE[resource["resourceType"]]] += len(resource.get("component", [])) or 1
    return counts


def row_counts(result: FlattenResult) -> Counter[str]:
    return Counter({name: table.num_rows for name, table in result.tables.items()})


def without_lineage(table: pa.Table) -> pa.Table:
    """The rows without where they came from (lineage, and the position of the resource in its file)."""
    return table.drop_columns(["source_key", "object_id", "run_id", "source_position"]).sort_by(
        [
            ("resource_id", "ascending"),
            ("code_code" if "code_code" in table.column_names else "resource_id", "ascending"),
        ]
    )


def test_a_mixed_ndjson_cohort_gives_one_row_per_resource_and_component(
    tmp_path: Path, cohort: list[dict[str, Any]]
) -> None:
    # Given the whole cohort in one gzip NDJSON file of mixed resource types
    path = tmp_path / "cohort.ndjson.gz"
    path.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in cohort).encode()))
    # When flattened
    result = flatten_fhir(path, **LINEAGE)
    # Then every resource is accepted, and the rows are what an independent count says
    assert result.problems == []
    assert result.accepted == Counter(r["resourceType"] for r in cohort)
    assert row_counts(result) == expected_rows(cohort)
    assert result.other_types == Counter()


def test_every_reference_of_the_cohort_resolves_to_a_resource_of_the_delivery(
    tmp_path: Path, cohort: list[dict[str, Any]]
) -> None:
    path = tmp_path / "cohort.ndjson"
    path.write_text("".join(json.dumps(r) + "\n" for r in cohort))
    tables = flatten_fhir(path, **LINEAGE).tables
    patients = set(tables["clinical.patient"]["patient_id"].to_pylist())
    encounters = set(tables["clinical.encounter"]["resource_id"].to_pylist())
    for name, table in tables.items():
        assert set(table["patient_id"].to_pylist()) <= patients, name
        if "encounter_id" in table.column_names:
            assert pc.all(pc.is_valid(table["encounter_id"])).as_py(), name
            assert set(table["encounter_id"].to_pylist()) <= encounters, name


def test_one_file_per_type_flattens_to_the_same_rows(tmp_path: Path, cohort: list[dict[str, Any]]) -> None:
    by_type: dict[str, list[dict[str, Any]]] = {}
    for resource in cohort:
        by_type.setdefault(resource["resourceType"], []).append(resource)
    for resource_type, resources in by_type.items():
        path = tmp_path / f"{resource_type}.ndjson"
        path.write_text("".join(json.dumps(r) + "\n" for r in resources))
        result = flatten_fhir(path, **LINEAGE)
        assert (result.problems, row_counts(result)) == ([], expected_rows(resources)), resource_type


def as_bundle_reference(value: Any) -> Any:
    """Every literal reference rewritten the Synthea way: urn:uuid:<id>."""
    if isinstance(value, dict):
        return {
            k: re.sub(r"^[A-Za-z]+/", "urn:uuid:", v) if k == "reference" else as_bundle_reference(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [as_bundle_reference(v) for v in value]
    return value


def test_synthea_style_transaction_bundles_give_the_same_rows_as_ndjson(
    tmp_path: Path, cohort: list[dict[str, Any]]
) -> None:
    # Given the cohort as NDJSON, and as one pretty-printed transaction Bundle per patient with urn:uuid
    # fullUrls and references
    ndjson_path = tmp_path / "cohort.ndjson"
    ndjson_path.write_text("".join(json.dumps(r) + "\n" for r in cohort))
    per_patient: dict[str, list[dict[str, Any]]] = {}
    for resource in cohort:
        owner = resource["id"] if resource["resourceType"] == "Patient" else None
        subject = resource.get("subject") or resource.get("patient")
        owner = owner or subject["reference"].split("/")[-1].removeprefix("urn:uuid:")
        per_patient.setdefault(owner, []).append(resource)
    results = []
    for owner, resources in per_patient.items():
        entries = [
            {
                "fullUrl": f"urn:uuid:{r['id']}",
                "resource": as_bundle_reference(r),
                "request": {"method": "POST", "url": r["resourceType"]},
            }
            for r in resources
        ]
        path = tmp_path / f"{owner}.json"
        path.write_bytes(pretty({"resourceType": "Bundle", "type": "transaction", "entry": entries}))
        results.append(flatten_fhir(path, **LINEAGE))
    # When both are flattened, then the tables hold the same rows
    from_ndjson = flatten_fhir(ndjson_path, **LINEAGE).tables
    assert all(r.problems == [] for r in results)
    for name, table in from_ndjson.items():
        from_bundles = pa.concat_tables([r.tables[name] for r in results if name in r.tables])
        assert without_lineage(from_bundles).equals(without_lineage(table)), name


def personal_values(patient: dict[str, Any]) -> tuple[set[str], set[str]]:
    """(names and cities: single words; street lines, phones and national ids: phrases) of one Patient."""
    words: set[str] = set()
    for name in patient.get("name", []):
        words.update([name["family"], *name.get("given", [])])
    phrases = {t["value"] for t in patient.get("telecom", [])}
    for address in patient.get("address", []):
        words.add(address["city"])
        phrases.update(address.get("line", []))
    phrases.update(
        i["value"] for i in patient.get("identifier", []) if i.get("system", "").endswith("us-ssn")
    )
    return words, phrases


def test_no_personal_string_of_any_patient_reaches_a_table(
    tmp_path: Path, cohort: list[dict[str, Any]]
) -> None:
    # Given the cohort's Patients' names, cities, street lines, phones and SSNs
    patients = [r for r in cohort if r["resourceType"] == "Patient"]
    words: set[str] = set()
    phrases: set[str] = set()
    for patient in patients:
        patient_words, patient_phrases = personal_values(patient)
        words |= patient_words
        phrases |= patient_phrases
    assert len(words) > 10  # the check has something to find
    assert len(phrases) > 2 * len(patients)
    # When the cohort is flattened
    path = tmp_path / "cohort.ndjson"
    path.write_text("".join(json.dumps(r) + "\n" for r in cohort))
    tables = flatten_fhir(path, **LINEAGE).tables
    # Then no string cell of any table holds one: as a word (names, cities) or at all (the rest)
    cells = [
        s
        for t in tables.values()
        for c in t.columns
        if pa.types.is_string(c.type)
        for s in c.to_pylist()
        if s
    ]
    text = "\n".join(cells)
    assert not words & set(re.findall(r"[A-Za-z]+", text))
    assert not [p for p in phrases if p in text]
