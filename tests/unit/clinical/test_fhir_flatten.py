"""What the rows hold: the conventions of lakehouse/clinical_tables.py (references, codes, dates, no PHI)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from mmhealth.clinical.fhir import FlattenResult, flatten_fhir
from mmhealth.lakehouse.clinical_tables import CLINICAL_TABLES
from tests.unit.clinical.fhir_files import (
    LINEAGE,
    LOINC,
    PERSONAL_STRINGS,
    SNOMED,
    blood_pressure,
    bundle,
    concept,
    condition,
    encounter,
    ndjson,
    observation,
    organization,
    patient,
    pretty,
    write,
)


def flattened_lines(tmp_path: Path, resources: list[dict[str, Any]]) -> FlattenResult:
    result = flatten_fhir(write(tmp_path / "f.ndjson", ndjson(resources)), **LINEAGE)
    assert result.problems == []
    return result


def records(result: FlattenResult, table: str) -> list[dict[str, Any]]:
    return result.tables[table].to_pylist()


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


# -------------------------------------------------------------------------------------- references

REFERENCE_FORMS = {
    "relative": "Patient/pt-1",
    "urn-uuid": "urn:uuid:pt-1",
    "absolute-url": "https://fhir.example.org/r4/Patient/pt-1",
    "versioned": "Patient/pt-1/_history/3",
}


@pytest.mark.parametrize("form", list(REFERENCE_FORMS))
def test_a_reference_in_any_form_resolves_to_the_bare_id(tmp_path: Path, form: str) -> None:
    # Given an Observation whose subject and encounter use one reference form
    reference = REFERENCE_FORMS[form]
    encounter_reference = reference.replace("Patient", "Encounter").replace("pt-1", "enc-1")
    obs = observation(subject=reference, encounter={"reference": encounter_reference})
    # When flattened, then patient_id and encounter_id are bare ids
    [row] = records(flattened_lines(tmp_path, [obs]), "clinical.observation")
    assert (row["patient_id"], row["encounter_id"]) == ("pt-1", "enc-1")


def test_bundle_references_resolve_through_the_entries_full_urls(tmp_path: Path) -> None:
    # Given a Bundle whose entries' fullUrls differ from their ids, one of them an absolute URL, and a
    # POST entry without an id (a transaction create): it is known by its urn:uuid
    document = bundle(
        [
            patient("pt-9"),
            encounter("enc-9", subject="urn:uuid:11111111-2222-3333-4444-555555555555"),
            observation("obs-9", subject="http://example.org/fhir/Patient/pt-9"),
            {
                k: v
                for k, v in condition(subject="urn:uuid:11111111-2222-3333-4444-555555555555").items()
                if k != "id"
            },
        ]
    )
    document["entry"][0]["fullUrl"] = "urn:uuid:11111111-2222-3333-4444-555555555555"
    document["entry"][1]["fullUrl"] = "urn:uuid:99999999-2222-3333-4444-555555555555"
    document["entry"][2]["resource"]["encounter"] = {
        "reference": "urn:uuid:99999999-2222-3333-4444-555555555555"
    }
    document["entry"][2]["fullUrl"] = "http://example.org/fhir/Observation/obs-9"
    document["entry"][3]["fullUrl"] = "urn:uuid:cccccccc-2222-3333-4444-555555555555"
    # When flattened
    result = flatten_fhir(write(tmp_path / "b.json", pretty(document)), **LINEAGE)
    # Then every reference names the entry's resource id
    assert result.problems == []
    assert [r["patient_id"] for r in records(result, "clinical.encounter")] == ["pt-9"]
    [obs] = records(result, "clinical.observation")
    assert (obs["patient_id"], obs["encounter_id"]) == ("pt-9", "enc-9")
    [cond] = records(result, "clinical.condition")
    assert (cond["resource_id"], cond["patient_id"]) == ("cccccccc-2222-3333-4444-555555555555", "pt-9")


def test_kept_resources_leave_their_bundle_with_references_a_fhir_server_resolves(tmp_path: Path) -> None:
    # Given a transaction Bundle whose references use the entries' urn:uuid fullUrls, nested in lists
    # too, beside a reference to a resource outside the Bundle and a bad entry
    report = {
        "resourceType": "DiagnosticReport",
        "id": "dr-1",
        "status": "final",
        "code": concept(LOINC, "57698-3", "Lipid panel"),
        "subject": {"reference": "urn:uuid:pt-1"},
        "result": [{"reference": "urn:uuid:obs-1"}, {"reference": "Observation/elsewhere"}],
    }
    document = bundle([patient("pt-1"), observation("obs-1", subject="urn:uuid:pt-1"), report, {"id": "x"}])
    path = write(tmp_path / "b.json", pretty(document))

    # When flattened keeping the resources
    kept = flatten_fhir(path, **LINEAGE, keep_resources=True)

    # Then each accepted resource comes back with its line, references made Type/id, others as they were
    assert [p.reason for p in kept.problems] == ["missing-resource-type"]
    assert [(line, r["resourceType"], r["id"]) for line, r in kept.resources] == [
        (1, "Patient", "pt-1"),
        (1, "Observation", "obs-1"),
        (1, "DiagnosticReport", "dr-1"),
    ]
    observation_kept, report_kept = kept.resources[1][1], kept.resources[2][1]
    assert observation_kept["subject"]["reference"] == "Patient/pt-1"
    assert report_kept["subject"] == {"reference": "Patient/pt-1"}
    assert report_kept["result"] == [
        {"reference": "Observation/obs-1"},
        {"reference": "Observation/elsewhere"},
    ]
    # And the delivered document itself is not changed, nor are resources kept unless asked for
    assert document["entry"][1]["resource"]["subject"]["reference"] == "urn:uuid:pt-1"
    assert flatten_fhir(path, **LINEAGE).resources == []


def test_an_encounter_reference_that_names_another_type_is_not_an_encounter_id(tmp_path: Path) -> None:
    obs = observation(encounter={"reference": "EpisodeOfCare/e1"})
    [row] = records(flattened_lines(tmp_path, [obs]), "clinical.observation")
    assert row["encounter_id"] is None


def test_diagnostic_report_results_are_observation_ids(tmp_path: Path) -> None:
    report = {
        "resourceType": "DiagnosticReport",
        "id": "dr-1",
        "status": "final",
        "category": [concept("http://terminology.hl7.org/CodeSystem/v2-0074", "LAB", "Laboratory")],
        "code": concept(LOINC, "57698-3", "Lipid panel"),
        "subject": {"reference": "Patient/pt-1"},
        "effectivePeriod": {"start": "2019-04-01T10:00:00Z"},
        "issued": "2019-04-01T12:00:00Z",
        "result": [{"reference": "Observation/o1"}, {"reference": "urn:uuid:o2"}, {"display": "pending"}],
        "conclusion": "Note about Peterqq",
    }
    [row] = records(flattened_lines(tmp_path, [report]), "clinical.diagnostic_report")
    assert (row["result_ids"], row["category"], row["code_code"]) == ("o1 ; o2", "LAB", "57698-3")
    assert row["effective_at"] == utc(2019, 4, 1, 10)


# -------------------------------------------------------------------------------------------- codes


def test_a_preferred_coding_wins_over_an_earlier_one(tmp_path: Path) -> None:
    # Given a Condition coded in ICD-10 first and SNOMED CT second
    code = {
        "coding": [
            {
                "system": "http://hl7.org/fhir/sid/icd-10-cm",
                "code": "I10",
                "display": "Essential hypertension",
            },
            {"system": SNOMED, "code": "59621000", "display": "Essential hypertension (disorder)"},
        ]
    }
    [row] = records(flattened_lines(tmp_path, [condition(code=code)]), "clinical.condition")
    # Then SNOMED CT is kept, with its display
    assert (row["code_system"], row["code_code"], row["code_display"]) == (
        SNOMED,
        "59621000",
        "Essential hypertension (disorder)",
    )
    assert (row["clinical_status"], row["onset_at"]) == ("active", utc(2019, 4, 1))


def test_a_concept_given_only_as_text_keeps_it_as_display(tmp_path: Path) -> None:
    med = {
        "resourceType": "MedicationRequest",
        "id": "mr-1",
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {"text": "aspirin 81 mg"},
        "subject": {"reference": "Patient/pt-1"},
        "authoredOn": "2019-04-01",
    }
    [row] = records(flattened_lines(tmp_path, [med]), "clinical.medication_request")
    assert (row["medication_code"], row["medication_display"]) == (None, "aspirin 81 mg")


def test_a_medication_reference_to_a_contained_medication_gives_its_code(tmp_path: Path) -> None:
    med = {
        "resourceType": "MedicationRequest",
        "id": "mr-2",
        "status": "active",
        "intent": "order",
        "contained": [
            {
                "resourceType": "Medication",
                "id": "m1",
                "code": concept("http://www.nlm.nih.gov/research/umls/rxnorm", "314076", "lisinopril 10 MG"),
            }
        ],
        "medicationReference": {"reference": "#m1"},
        "subject": {"reference": "Patient/pt-1"},
    }
    [row] = records(flattened_lines(tmp_path, [med]), "clinical.medication_request")
    assert (row["medication_code"], row["patient_id"]) == ("314076", "pt-1")


# ------------------------------------------------------------------------------------- observations


def test_blood_pressure_components_split_into_one_row_each_with_the_panel_code(tmp_path: Path) -> None:
    result = flattened_lines(tmp_path, [blood_pressure()])
    rows = records(result, "clinical.observation")
    assert [(r["code_code"], r["panel_code"], r["value_quantity"], r["value_unit"]) for r in rows] == [
        ("8480-6", "85354-9", 107.0, "mm[Hg]"),
        ("8462-4", "85354-9", 60.0, "mm[Hg]"),
    ]
    assert {r["resource_id"] for r in rows} == {"bp-1"}
    assert result.accepted == {"Observation": 1}


def test_a_panel_with_a_value_of_its_own_keeps_a_row_for_it(tmp_path: Path) -> None:
    panel = {**blood_pressure(), "valueString": "see components"}
    rows = records(flattened_lines(tmp_path, [panel]), "clinical.observation")
    assert [(r["code_code"], r["panel_code"]) for r in rows] == [
        ("85354-9", None),
        ("8480-6", "85354-9"),
        ("8462-4", "85354-9"),
    ]


VALUES = {
    "quantity": ({"valueQuantity": {"value": 5.5, "unit": "%"}}, {"value_quantity": 5.5, "value_unit": "%"}),
    "quantity-ucum": (
        {
            "valueQuantity": {
                "value": 72,
                "unit": "beats/min",
                "system": "http://unitsofmeasure.org",
                "code": "/min",
            }
        },
        {"value_quantity": 72.0, "value_unit": "/min"},
    ),
    "concept": (
        {"valueCodeableConcept": concept(SNOMED, "266919005", "Never smoked tobacco (finding)")},
        {"value_concept_code": "266919005", "value_concept_system": SNOMED, "value_quantity": None},
    ),
    "integer": ({"valueInteger": 27}, {"value_quantity": 27.0, "value_unit": None}),
    "string": ({"valueString": "positive"}, {"value_string": "positive"}),
    "boolean": ({"valueBoolean": False}, {"value_string": "false"}),
    "none": ({"dataAbsentReason": concept(SNOMED, "x", "asked but declined")}, {"value_quantity": None}),
}


@pytest.mark.parametrize("kind", list(VALUES))
def test_observation_values_land_in_their_columns(tmp_path: Path, kind: str) -> None:
    value, expected = VALUES[kind]
    obs = {k: v for k, v in observation().items() if k != "valueQuantity"} | value
    [row] = records(flattened_lines(tmp_path, [obs]), "clinical.observation")
    assert {k: row[k] for k in expected} == expected


# -------------------------------------------------------------------------------------------- dates

DATES = {
    "year": ("2019", utc(2019, 1, 1)),
    "month": ("2019-04", utc(2019, 4, 1)),
    "day": ("2019-04-17", utc(2019, 4, 17)),
    "offset": ("2019-04-17T10:15:00+02:00", utc(2019, 4, 17, 8, 15)),
    "negative-offset": ("2019-12-31T22:30:00-05:00", utc(2020, 1, 1, 3, 30)),
    "utc": ("2019-04-17T10:15:30Z", utc(2019, 4, 17, 10, 15, 30)),
    "no-zone": ("2019-04-17T10:15:30", utc(2019, 4, 17, 10, 15, 30)),
    "nanoseconds": ("2019-04-17T10:15:30.123456789Z", utc(2019, 4, 17, 10, 15, 30, 123456)),
    "leap-day": ("2020-02-29T00:00:00Z", utc(2020, 2, 29)),
}


@pytest.mark.parametrize("case", list(DATES))
def test_dates_become_utc_at_the_first_instant_they_denote(tmp_path: Path, case: str) -> None:
    written, expected = DATES[case]
    [row] = records(
        flattened_lines(tmp_path, [observation(effectiveDateTime=written)]), "clinical.observation"
    )
    assert row["effective_at"] == expected
    assert row["issued_at"] == utc(2019, 4, 1, 10, 20, 0, 123000)


@pytest.mark.parametrize(
    ("written", "expected"), [("1974", date(1974, 1, 1)), ("1974-12", date(1974, 12, 1))]
)
def test_a_partial_birth_date_is_its_first_day(tmp_path: Path, written: str, expected: date) -> None:
    [row] = records(flattened_lines(tmp_path, [patient(birthDate=written)]), "clinical.patient")
    assert row["birth_date"] == expected


# ----------------------------------------------------------------------------------- other tables


def test_patient_row_keeps_the_record_number_but_no_national_id(tmp_path: Path) -> None:
    [row] = records(flattened_lines(tmp_path, [patient(deceasedDateTime="2021-06")]), "clinical.patient")
    assert row["identifiers"] == "urn:oid:1.2.36.146.595.217.0.1|MRN-pt-1"
    assert (row["patient_id"], row["gender"], row["birth_date"]) == ("pt-1", "male", date(1974, 12, 25))
    assert (row["deceased"], row["deceased_at"], row["marital_status_code"]) == (True, utc(2021, 6, 1), "M")


def test_encounter_row(tmp_path: Path) -> None:
    [row] = records(flattened_lines(tmp_path, [encounter()]), "clinical.encounter")
    assert (row["class_code"], row["type_code"], row["status"]) == ("AMB", "185349003", "finished")
    assert (row["period_start"], row["period_end"]) == (utc(2019, 4, 1, 8), utc(2019, 4, 1, 8, 30))


@pytest.mark.parametrize("system", ["urn:dicom:uid", "urn:ietf:rfc:3986"])
def test_imaging_study_instance_uid_comes_from_its_urn_oid_identifier(tmp_path: Path, system: str) -> None:
    study = {
        "resourceType": "ImagingStudy",
        "id": "is-1",
        "identifier": [
            {"system": "urn:oid:1.2.3", "value": "ACC-1"},
            {"system": system, "value": "urn:oid:2.16.124.113543.6003.1154777499.30246.19789.3503430045"},
        ],
        "status": "available",
        "modality": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "MR"}],
        "subject": {"reference": "urn:uuid:pt-1"},
        "started": "2017-01-01T11:01:20+03:00",
        "numberOfSeries": 2,
        "numberOfInstances": 40,
        "series": [{"uid": "2.16.124.1"}, {"uid": "2.16.124.2"}],
    }
    [row] = records(flattened_lines(tmp_path, [study]), "clinical.imaging_study")
    assert row["study_instance_uid"] == "2.16.124.113543.6003.1154777499.30246.19789.3503430045"
    assert (row["modalities"], row["number_of_series"], row["number_of_instances"]) == ("MR", 2, 40)
    assert (row["series_uids"], row["started_at"]) == ("2.16.124.1 ; 2.16.124.2", utc(2017, 1, 1, 8, 1, 20))


def test_claim_and_immunization_rows_name_their_patient(tmp_path: Path) -> None:
    claim = {
        "resourceType": "Claim",
        "id": "cl-1",
        "status": "active",
        "type": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]
        },
        "use": "claim",
        "patient": {"reference": "Patient/pt-1"},
        "created": "2019-04-01T10:30:00Z",
        "billablePeriod": {"start": "2019-04-01T10:00:00Z", "end": "2019-04-01T10:30:00Z"},
        "total": {"value": 129.5, "currency": "USD"},
    }
    shot = {
        "resourceType": "Immunization",
        "id": "im-1",
        "status": "completed",
        "vaccineCode": concept("http://hl7.org/fhir/sid/cvx", "140", "Influenza"),
        "patient": {"reference": "Patient/pt-1"},
        "occurrenceDateTime": "2019-10",
    }
    result = flattened_lines(tmp_path, [claim, shot])
    [claim_row] = records(result, "clinical.claim")
    assert (claim_row["patient_id"], claim_row["total_value"], claim_row["type_code"]) == (
        "pt-1",
        129.5,
        "professional",
    )
    [shot_row] = records(result, "clinical.immunization")
    assert (shot_row["patient_id"], shot_row["vaccine_code"], shot_row["occurrence_at"]) == (
        "pt-1",
        "140",
        utc(2019, 10, 1),
    )


def test_a_type_without_a_table_is_kept_raw_without_personal_elements_and_counted(tmp_path: Path) -> None:
    # Given an Organization (no table) and a RelatedPerson of pt-1, both with names, addresses and phones
    related = {
        "resourceType": "RelatedPerson",
        "id": "rp-1",
        "patient": {"reference": "Patient/pt-1", "display": "Peterqq Chalmerszz"},
        "name": [{"family": "Chalmerszz"}],
        "telecom": [{"value": "(03) 5555 6473"}],
        "relationship": [concept("http://terminology.hl7.org/CodeSystem/v3-RoleCode", "WIFE", "wife")],
    }
    result = flattened_lines(tmp_path, [organization(), related, organization("org-2")])
    # Then they are rows of clinical.other_resource, counted by type
    assert result.other_types == {"Organization": 2, "RelatedPerson": 1}
    rows = {r["resource_id"]: r for r in records(result, "clinical.other_resource")}
    assert (rows["rp-1"]["resource_type"], rows["rp-1"]["patient_id"]) == ("RelatedPerson", "pt-1")
    assert rows["org-1"]["patient_id"] is None
    # And their JSON keeps what is not personal
    kept = json.loads(rows["rp-1"]["resource_json"])
    assert kept == {
        "resourceType": "RelatedPerson",
        "id": "rp-1",
        "patient": {"reference": "Patient/pt-1"},
        "relationship": [concept("http://terminology.hl7.org/CodeSystem/v3-RoleCode", "WIFE", "wife")],
    }
    assert json.loads(rows["org-1"]["resource_json"])["name"] == "Synthetic General Hospital"


# ------------------------------------------------------------------------------- schema and privacy


def test_tables_have_exactly_the_contract_schemas_and_lineage(tmp_path: Path) -> None:
    result = flattened_lines(
        tmp_path, [patient(), encounter(), condition(), blood_pressure(), organization()]
    )
    assert set(result.tables) == {
        "clinical.patient",
        "clinical.encounter",
        "clinical.condition",
        "clinical.observation",
        "clinical.other_resource",
    }
    for name, table in result.tables.items():
        assert table.schema.equals(CLINICAL_TABLES[name]), name
        assert set(table["run_id"].to_pylist()) == {LINEAGE["run_id"]}
        assert set(table["source_key"].to_pylist()) == {LINEAGE["source_key"]}


def all_strings(tables: dict[str, pa.Table]) -> str:
    return json.dumps([t.to_pylist() for t in tables.values()], default=str, ensure_ascii=False)


def test_no_name_address_telecom_note_or_national_id_reaches_any_table(tmp_path: Path) -> None:
    # Given resources that carry the patient's personal strings in names, addresses, telecom, contacts,
    # narrative, extensions, notes, reference displays and identifiers
    resources = [patient(), observation(), blood_pressure(), condition(), encounter(), organization()]
    resources.append({**organization("org-3"), "contact": [{"name": {"family": "Chalmerszz"}}]})
    # When flattened
    result = flattened_lines(tmp_path, resources)
    # Then no table holds any of them
    text = all_strings(result.tables)
    assert not [s for s in PERSONAL_STRINGS if s in text]
