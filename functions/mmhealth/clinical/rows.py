"""One FHIR R4 resource (a plain dict) -> rows of its `clinical.<table>` (lakehouse/clinical_tables.py).

A row is a tuple in the schema's column order; timestamps are microseconds since the epoch (UTC) and
dates are days since the epoch, which Arrow takes as they are. Row builders read only the elements their
columns need, through the checked readers of `values`, so a malformed element that would feed a column
raises `ShapeError` (-> "invalid-resource") and a resource without the Patient it belongs to raises
`MissingReference` (-> "missing-reference"); either way the resource gives no row at all.

Never read: names, addresses, telecom, contacts, photos, notes, narrative text. `scrubbed` removes the
same elements from the raw JSON kept for types without a table (`clinical.other_resource`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from mmhealth.clinical.values import (
    JOIN,
    NO_CODE,
    UCUM,
    Code,
    JsonObject,
    References,
    ShapeError,
    boolean,
    calendar_day,
    coding,
    concept,
    concept_codes,
    first_concept,
    instant,
    integer,
    number,
    obj,
    objs,
    period,
    required_code,
    required_concept_code,
    text,
)

Row = tuple[Any, ...]
RowBuilder = Callable[[JsonObject, str, References], list[Row]]


class MissingReference(ValueError):
    """The resource does not say which Patient it belongs to (absent, or not a Patient)."""


def patient_of(resource: JsonObject, key: str, path: str, refs: References) -> str:
    """The Patient that resource[key] (subject or patient) names: its bare id, or, for a reference by
    identifier only or a conditional reference `Patient?identifier=system|value`, the identifier as
    `identifier:system|value` (identity resolution maps it to a person). Raises MissingReference."""
    value = obj(resource, key, path)
    if value is None:
        raise MissingReference(f"{path}.{key} is absent: the resource belongs to no patient")
    where = f"{path}.{key}"
    target = refs.target(resource, key, path)
    if target is None:
        literal = text(value, "reference", where)
        token = identifier_token(obj(value, "identifier", where), where) if literal is None else None
        token = token or (conditional_token(literal) if literal is not None else None)
        if token is not None:
            return token
        form = (
            "a reference that names no resource of the delivery (contained, or a conditional reference other "
            "than Patient?identifier=system|value)"
            if literal is not None
            else "no literal reference, and no identifier with both system and value"
        )
        raise MissingReference(f"{where} has {form}: no Patient to file the resource under")
    if target[0] not in (None, "Patient"):
        raise MissingReference(f"{where} refers to a {target[0]}, not a Patient")
    return target[1]


IDENTIFIER_PREFIX = "identifier:"  # a FHIR id never holds ':', so the two forms cannot collide


def identifier_token(identifier: JsonObject | None, path: str) -> str | None:
    """`identifier:system|value` for an Identifier with both, else None."""
    if identifier is None:
        return None
    system, value = (
        text(identifier, "system", f"{path}.identifier"),
        text(identifier, "value", f"{path}.identifier"),
    )
    return f"{IDENTIFIER_PREFIX}{system}|{value}" if system and value else None


def conditional_token(reference: str) -> str | None:
    """`identifier:system|value` for a conditional reference `Patient?identifier=system|value`, else None
    (other search parameters cannot be resolved without a FHIR server)."""
    if not reference.startswith("Patient?"):
        return None
    query = parse_qs(reference[len("Patient?") :], keep_blank_values=True)
    values = query.get("identifier", [])
    if len(query) != 1 or len(values) != 1 or "|" not in values[0]:
        return None
    system, value = values[0].split("|", 1)
    return f"{IDENTIFIER_PREFIX}{system}|{value}" if system and value else None


def last_updated(resource: JsonObject, path: str) -> int | None:
    """meta.lastUpdated (microseconds, UTC): the sender's version time of the resource, None when absent."""
    meta = obj(resource, "meta", path)
    return None if meta is None else instant(meta, "lastUpdated", f"{path}.meta")


# ------------------------------------------------------------------------------------------- Patient

_V2_IDENTIFIER_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0203"
# Government ids identify a person outside the care setting and join nothing in the lake: left out, like
# names and addresses. (Social security, driver's licence, passport, and the SSN's own systems.)
_NATIONAL_ID_TYPES = frozenset({"SS", "SB", "DL", "PPN", "TAX", "NI", "NIIP", "CZ"})
_NATIONAL_ID_SYSTEMS = frozenset({"http://hl7.org/fhir/sid/us-ssn", "urn:oid:2.16.840.1.113883.4.1"})


