"""Test data for the feature tests: a synthetic cohort's FHIR NDJSON as `clinical.*` Arrow tables, and edits.

`clinical_tables` uses the pipeline's flattener (mmhealth.clinical.fhir.flatten_fhir) when it exists; until
then a minimal flattener below covers what the feature code reads, in the CLINICAL_TABLES schemas, for the
resource shapes the generator writes (components of a panel become one row each, references of either form
resolve to bare ids, dateTimes become UTC timestamps).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from mmhealth.features.outcomes import PRIMARY_CODES
from mmhealth.lakehouse.clinical_tables import CLINICAL_TABLES

Resource = dict[str, Any]
LINEAGE = {
    "source_key": "incoming/test/clinical",
    "object_id": "test-object",
    "run_id": "test-run",
    "source_position": 0,
}
TS = pa.timestamp("us", tz="UTC")


def clinical_tables(clinical_dir: Path) -> dict[str, pa.Table]:
    """Every `clinical.*` table of the NDJSON files in `clinical_dir` (empty tables for absent types)."""
    try:
        from mmhealth.clinical.fhir import flatten_fhir  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return _minimal_tables(clinical_dir)
    parts: dict[str, list[pa.Table]] = {name: [] for name in CLINICAL_TABLES}
    for path in sorted(clinical_dir.glob("*.ndjson")):
        if (
            path.stat().st_size == 0
        ):  # the generator writes every type's file; the pipeline refuses empty ones
            continue
        result = flatten_fhir(
            path, source_key=f"incoming/test/{path.name}", object_id=path.stem, run_id="test"
        )
        for name, table in result.tables.items():
            parts[name].append(table)
    return {
        name: pa.concat_tables(tables).cast(CLINICAL_TABLES[name])
        if tables
        else CLINICAL_TABLES[name].empty_table()
        for name, tables in parts.items()
    }


# ---------------------------------------------------------------------------------------------------------
# Edits used by the leakage tests: pure functions from tables to tables
# ---------------------------------------------------------------------------------------------------------


def is_label_record(conditions: pa.Table) -> pa.ChunkedArray:
    return pc.is_in(conditions["code_code"], value_set=pa.array(sorted(PRIMARY_CODES.values())))


def with_label_records_dated(tables: dict[str, pa.Table], when: dt.datetime) -> dict[str, pa.Table]:
    """Every label-defining Condition's onset and recorded dates set to `when`."""
    conditions = tables["clinical.condition"]
    label = is_label_record(conditions)
    moved = pa.scalar(when, TS)
    for column in ("onset_at", "recorded_at"):
        i = conditions.schema.get_field_index(column)
        conditions = conditions.set_column(i, column, pc.if_else(label, moved, conditions[column]))
    return {**tables, "clinical.condition": conditions}


def without_label_records(tables: dict[str, pa.Table]) -> dict[str, pa.Table]:
    conditions = tables["clinical.condition"]
    return {**tables, "clinical.condition": conditions.filter(pc.invert(is_label_record(conditions)))}


def with_rows(tables: dict[str, pa.Table], name: str, *rows: dict[str, Any]) -> dict[str, pa.Table]:
    """`rows` (partial: missing columns are null, lineage filled in) appended to table `name`."""
    schema = CLINICAL_TABLES[name]
    full = [{f.name: row.get(f.name, LINEAGE.get(f.name)) for f in schema} for row in rows]
    return {**tables, name: pa.concat_tables([tables[name], pa.Table.from_pylist(full, schema=schema)])}


def ldl_observation(patient_id: str, effective: dt.datetime, value: float, **extra: Any) -> dict[str, Any]:
    return {
        "resource_id": f"test-ldl-{patient_id}-{effective.isoformat()}-{value}",
        "patient_id": patient_id,
        "status": "final",
        "category": "laboratory",
        "code_system": "http://loinc.org",
        "code_code": "18262-6",
        "value_quantity": value,
        "value_unit": "mg/dL",
        "effective_at": effective,
        "issued_at": effective + dt.timedelta(hours=2),
        **extra,
    }


# ---------------------------------------------------------------------------------------------------------
# The minimal flattener
# ---------------------------------------------------------------------------------------------------------

PREFERRED_SYSTEMS = (
    "http://snomed.info/sct",
    "http://loinc.org",
    "http://www.nlm.nih.gov/research/umls/rxnorm",
)


def _id(reference: Resource | None) -> str | None:
    if not reference or "reference" not in reference:
        return None
    return str(reference["reference"]).removeprefix("urn:uuid:").rsplit("/", 1)[-1]


def _code(concept: Resource | None, prefix: str) -> dict[str, Any]:
    codings = (concept or {}).get("coding") or [{}]
    coding = next((c for c in codings if c.get("system") in PREFERRED_SYSTEMS), codings[0])
    return {
        f"{prefix}_system": coding.get("system"),
        f"{prefix}_code": coding.get("code"),
        f"{prefix}_display": coding.get("display"),
    }


def _status(concept: Resource | None) -> str | None:
    return _code(concept, "x")["x_code"]


