"""Readers of FHIR R4 JSON values on plain dicts: shapes, codes, instants and references.

Each reader takes the parent object, the element's key and the parent's path, checks the JSON type of what
it reads and returns a plain Python value for a column. A wrong type (a string where an object must be, a
number where a string must be, an impossible date) raises `ShapeError` naming the element's path, e.g.
`Observation.component[1].valueQuantity.value`; no value is coerced. The path is only built on error, so
the happy path costs one dict lookup and one isinstance per element read.

A JSON null is read as absent. FHIR forbids nulls, but they carry no value to misread, and exporters
that emit them are common; the strict validation mode rejects them where the R4 models do.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from mmhealth.clinical import r4

JsonObject = dict[str, Any]
Code = tuple[str | None, str | None, str | None]  # system, code, display
NO_CODE: Code = (None, None, None)

SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CVX = "http://hl7.org/fhir/sid/cvx"
UCUM = "http://unitsofmeasure.org"
# When a CodeableConcept carries several codings, the first one from these systems is the one kept: they
# are what the features and labels are defined in.
PREFERRED_SYSTEMS = frozenset({SNOMED, LOINC, RXNORM, CVX})

JOIN = " ; "  # separator of multi-valued string columns (see the schemas)


class ShapeError(ValueError):
    """An element has the wrong JSON type or an impossible value. `path` names it; no value is quoted."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