def patient(resource: JsonObject, path: str, refs: References) -> list[Row]:
    rid = resource["id"]
    deceased_flag = boolean(resource, "deceasedBoolean", path)
    deceased_at = instant(resource, "deceasedDateTime", path)
    deceased = True if deceased_at is not None else deceased_flag
    return [
        (
            rid,
            rid,
            required_code(resource, "gender", path),
            calendar_day(resource, "birthDate", path),
            deceased,
            deceased_at,
            *concept(resource, "maritalStatus", path),
            _identifiers(resource, path),
        )
    ]


def _identifiers(resource: JsonObject, path: str) -> str | None:
    kept = []
    for index, identifier in enumerate(objs(resource, "identifier", path)):
        where = f"{path}.identifier[{index}]"
        system, value = text(identifier, "system", where), text(identifier, "value", where)
        if value is None or system in _NATIONAL_ID_SYSTEMS:
            continue
        type_codes = {c.get("code") for c in objs(obj(identifier, "type", where) or {}, "coding", where)}
        if type_codes & _NATIONAL_ID_TYPES:
            continue
        kept.append(f"{system or ''}|{value}")
    return JOIN.join(kept) if kept else None


# ------------------------------------------------------------------------------------------ Encounter


def encounter(resource: JsonObject, path: str, refs: References) -> list[Row]:
    klass = obj(resource, "class", path)  # R4: one Coding
    start, end = period(resource, "period", path)
    return [
        (
            resource["id"],
            patient_of(resource, "subject", path, refs),
            required_code(resource, "status", path),
            coding(klass, f"{path}.class")[1],
            *first_concept(resource, "type", path),
            *first_concept(resource, "reasonCode", path),
            start,
            end,
        )
    ]


# ------------------------------------------------------------------------------------------ Condition


def condition(resource: JsonObject, path: str, refs: References) -> list[Row]:
    return [
        (
            resource["id"],
            patient_of(resource, "subject", path, refs),
            refs.id_of(resource, "encounter", path, "Encounter"),
            *concept(resource, "code", path),
            concept_codes(resource, "category", path),
            required_concept_code(resource, "clinicalStatus", path),
            required_concept_code(resource, "verificationStatus", path),
            _instant_or_start(resource, "onset", path),
            _instant_or_start(resource, "abatement", path),
            instant(resource, "recordedDate", path),
        )
    ]


def _instant_or_start(resource: JsonObject, choice: str, path: str) -> int | None:
    """A [x] element given as dateTime or Period (its start); other types (Age, string, ...) give None."""
    at = instant(resource, f"{choice}DateTime", path)
    if at is None:
        at = instant(resource, f"{choice}Instant", path)
    return at if at is not None else period(resource, f"{choice}Period", path)[0]


# ---------------------------------------------------------------------------------------- Observation


def observation(resource: JsonObject, path: str, refs: References) -> list[Row]:
    """One row per observed value: a panel with components gives a row per component (panel_code set),
    plus one for the panel itself only when it carries a value of its own."""
    head = (
        resource["id"],
        patient_of(resource, "subject", path, refs),
        refs.id_of(resource, "encounter", path, "Encounter"),
        required_code(resource, "status", path),
        concept_codes(resource, "category", path),
    )
    tail = (_instant_or_start(resource, "effective", path), instant(resource, "issued", path))
    code = concept(resource, "code", path)
    components = objs(resource, "component", path)
    own_value = _observed_value(resource, path)
    rows = []
    if not components or own_value != _NO_VALUE:
        rows.append((*head, *code, None, *own_value, *tail))
    for index, component in enumerate(components):
        where = f"{path}.component[{index}]"
        rows.append(
            (*head, *concept(component, "code", where), code[1], *_observed_value(component, where), *tail)
        )
    return rows


# value_quantity, value_unit, value_concept (system, code, display), value_string
_NO_VALUE: tuple[Any, ...] = (None, None, *NO_CODE, None)