def _ts(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    if len(value) == 4:
        value += "-01-01"
    elif len(value) == 7:
        value += "-01"
    moment = dt.datetime.fromisoformat(value)
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)


def _refs(r: Resource, subject: str = "subject") -> dict[str, Any]:
    return {
        "resource_id": r["id"],
        "patient_id": _id(r.get(subject)),
        "encounter_id": _id(r.get("encounter")),
    }


def _patient(r: Resource) -> list[dict[str, Any]]:
    birth = r.get("birthDate")
    return [
        {
            "resource_id": r["id"],
            "patient_id": r["id"],
            "gender": r.get("gender"),
            "birth_date": dt.date.fromisoformat(birth) if birth else None,
            "deceased": r.get("deceasedBoolean", "deceasedDateTime" in r),
            "deceased_at": _ts(r.get("deceasedDateTime")),
        }
    ]


def _encounter(r: Resource) -> list[dict[str, Any]]:
    period = r.get("period", {})
    return [
        {
            "resource_id": r["id"],
            "patient_id": _id(r.get("subject")),
            "status": r.get("status"),
            "class_code": r.get("class", {}).get("code"),
            **_code((r.get("type") or [None])[0], "type"),
            **_code((r.get("reasonCode") or [None])[0], "reason"),
            "period_start": _ts(period.get("start")),
            "period_end": _ts(period.get("end")),
        }
    ]


def _condition(r: Resource) -> list[dict[str, Any]]:
    return [
        {
            **_refs(r),
            **_code(r.get("code"), "code"),
            "category": _status((r.get("category") or [None])[0]),
            "clinical_status": _status(r.get("clinicalStatus")),
            "verification_status": _status(r.get("verificationStatus")),
            "onset_at": _ts(r.get("onsetDateTime")),
            "abatement_at": _ts(r.get("abatementDateTime")),
            "recorded_at": _ts(r.get("recordedDate")),
        }
    ]


def _observation(r: Resource) -> list[dict[str, Any]]:
    head = {
        **_refs(r),
        "status": r.get("status"),
        "category": _status((r.get("category") or [None])[0]),
        "effective_at": _ts(r.get("effectiveDateTime")),
        "issued_at": _ts(r.get("issued")),
    }

    def value(part: Resource) -> dict[str, Any]:
        quantity = part.get("valueQuantity") or {}
        return {
            "value_quantity": quantity.get("value"),
            "value_unit": quantity.get("code") or quantity.get("unit"),
            **_code(part.get("valueCodeableConcept"), "value_concept"),
            "value_string": part.get("valueString"),
        }

    if "component" in r:
        panel = _code(r.get("code"), "code")["code_code"]
        return [
            {**head, **_code(c.get("code"), "code"), "panel_code": panel, **value(c)} for c in r["component"]
        ]
    return [{**head, **_code(r.get("code"), "code"), **value(r)}]


def _medication_request(r: Resource) -> list[dict[str, Any]]:
    return [
        {
            **_refs(r),
            "status": r.get("status"),
            "intent": r.get("intent"),
            **_code(r.get("medicationCodeableConcept"), "medication"),
            "authored_at": _ts(r.get("authoredOn")),
        }
    ]


def _procedure(r: Resource) -> list[dict[str, Any]]:
    period = r.get("performedPeriod", {})
    start = period.get("start") or r.get("performedDateTime")
    return [
        {
            **_refs(r),
            "status": r.get("status"),
            **_code(r.get("code"), "code"),
            "performed_start": _ts(start),
            "performed_end": _ts(period.get("end")),
        }
    ]


def _immunization(r: Resource) -> list[dict[str, Any]]:
    return [
        {
            **_refs(r, subject="patient"),
            "status": r.get("status"),
            **_code(r.get("vaccineCode"), "vaccine"),
            "occurrence_at": _ts(r.get("occurrenceDateTime")),
        }
    ]


FLATTENERS: dict[str, tuple[str, Callable[[Resource], list[dict[str, Any]]]]] = {
    "Patient": ("clinical.patient", _patient),
    "Encounter": ("clinical.encounter", _encounter),
    "Condition": ("clinical.condition", _condition),
    "Observation": ("clinical.observation", _observation),
    "MedicationRequest": ("clinical.medication_request", _medication_request),
    "Procedure": ("clinical.procedure", _procedure),
    "Immunization": ("clinical.immunization", _immunization),
}


def _minimal_tables(clinical_dir: Path) -> dict[str, pa.Table]:
    tables = {name: schema.empty_table() for name, schema in CLINICAL_TABLES.items()}
    for resource_type, (name, flatten) in FLATTENERS.items():
        path = clinical_dir / f"{resource_type}.ndjson"
        if not path.exists():
            continue
        schema = CLINICAL_TABLES[name]
        rows = []
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                rows += flatten(json.loads(line))
        full = [{f.name: row.get(f.name, LINEAGE.get(f.name)) for f in schema} for row in rows]
        tables[name] = pa.Table.from_pylist(full, schema=schema)
    return tables
