"""FHIR files for the clinical tests, written for real: NDJSON (plain or gzip) and pretty-printed Bundles.

A plain module rather than a conftest: the tests import these helpers by name. Resources are small but
shaped like Synthea's (the synthetic cohort generator's) and like the HL7 examples.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

LINEAGE = {
    "source_key": "incoming/d1/clinical/mixed.ndjson",
    "object_id": "0123456789abcdef",
    "run_id": "run-1",
}

Resource = dict[str, Any]
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"

# Personal strings of PATIENT: none may appear in any flattened table.
FAMILY, GIVEN, STREET, CITY, PHONE, EMAIL, SSN = (
    "Chalmerszz",
    "Peterqq",
    "534 Erewhon St",
    "PleasantVillexx",
    "(03) 5555 6473",
    "p.chalmers@example.org",
    "999-44-1234",
)
PERSONAL_STRINGS = (
    FAMILY,
    GIVEN,
    STREET,
    CITY,
    PHONE,
    EMAIL,
    SSN,
    "mothers-maiden-namexx",
    "Note about Peterqq",
)


def patient(resource_id: str = "pt-1", **extra: Any) -> Resource:
    return {
        "resourceType": "Patient",
        "id": resource_id,
        "text": {"status": "generated", "div": f"<div>{GIVEN} {FAMILY}, {STREET}</div>"},
        "extension": [
            {
                "url": "http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName",
                "valueString": "mothers-maiden-namexx",
            }
        ],
        "identifier": [
            {
                "type": {
                    "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]
                },
                "system": "urn:oid:1.2.36.146.595.217.0.1",
                "value": f"MRN-{resource_id}",
            },
            {
                "type": {
                    "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "SS"}]
                },
                "system": "http://hl7.org/fhir/sid/us-ssn",
                "value": SSN,
            },
        ],
        "name": [{"use": "official", "family": FAMILY, "given": [GIVEN], "prefix": ["Mr."]}],
        "telecom": [{"system": "phone", "value": PHONE}, {"system": "email", "value": EMAIL}],
        "gender": "male",
        "birthDate": "1974-12-25",
        "address": [{"line": [STREET], "city": CITY, "postalCode": "3999", "country": "AU"}],
        "maritalStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": "M"}]
        },
        "contact": [{"name": {"family": FAMILY, "given": ["Bénédicte"]}, "telecom": [{"value": PHONE}]}],
        **extra,
    }


def concept(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def observation(resource_id: str = "obs-1", subject: str | None = "Patient/pt-1", **extra: Any) -> Resource:
    resource: Resource = {
        "resourceType": "Observation",
        "id": resource_id,
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
        "code": concept(LOINC, "8867-4", "Heart rate"),
        "encounter": {"reference": "Encounter/enc-1"},
        "effectiveDateTime": "2019-04-01T10:15:00+02:00",
        "issued": "2019-04-01T10:20:00.123Z",
        "valueQuantity": {
            "value": 72,
            "unit": "beats/minute",
            "system": "http://unitsofmeasure.org",
            "code": "/min",
        },
        "note": [{"text": "Note about Peterqq"}],
        **extra,
    }
    if subject is not None:
        resource["subject"] = {"reference": subject, "display": f"{GIVEN} {FAMILY}"}
    return resource


def blood_pressure(resource_id: str = "bp-1", subject: str = "Patient/pt-1") -> Resource:
    def component(code: str, display: str, value: float) -> dict[str, Any]:
        quantity = {"value": value, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}
        return {"code": concept(LOINC, code, display), "valueQuantity": quantity}

    resource = observation(resource_id, subject, code=concept(LOINC, "85354-9", "Blood pressure panel"))
    del resource["valueQuantity"]
    resource["component"] = [
        component("8480-6", "Systolic blood pressure", 107),
        component("8462-4", "Diastolic blood pressure", 60),
    ]
    return resource


def condition(resource_id: str = "cond-1", subject: str | None = "Patient/pt-1", **extra: Any) -> Resource:
    resource: Resource = {
        "resourceType": "Condition",
        "id": resource_id,
        "clinicalStatus": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}
            ]
        },
        "code": concept(SNOMED, "59621000", "Essential hypertension (disorder)"),
        "onsetDateTime": "2019-04",
        "recordedDate": "2019-04-02T09:00:00Z",
        **extra,
    }
    if subject is not None:
        resource["subject"] = {"reference": subject}
    return resource


def encounter(resource_id: str = "enc-1", subject: str = "Patient/pt-1") -> Resource:
    return {
        "resourceType": "Encounter",
        "id": resource_id,
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "type": [concept(SNOMED, "185349003", "Encounter for check up (procedure)")],
        "subject": {"reference": subject},
        "period": {"start": "2019-04-01T10:00:00+02:00", "end": "2019-04-01T10:30:00+02:00"},
    }


def organization(resource_id: str = "org-1") -> Resource:
    return {
        "resourceType": "Organization",
        "id": resource_id,
        "name": "Synthetic General Hospital",
        "telecom": [{"system": "phone", "value": PHONE}],
        "address": [{"line": [STREET], "city": CITY}],
    }


def ndjson(resources: Iterable[Resource | str | bytes]) -> bytes:
    """One line per item: resources as compact JSON, str/bytes items as they are (for broken lines)."""
    lines = []
    for item in resources:
        if isinstance(item, bytes):
            lines.append(item)
        elif isinstance(item, str):
            lines.append(item.encode())
        else:
            lines.append(json.dumps(item, separators=(",", ":"), ensure_ascii=False).encode())
    return b"".join(line + b"\n" for line in lines)


def write(path: Path, data: bytes, *, compress: bool = False) -> Path:
    path.write_bytes(gzip.compress(data, mtime=0) if compress else data)
    return path


def bundle(
    entries: Iterable[Resource | dict[str, Any]],
    bundle_type: str = "transaction",
    *,
    as_entries: bool = False,
) -> Resource:
    """A Synthea-style Bundle: fullUrl urn:uuid:<id> and a POST request per entry.

    With `as_entries`, the items are whole entries (for broken ones) instead of resources.
    """
    made = []
    for item in entries:
        if as_entries:
            made.append(item)
            continue
        made.append(
            {
                "fullUrl": f"urn:uuid:{item.get('id', 'x')}",
                "resource": item,
                "request": {"method": "POST", "url": item.get("resourceType", "")},
            }
        )
    return {"resourceType": "Bundle", "type": bundle_type, "entry": made}


def pretty(document: Resource) -> bytes:
    """As Synthea writes a Bundle file: indented JSON."""
    return json.dumps(document, indent=2, ensure_ascii=False).encode()