def _observed_value(element: JsonObject, path: str) -> tuple[Any, ...]:
    """The value[x] of an Observation or component. Period, Range, Ratio, SampledData: not flattened."""
    quantity = obj(element, "valueQuantity", path)
    if quantity is not None:
        return (number(quantity, "value", f"{path}.valueQuantity"), _unit(quantity, path), *NO_CODE, None)
    if element.get("valueCodeableConcept") is not None:
        return (None, None, *concept(element, "valueCodeableConcept", path), None)
    count = integer(element, "valueInteger", path)
    if count is not None:
        return (float(count), None, *NO_CODE, None)
    for key in ("valueString", "valueDateTime", "valueTime"):
        value = text(element, key, path)
        if value is not None:
            return (None, None, *NO_CODE, value)
    flag = boolean(element, "valueBoolean", path)
    if flag is not None:
        return (None, None, *NO_CODE, "true" if flag else "false")
    return _NO_VALUE


def _unit(quantity: JsonObject, path: str) -> str | None:
    """The UCUM code when the quantity gives one, else its unit text."""
    where = f"{path}.valueQuantity"
    code, unit = text(quantity, "code", where), text(quantity, "unit", where)
    system = text(quantity, "system", where)
    return code if code is not None and (system == UCUM or unit is None) else unit


# ------------------------------------------------------------------------ Procedure, Medication, ...


def procedure(resource: JsonObject, path: str, refs: References) -> list[Row]:
    start, end = period(resource, "performedPeriod", path)
    performed = instant(resource, "performedDateTime", path)
    return [
        (
            resource["id"],
            patient_of(resource, "subject", path, refs),
            refs.id_of(resource, "encounter", path, "Encounter"),
            required_code(resource, "status", path),
            *concept(resource, "code", path),
            performed if performed is not None else start,
            end,
        )
    ]


def medication_request(resource: JsonObject, path: str, refs: References) -> list[Row]:
    return [
        (
            resource["id"],
            patient_of(resource, "subject", path, refs),
            refs.id_of(resource, "encounter", path, "Encounter"),
            required_code(resource, "status", path),
            required_code(resource, "intent", path),
            *_medication(resource, path),
            instant(resource, "authoredOn", path),
        )
    ]


def _medication(resource: JsonObject, path: str) -> Code:
    """medicationCodeableConcept, or the code of the contained Medication a `#id` reference names.

    A reference to a Medication resource elsewhere gives no code: that resource is its own row source.
    """
    if resource.get("medicationCodeableConcept") is not None:
        return concept(resource, "medicationCodeableConcept", path)
    reference = obj(resource, "medicationReference", path)
    local = text(reference, "reference", f"{path}.medicationReference") if reference else None
    if local is None or not local.startswith("#"):
        return NO_CODE
    for index, contained in enumerate(objs(resource, "contained", path)):
        if contained.get("resourceType") == "Medication" and contained.get("id") == local[1:]:
            return concept(contained, "code", f"{path}.contained[{index}]")
    return NO_CODE


def immunization(resource: JsonObject, path: str, refs: References) -> list[Row]:
    return [
        (
            resource["id"],
            patient_of(resource, "patient", path, refs),
            refs.id_of(resource, "encounter", path, "Encounter"),
            required_code(resource, "status", path),
            *concept(resource, "vaccineCode", path),
            instant(resource, "occurrenceDateTime", path),  # occurrenceString (free text): not a time
        )
    ]


def diagnostic_report(resource: JsonObject, path: str, refs: References) -> list[Row]:
    return [
        (
            resource["id"],
            patient_of(resource, "subject", path, refs),
            refs.id_of(resource, "encounter", path, "Encounter"),
            required_code(resource, "status", path),
            concept_codes(resource, "category", path),
            *concept(resource, "code", path),
            _instant_or_start(resource, "effective", path),
            instant(resource, "issued", path),
            refs.ids_of(resource, "result", path, "Observation"),
        )
    ]


# ImagingStudy.identifier carrying the DICOM Study Instance UID: value "urn:oid:<uid>", system
# urn:dicom:uid (R4's own examples) or urn:ietf:rfc:3986 (the URI system; Synthea writes it).
_STUDY_UID_SYSTEMS = frozenset({"urn:dicom:uid", "urn:ietf:rfc:3986", None})
_OID = "urn:oid:"


def imaging_study(resource: JsonObject, path: str, refs: References) -> list[Row]:
    modalities = [
        coding(m, f"{path}.modality[{i}]")[1] for i, m in enumerate(objs(resource, "modality", path))
    ]
    series = objs(resource, "series", path)
    series_uids = [text(s, "uid", f"{path}.series[{i}]") for i, s in enumerate(series)]
    return [
        (
            resource["id"],
            patient_of(resource, "subject", path, refs),
            refs.id_of(resource, "encounter", path, "Encounter"),
            required_code(resource, "status", path),
            _study_instance_uid(resource, path),
            instant(resource, "started", path),
            JOIN.join(dict.fromkeys(m for m in modalities if m)) or None,
            integer(resource, "numberOfSeries", path),
            integer(resource, "numberOfInstances", path),
            JOIN.join(uid for uid in series_uids if uid) or None,
        )
    ]


