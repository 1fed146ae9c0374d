"""Arrow schemas of the flattened FHIR R4 tables (`clinical.<resource>`), the clinical modality's contract.

Conventions, the same in every table:
- `resource_id` is the resource's `id`; `patient_id` is the subject/patient reference resolved to a bare
  Patient id whatever its form (`Patient/x`, `urn:uuid:x`, a Bundle fullUrl), or `identifier:system|value`
  for a reference by identifier only or `Patient?identifier=...` (identity.links resolves both kinds to a
  person); `encounter_id` is resolved like a literal patient reference.
- A code keeps system + code + display (`<x>_system`, `<x>_code`, `<x>_display`): the first coding of the
  CodeableConcept, preferring SNOMED CT / LOINC / RxNorm / CVX when several are given.
- FHIR dateTime/date/instant values (which may be partial: "2019", "2019-04") become UTC timestamps at the
  first instant they denote; a value without a time zone is read as UTC.
- `last_updated`, `source_position` and `delivered_at` order the versions of a resource delivered more than
  once: one row (set) per resource id is kept by lakehouse.versions' rule.
- No names, addresses, telecom or free-text notes are flattened: the lakehouse keeps what analysis needs,
  and the original resource stays untouched in the landing bucket.
"""

from __future__ import annotations

import pyarrow as pa

from mmhealth.lakehouse.schemas import TS, VERSIONED_LINEAGE

# Every table's version columns (lakehouse.versions): the resource's meta.lastUpdated and its position in
# the delivered file (0-based, in reading order: NDJSON lines, Bundle entries), then the lineage.
VERSION = [pa.field("last_updated", TS), pa.field("source_position", pa.int64(), nullable=False)]


def _code(prefix: str) -> list[pa.Field]:
    return [pa.field(f"{prefix}_system", pa.string()), pa.field(f"{prefix}_code", pa.string()),
            pa.field(f"{prefix}_display", pa.string())]  # fmt: skip


def _table(*fields: pa.Field, patient: bool = True, encounter: bool = True) -> pa.Schema:
    head = [pa.field("resource_id", pa.string(), nullable=False)]
    if patient:
        head.append(pa.field("patient_id", pa.string(), nullable=False))
    if encounter:
        head.append(pa.field("encounter_id", pa.string()))
    return pa.schema([*head, *fields, *VERSION, *VERSIONED_LINEAGE])


CLINICAL_TABLES: dict[str, pa.Schema] = {
    "clinical.patient": pa.schema(
        [
            pa.field("resource_id", pa.string(), nullable=False),
            pa.field("patient_id", pa.string(), nullable=False),  # = resource_id, for uniform joins
            pa.field("gender", pa.string()),
            pa.field("birth_date", pa.date32()),
            pa.field("deceased", pa.bool_()),
            pa.field("deceased_at", TS),
            *_code("marital_status"),
            pa.field("identifiers", pa.string()),  # "system|value" pairs joined by " ; " (MRN etc.)
            # A Bundle entry's conditional create (request.ifNoneExist=identifier=system|value): "system|value"
            pa.field("if_none_exist", pa.string()),
            *VERSION,
            *VERSIONED_LINEAGE,
        ]
    ),
    "clinical.encounter": _table(
        pa.field("status", pa.string()),
        pa.field("class_code", pa.string()),
        *_code("type"),
        *_code("reason"),
        pa.field("period_start", TS),
        pa.field("period_end", TS),
        encounter=False,
    ),
    "clinical.condition": _table(
        *_code("code"),
        pa.field("category", pa.string()),
        pa.field("clinical_status", pa.string()),
        pa.field("verification_status", pa.string()),
        pa.field("onset_at", TS),
        pa.field("abatement_at", TS),
        pa.field("recorded_at", TS),
    ),
    # One row per observed value: a panel with components (blood pressure) gives one row per component,
    # with the component's code in code_* and the panel's code in panel_code.
    "clinical.observation": _table(
        pa.field("status", pa.string()),
        pa.field("category", pa.string()),
        *_code("code"),
        pa.field("panel_code", pa.string()),
        pa.field("value_quantity", pa.float64()),
        pa.field("value_unit", pa.string()),  # UCUM code when given, else the unit text
        *_code("value_concept"),
        pa.field("value_string", pa.string()),
        pa.field("effective_at", TS),
        pa.field("issued_at", TS),
    ),
    "clinical.procedure": _table(
        pa.field("status", pa.string()),
        *_code("code"),
        pa.field("performed_start", TS),
        pa.field("performed_end", TS),
    ),
    "clinical.medication_request": _table(
        pa.field("status", pa.string()),
        pa.field("intent", pa.string()),
        *_code("medication"),
        pa.field("authored_at", TS),
    ),
    "clinical.immunization": _table(
        pa.field("status", pa.string()),
        *_code("vaccine"),
        pa.field("occurrence_at", TS),
    ),
    "clinical.diagnostic_report": _table(
        pa.field("status", pa.string()),
        pa.field("category", pa.string()),
        *_code("code"),
        pa.field("effective_at", TS),
        pa.field("issued_at", TS),
        pa.field("result_ids", pa.string()),  # referenced Observation ids joined by " ; "
    ),
    "clinical.imaging_study": _table(
        pa.field("status", pa.string()),
        pa.field("study_instance_uid", pa.string()),  # from identifier urn:oid:<uid> (or urn:dicom:uid)
        pa.field("started_at", TS),
        pa.field("modalities", pa.string()),  # e.g. "MR"; several joined by " ; "
        pa.field("number_of_series", pa.int32()),
        pa.field("number_of_instances", pa.int32()),
        pa.field("series_uids", pa.string()),  # joined by " ; "
    ),
    "clinical.claim": _table(
        pa.field("status", pa.string()),
        *_code("type"),
        pa.field("use", pa.string()),
        pa.field("created_at", TS),
        pa.field("billable_start", TS),
        pa.field("billable_end", TS),
        pa.field("total_value", pa.float64()),
        pa.field("total_currency", pa.string()),
        encounter=False,
    ),
    # Valid resources of types without a flattened table: kept raw so nothing is lost, and reported.
    "clinical.other_resource": pa.schema(
        [
            pa.field("resource_id", pa.string(), nullable=False),
            pa.field("resource_type", pa.string(), nullable=False),
            pa.field("patient_id", pa.string()),
            pa.field("resource_json", pa.string(), nullable=False),
            *VERSION,
            *VERSIONED_LINEAGE,
        ]
    ),
}

SNOMED = "http://snomed.info/sct"