def json_kind(value: object) -> str:
    """'a string', 'an object', ...: how an error names a value without quoting it."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "null"


def _wrong(path: str, key: str, expected: str, value: object) -> ShapeError:
    return ShapeError(f"{path}.{key}", f"expected {expected}, got {json_kind(value)}")


# ------------------------------------------------------------------------------------------- structure


def obj(parent: JsonObject, key: str, path: str) -> JsonObject | None:
    """A complex element (object), or None when absent."""
    value = parent.get(key)
    if value is None or type(value) is dict:
        return value
    raise _wrong(path, key, "an object", value)


def objs(parent: JsonObject, key: str, path: str) -> list[JsonObject]:
    """A repeating complex element (an array of objects); [] when absent."""
    value = parent.get(key)
    if value is None:
        return []
    if type(value) is not list:
        raise _wrong(path, key, "an array", value)
    for index, item in enumerate(value):
        if type(item) is not dict:
            raise _wrong(path, f"{key}[{index}]", "an object", item)
    return value


def text(parent: JsonObject, key: str, path: str) -> str | None:
    """A string primitive (string, code, uri, id, ...), or None when absent."""
    value = parent.get(key)
    if value is None or type(value) is str:
        return value
    raise _wrong(path, key, "a string", value)


def number(parent: JsonObject, key: str, path: str) -> float | None:
    """A decimal or integer primitive as a float (JSON true/false is not a number)."""
    value = parent.get(key)
    if value is None:
        return None
    if type(value) is float or type(value) is int:
        return float(value)
    raise _wrong(path, key, "a number", value)


def integer(parent: JsonObject, key: str, path: str) -> int | None:
    value = parent.get(key)
    if value is None or type(value) is int:
        return value
    raise _wrong(path, key, "an integer", value)


def boolean(parent: JsonObject, key: str, path: str) -> bool | None:
    value = parent.get(key)
    if value is None or type(value) is bool:
        return value
    raise _wrong(path, key, "true or false", value)


# ---------------------------------------------------------------------------------------------- codes


def coding(value: JsonObject | None, path: str) -> Code:
    """system, code and display of a Coding."""
    if value is None:
        return NO_CODE
    return text(value, "system", path), text(value, "code", path), text(value, "display", path)


def concept(parent: JsonObject, key: str, path: str) -> Code:
    """The kept coding of a CodeableConcept: the first from a preferred system, else the first one.

    The display falls back to the concept's `text` (FHIR: "plain text representation of the concept"),
    so a concept given only as text keeps its label.
    """
    value = obj(parent, key, path)
    if value is None:
        return NO_CODE
    return _chosen_coding(value, f"{path}.{key}")


def first_concept(parent: JsonObject, key: str, path: str) -> Code:
    """The kept coding of the first CodeableConcept of a repeating element (Encounter.type, ...)."""
    concepts = objs(parent, key, path)
    return _chosen_coding(concepts[0], f"{path}.{key}[0]") if concepts else NO_CODE


def concept_codes(parent: JsonObject, key: str, path: str) -> str | None:
    """The kept code of each CodeableConcept of a repeating element, joined (a category column)."""
    codes = []
    for index, value in enumerate(objs(parent, key, path)):
        code = _chosen_coding(value, f"{path}.{key}[{index}]")[1]
        if code is not None and code not in codes:
            codes.append(code)
    return JOIN.join(codes) if codes else None


def _chosen_coding(value: JsonObject, path: str) -> Code:
    codings = objs(value, "coding", path)
    chosen = 0
    if len(codings) > 1:
        chosen = next((i for i, c in enumerate(codings) if c.get("system") in PREFERRED_SYSTEMS), 0)
    label = text(value, "text", path)
    if not codings:
        return None, None, label
    system, code, display = coding(codings[chosen], f"{path}.coding[{chosen}]")
    return system, code, display if display is not None else label


def required_code(parent: JsonObject, key: str, path: str) -> str | None:
    """A `code` element with a required R4 binding (r4.REQUIRED_BINDINGS); a code outside its value set
    raises ShapeError naming the value set (the value itself is not quoted: it could be anything)."""
    value = text(parent, key, path)
    _check_binding(value, f"{path}.{key}")
    return value


def required_concept_code(parent: JsonObject, key: str, path: str) -> str | None:
    """The code of a CodeableConcept with a required binding (Condition's statuses), checked like
    `required_code` when its coding is from the value set's own code system (or names none)."""
    system, code, _ = concept(parent, key, path)
    where = f"{path}.{key}"
    name = r4.REQUIRED_BINDINGS[where][0]
    if system is None or system == f"{r4.TERMINOLOGY}{name}":
        _check_binding(code, where)
    return code


def _check_binding(value: str | None, where: str) -> None:
    name, codes = r4.REQUIRED_BINDINGS[where]
    if value is not None and value not in codes:
        raise ShapeError(where, f"not a code of the required R4 value set {name}")


# ---------------------------------------------------------------------------------------------- time

# FHIR dateTime/instant, partial forms included. Seconds may be left out (hh:mm) and a time without a
# zone is read as UTC: both are outside R4's regex, but unambiguous, and exporters write them.
_DATETIME = re.compile(
    r"(\d{4})(?:-(\d\d)(?:-(\d\d)(?:T(\d\d):(\d\d)(?::(\d\d)(?:\.(\d{1,9}))?)?(Z|[+-]\d\d:\d\d)?)?)?)?"
)
_DATE = re.compile(r"(\d{4})(?:-(\d\d)(?:-(\d\d))?)?")
_EPOCH_DAY = date(1970, 1, 1).toordinal()
_US_PER_MINUTE = 60_000_000
_US_PER_DAY = 86_400_000_000


def instant(parent: JsonObject, key: str, path: str) -> int | None:
    """A dateTime or instant as microseconds since the epoch, UTC, at the first instant it denotes."""
    value = text(parent, key, path)
    if value is None:
        return None
    match = _DATETIME.fullmatch(value)
    if match is None:
        raise ShapeError(f"{path}.{key}", "not a FHIR dateTime (YYYY, YYYY-MM, YYYY-MM-DD or with a time)")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    days = _day_number(year, month, day, path, key)
    if hour is None:
        return days * _US_PER_DAY
    hours, minutes = int(hour), int(minute)
    seconds = min(int(second), 59) if second else 0  # a leap second (:60) is read as :59
    if hours > 23 or minutes > 59 or seconds > 59:
        raise ShapeError(f"{path}.{key}", "time of day out of range")
    micros = int(fraction[:6].ljust(6, "0")) if fraction else 0
    local = days * _US_PER_DAY + (hours * 60 + minutes) * _US_PER_MINUTE + seconds * 1_000_000 + micros
    return local - _zone_offset(zone, path, key)


def calendar_day(parent: JsonObject, key: str, path: str) -> int | None:
    """A FHIR date (YYYY, YYYY-MM or YYYY-MM-DD) as days since the epoch, at its first day."""
    value = text(parent, key, path)
    if value is None:
        return None
    match = _DATE.fullmatch(value)
    if match is None:
        raise ShapeError(f"{path}.{key}", "not a FHIR date (YYYY, YYYY-MM or YYYY-MM-DD)")
    year, month, day = match.groups()
    return _day_number(year, month, day, path, key)


def period(parent: JsonObject, key: str, path: str) -> tuple[int | None, int | None]:
    """start and end of a Period, each at the first instant it denotes."""
    value = obj(parent, key, path)
    if value is None:
        return None, None
    inner = f"{path}.{key}"
    return instant(value, "start", inner), instant(value, "end", inner)


def _day_number(year: str, month: str | None, day: str | None, path: str, key: str) -> int:
    try:
        return date(int(year), int(month or 1), int(day or 1)).toordinal() - _EPOCH_DAY
    except ValueError:
        raise ShapeError(f"{path}.{key}", "no such calendar date") from None


def _zone_offset(zone: str | None, path: str, key: str) -> int:
    if zone is None or zone == "Z":
        return 0
    hours, minutes = int(zone[1:3]), int(zone[4:6])
    if hours > 14 or minutes > 59:
        raise ShapeError(f"{path}.{key}", "time zone offset out of range")
    offset = (hours * 60 + minutes) * _US_PER_MINUTE
    return -offset if zone[0] == "-" else offset


# ----------------------------------------------------------------------------------------- references

# `Type/id`, optionally after a base URL and before a version: "Patient/x", "https://h/fhir/Patient/x",
# "Patient/x/_history/2".
_LITERAL_REFERENCE = re.compile(r"(?:.*/)?([A-Z][A-Za-z]{1,63})/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?")
_URN_UUID = "urn:uuid:"

Target = tuple[str | None, str]  # (resource type when known, bare id)


class References:
    """Resolves `Reference.reference` strings to bare resource ids.

    `full_urls` maps each Bundle entry's fullUrl to its resource (type, id), so a reference by fullUrl
    finds the entry's id even when the two differ. Outside a Bundle, `urn:uuid:<x>` resolves to id x of an
    unknown type: exports flattened from Synthea-style Bundles keep the uuid as the resource id.
    Contained (`#x`), conditional (`Patient?identifier=...`) and logical (identifier-only) references
    name no resource of the delivery and resolve to None.
    """

    def __init__(self, full_urls: dict[str, Target] | None = None, ambiguous: set[str] | None = None) -> None:
        self._full_urls = full_urls or {}
        self._ambiguous = ambiguous or set()

    def resolve(self, reference: str) -> Target | None:
        """The (type, id) a reference names; None when it names none, or a fullUrl several entries share."""
        if reference in self._ambiguous:
            return None
        target = self._full_urls.get(reference)
        if target is not None:
            return target
        if reference.startswith(_URN_UUID):
            uuid = reference[len(_URN_UUID) :]
            return (None, uuid) if r4.ID.fullmatch(uuid) else None
        match = _LITERAL_REFERENCE.fullmatch(reference)
        return (match[1], match[2]) if match else None

    def target(self, parent: JsonObject, key: str, path: str) -> Target | None:
        """Where the Reference at parent[key] points; None when absent or not resolvable."""
        value = obj(parent, key, path)
        if value is None:
            return None
        reference = text(value, "reference", f"{path}.{key}")
        return None if reference is None else self.resolve(reference)

    def id_of(self, parent: JsonObject, key: str, path: str, resource_type: str) -> str | None:
        """The bare id the Reference at parent[key] names, when it names a `resource_type` (or unknown)."""
        target = self.target(parent, key, path)
        if target is None or target[0] not in (None, resource_type):
            return None
        return target[1]

    def ids_of(self, parent: JsonObject, key: str, path: str, resource_type: str) -> str | None:
        """The ids a repeating Reference element names, joined (DiagnosticReport.result, ...)."""
        ids = []
        for index, value in enumerate(objs(parent, key, path)):
            reference = text(value, "reference", f"{path}.{key}[{index}]")
            target = None if reference is None else self.resolve(reference)
            if target is not None and target[0] in (None, resource_type):
                ids.append(target[1])
        return JOIN.join(ids) if ids else None

    def localized(self, resource: JsonObject) -> JsonObject:
        """`resource` with every reference to a Bundle entry's fullUrl rewritten as `Type/id`.

        What a resource taken out of its Bundle needs (a FHIR server's bulk import resolves `Type/id`,
        not the Bundle's `urn:uuid:` fullUrls). Copies only the parts it changes; other references stay.
        """
        return _localized(resource, self._full_urls) if self._full_urls else resource


def _localized(value: Any, full_urls: dict[str, Target]) -> Any:
    if type(value) is list:
        items = [_localized(item, full_urls) for item in value]
        return items if any(a is not b for a, b in zip(items, value, strict=True)) else value
    if type(value) is not dict:
        return value
    changed: JsonObject = {}
    for key, item in value.items():
        if key == "reference" and type(item) is str:
            target = full_urls.get(item)
            if target is not None and target[0] is not None:
                changed[key] = f"{target[0]}/{target[1]}"
        elif type(item) in (dict, list):
            new = _localized(item, full_urls)
            if new is not item:
                changed[key] = new
    return {**value, **changed} if changed else value
