"""The clinical path on the local runtime: FHIR NDJSON + VCFs in one delivery, both branches in one run.

Real template, state machine and handlers; assertions on the Iceberg tables (row counts against an
independent count of the input resources), the features/labels tables, quarantine and the notification.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from mmhealth.features.outcomes import PRIMARY_CODES
from mmhealth.lakehouse.catalog import read_table
from mmpipe.local import LocalRuntime
from mmpipe.synth import generate_cohort

pytestmark = pytest.mark.integration

TABLE_OF = {
    "Patient": "clinical.patient",
    "Encounter": "clinical.encounter",
    "Condition": "clinical.condition",
    "Observation": "clinical.observation",
    "Procedure": "clinical.procedure",
    "MedicationRequest": "clinical.medication_request",
    "Immunization": "clinical.immunization",
    "DiagnosticReport": "clinical.diagnostic_report",
    "ImagingStudy": "clinical.imaging_study",
    "Claim": "clinical.claim",
}


def expected_rows(clinical_dir: Path) -> Counter[str]:
    """Independent count: one row per resource, one per component for an Observation with components."""
    rows: Counter[str] = Counter()
    for path in clinical_dir.glob("*.ndjson"):
        for line in path.read_text().splitlines():
            resource = json.loads(line)
            table = TABLE_OF.get(resource["resourceType"], "clinical.other_resource")
            rows[table] += len(resource.get("component") or []) or 1
    return rows


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cohort") / "delivery"
    generate_cohort(out, patients=12, seed=5, modalities={"genomic", "clinical"})
    return out


@pytest.fixture
def runtime() -> Iterator[LocalRuntime]:
    with LocalRuntime() as rt:
        yield rt


def test_a_mixed_delivery_fills_both_branches_features_and_labels(
    runtime: LocalRuntime, cohort: Path
) -> None:
    # Given the cohort's VCFs and FHIR NDJSON, plus one NDJSON file with a broken line among valid ones
    inbox = runtime.subscribe()
    broken = (
        json.dumps({"resourceType": "Observation", "id": "obs-ok", "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                    "subject": {"reference": "Patient/unknown-patient"}, "effectiveDateTime": "2016-01-01",
                    "valueQuantity": {"value": 71, "unit": "/min"}})
        + "\n{not json\n"
    )  # fmt: skip
    for path in sorted(cohort.rglob("*")):
        if path.is_file() and ".truth" not in path.parts:
            runtime.upload(path, f"incoming/d-mixed/{path.relative_to(cohort).as_posix()}")
    runtime.put_object("incoming/d-mixed/clinical/late-arrivals.ndjson", broken.encode())
    # and a Synthea-style transaction Bundle whose references are urn:uuid fullUrls
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:bundle-patient-1",
             "resource": {"resourceType": "Patient", "id": "bundle-patient-1", "gender": "male",
                          "birthDate": "1950-01-01"}},
            {"fullUrl": "urn:uuid:bundle-condition-1",
             "resource": {"resourceType": "Condition", "id": "bundle-condition-1",
                          "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]},
                          "subject": {"reference": "urn:uuid:bundle-patient-1"}, "onsetDateTime": "2016-03-01"}},
        ],
    }  # fmt: skip
    runtime.put_object("incoming/d-mixed/clinical/bundle-0001.json", json.dumps(bundle, indent=2).encode())
    runtime.complete("d-mixed")

    # When the events drive the pipeline
    runtime.drain()
    executions = runtime.wait_for_executions(count=1, timeout=300)

    # Then one run ingested both modalities
    assert [e["status"] for e in executions] == ["SUCCEEDED"] * len(executions), executions[-1].get("cause")
    # And every clinical table holds one row per input resource (components split)
    expected = expected_rows(cohort / "clinical")
    expected["clinical.observation"] += 1  # the valid line of late-arrivals.ndjson
    expected["clinical.patient"] += 1  # the Bundle's patient
    expected["clinical.condition"] += 1  # and its condition
    for table, rows in expected.items():
        arrow = read_table(table)
        assert arrow is not None, table
        assert arrow.num_rows == rows, table
    condition = read_table("clinical.condition").to_pylist()  # type: ignore[union-attr]
    assert {c["patient_id"] for c in condition if c["resource_id"] == "bundle-condition-1"} == {
        "bundle-patient-1"
    }
    # And the broken line is quarantined with its line number; the rest of that file was ingested
    quarantine = read_table("ops.quarantine").to_pylist()  # type: ignore[union-attr]
    assert [(q["key"].rsplit("/", 1)[1], q["line"], q["reason"]) for q in quarantine] == [
        ("late-arrivals.ndjson", 2, "invalid-json")
    ]
    # And features and labels exist for every patient, with every outcome; the observation whose patient
    # is unknown is kept, so that patient id gets a (demographics-less) row too
    patients = set(read_table("clinical.patient")["patient_id"].to_pylist())  # type: ignore[index]
    features = read_table("features.clinical")
    labels = read_table("features.labels")
    assert features is not None
    assert labels is not None
    assert (
        set(features["patient_id"].to_pylist())
        == set(labels["patient_id"].to_pylist())
        == patients | {"unknown-patient"}
    )
    assert set(PRIMARY_CODES) <= set(labels.column_names)
    # And the notification carries the label prevalence
    notes = [json.loads(n.message) for n in inbox.receive(count=len(executions))]
    rebuilt = [n["features"] for n in notes if "prevalence" in n.get("features", {})]
    assert set(rebuilt[-1]["prevalence"]) == set(PRIMARY_CODES)
    # And the observation of a patient nobody delivered is kept and reported as unlinked
    assert rebuilt[-1]["unlinked_patients"] == 1