def _study_instance_uid(resource: JsonObject, path: str) -> str | None:
    for index, identifier in enumerate(objs(resource, "identifier", path)):
        where = f"{path}.identifier[{index}]"
        value = text(identifier, "value", where)
        if (
            value is not None
            and value.startswith(_OID)
            and text(identifier, "system", where) in _STUDY_UID_SYSTEMS
        ):
            return value[len(_OID) :]
    return None


def claim(resource: JsonObject, path: str, refs: References) -> list[Row]:
    billable_start, billable_end = period(resource, "billablePeriod", path)
    total = obj(resource, "total", path) or {}
    return [
        (
            resource["id"],
            patient_of(resource, "patient", path, refs),
            required_code(resource, "status", path),
            *concept(resource, "type", path),
            required_code(resource, "use", path),
            instant(resource, "created", path),
            billable_start,
            billable_end,
            number(total, "value", f"{path}.total"),
            text(total, "currency", f"{path}.total"),
        )
    ]


# Resource type -> (table, row builder). Every other R4 type goes to clinical.other_resource.
TABLE_OF: dict[str, tuple[str, RowBuilder]] = {
    "Patient": ("clinical.patient", patient),
    "Encounter": ("clinical.encounter", encounter),
    "Condition": ("clinical.condition", condition),
    "Observation": ("clinical.observation", observation),
    "Procedure": ("clinical.procedure", procedure),
    "MedicationRequest": ("clinical.medication_request", medication_request),
    "Immunization": ("clinical.immunization", immunization),
    "DiagnosticReport": ("clinical.diagnostic_report", diagnostic_report),
    "ImagingStudy": ("clinical.imaging_study", imaging_study),
    "Claim": ("clinical.claim", claim),
}
OTHER_TABLE = "clinical.other_resource"


# ----------------------------------------------------------------------------------- other resources


def other_resource(resource: JsonObject, refs: References) -> Row:
    """A resource of a type without a table: its id, type, Patient (when subject/patient names one) and
    its JSON with personal elements scrubbed. Never raises on the resource's shape: nothing is read."""
    patient_id = None
    for key in ("subject", "patient"):
        value = resource.get(key)
        reference = value.get("reference") if type(value) is dict else None
        target = refs.resolve(reference) if type(reference) is str else None
        if target is not None and target[0] in (None, "Patient"):
            patient_id = target[1]
            break
    raw = json.dumps(scrubbed(resource), ensure_ascii=False, separators=(",", ":"))
    return resource["id"], resource["resourceType"], patient_id, raw


# Elements that carry a person's identity or free text about them, whichever resource they are in.
_PERSONAL_KEYS = frozenset(
    {"address", "telecom", "contact", "photo", "note", "valueAddress", "valueHumanName", "valueContactPoint",
     "valueAnnotation"}
)  # fmt: skip


def scrubbed(value: Any) -> Any:
    """A copy of a resource without HumanName (`name` as objects), Address, ContactPoint, contacts,
    photos, Annotations (notes), Narrative (`text` with a `div`), Reference.display (`display` beside a
    `reference`) and inline attachment data (`data` beside a `contentType`).

    Kept: strings that are names of things, not people (Organization.name, CodeSystem.name).
    """
    if type(value) is list:
        return [scrubbed(item) for item in value]
    if type(value) is not dict:
        return value
    out = {}
    for key, item in value.items():
        if key in _PERSONAL_KEYS or _is_personal(key, item, value):
            continue
        out[key] = scrubbed(item) if type(item) in (dict, list) else item
    return out


def _is_personal(key: str, item: Any, parent: dict[str, Any]) -> bool:
    if key == "name":
        return type(item) in (dict, list) and not (type(item) is list and all(type(i) is str for i in item))
    if key == "text":
        return type(item) is dict and "div" in item
    if key == "display":
        return "reference" in parent
    if key == "data":
        return "contentType" in parent
    return False


__all__ = [
    "OTHER_TABLE",
    "TABLE_OF",
    "MissingReference",
    "Row",
    "ShapeError",
    "last_updated",
    "other_resource",
    "scrubbed",
]
