"""FHIR R4 files -> the flattened `clinical.*` Arrow tables (lakehouse/clinical_tables.py). Pure, no S3.

Input, detected by content (never by name): NDJSON, one resource per line (mixed types or one type per
file, as AWS HealthLake imports and bulk-data exports write it), or one JSON document - a Bundle of any
type (transaction, batch, collection, searchset, ... as Synthea writes them) or a single resource; either
one gzip-compressed or not. The file is NDJSON when its first non-blank line, or else its second, parses
on its own as a JSON object; otherwise it is one document. NDJSON is streamed line by line; a document is
read whole. A line that holds a Bundle is flattened entry by entry, like a Bundle file.

A bad line or Bundle entry becomes a `LineProblem` (the rest of the file is flattened); a file that
cannot be read at all raises `InvalidInputError`:

    file (raises)     empty-file, truncated-gzip (also corrupt gzip), fhir-not-json (neither NDJSON nor a
                      JSON document: XML, CSV, a JSON array ...), invalid-json (a one-document file that
                      does not parse, e.g. a cut Bundle), not-utf8 (same), document-too-large
    line or entry     invalid-json, not-utf8, line-too-long, missing-resource-type, unknown-resource-type
                      (not one of R4's 146 types), missing-id, missing-reference (no subject/patient that
                      names a Patient, for the types that have a table), invalid-resource (an element of
                      the wrong JSON type, an impossible date, or a code outside its required R4 value
                      set, with its path; in strict mode also any R4 model violation), missing-resource
                      (a Bundle entry without a resource), duplicate-full-url (Bundle entries sharing a
                      fullUrl but not a resource type and id: references to it are ambiguous, so none
                      of them is kept; versions of one resource under one fullUrl are fine)

Limits: a resource line may hold 16 MiB (`MAX_RESOURCE_BYTES`: far above any real resource, a Binary
with an inline attachment included, while one line can never exhaust a Lambda's memory); a Bundle, as a
file or as one NDJSON line, 256 MiB (`MAX_BUNDLE_BYTES`: its whole JSON tree is held at once).

Validation and the library decision. The default path checks structure on plain dicts: resourceType, id
(R4 `id` format), the Patient reference of every type that has a table, and the JSON type and format of
every element a column is read from (values.py) - what could make a row wrong. `strict=True` adds full
R4 validation with fhirclient's R4 (4.0.1) models: unknown elements, missing mandatory ones, the type of
every element. Measured with bench/fhir_flatten.py (2-core x86_64 VM, Python 3.11; synthetic cohort of
200 patients: 9 NDJSON files, 40,087 resources, 29 MB; best of 3, one process):

    json.loads per line, nothing else (the ceiling)         0.25 s   158k resources/s
    flatten_fhir -> tables                                  0.99 s    40k resources/s
    flatten_fhir(strict=True) -> tables                     5.26 s   7.6k resources/s
    fhirclient 4.4.0 R4 models alone (json.loads + model)   3.73 s    11k resources/s
    fhir.resources 8.3.0 R4B models alone (from JSON)       4.91 s   8.2k resources/s

Either model library alone is 4-5x slower than flattening with the structural checks (which spends ~25%
of its time parsing JSON and the rest reading elements into rows), so full validation is opt-in. When it
is on, fhirclient is the one: its models are R4 itself, where fhir.resources ships R5, R4B and STU3 but
not R4; over the official hl7.fhir.r4.core 4.0.1 package (4,578 resources) R4B's models wrongly reject 48
CodeSystems (a primitive extension inside an extension), fhirclient none, and both reject the same 10
SearchParameters that lack their mandatory `base` (the structural checks reject one more resource, whose
id is 67 characters, which neither model checks). fhirclient is also faster, imports in ~60 ms, and adds
2.2 MB of source to the Lambda package (requests, its one dependency, is already there through
pyiceberg), against 14.6 MB for fhir.resources + fhir-core. It is imported only when strict mode runs.
"""

from __future__ import annotations

import difflib
import gzip
import json
import re
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa

from mmhealth.clinical import r4
from mmhealth.clinical.rows import (
    IDENTIFIER_PREFIX,
    OTHER_TABLE,
    TABLE_OF,
    MissingReference,
    Row,
    conditional_token,
    last_updated,
    other_resource,
)
from mmhealth.clinical.values import JsonObject, References, ShapeError, Target, json_kind
from mmhealth.compression import gzip_damage_is_invalid_input
from mmhealth.errors import InvalidInputError
from mmhealth.lakehouse.clinical_tables import CLINICAL_TABLES
from mmhealth.lakehouse.schemas import VERSIONED_LINEAGE, Lineage

__all__ = ["MAX_BUNDLE_BYTES", "MAX_RESOURCE_BYTES", "FlattenResult", "LineProblem", "flatten_fhir"]

MAX_RESOURCE_BYTES = 16 << 20
MAX_BUNDLE_BYTES = 256 << 20
MAX_LISTED_PROBLEMS = 1000  # problems kept with their detail; `problem_counts` counts them all
_BATCH_ROWS = 1 << 16  # rows of a table held as Python tuples before they become one RecordBatch
_READ_BUFFER = 1 << 20


@dataclass(frozen=True)
class LineProblem:
    """One rejected line or Bundle entry. `detail` names the problem and the element, never a value.

    `line` is 1-based: the NDJSON line, or the line where a Bundle entry starts (None when that cannot
    be told); `entry` is the 0-based index of the entry in its Bundle.
    """

    line: int | None
    reason: str
    detail: str
    resource_type: str | None = None
    resource_id: str | None = None
    entry: int | None = None


@dataclass
class FlattenResult:
    """Tables that got rows (keyed like CLINICAL_TABLES), problems, and what was accepted.

    `other_types` counts the valid resources of types without a table (kept in clinical.other_resource);
    `accepted` counts every resource that gave rows, by type. `problems` lists the first
    MAX_LISTED_PROBLEMS problems; `problem_counts` counts all of them by reason. `resources` holds the
    accepted resources themselves with their line, Bundle entries unpacked with their references made
    `Type/id`, when asked for (`keep_resources`): what a FHIR server's bulk import takes as NDJSON.
    """

    tables: dict[str, pa.Table]
    problems: list[LineProblem]
    other_types: Counter[str] = field(default_factory=Counter)
    accepted: Counter[str] = field(default_factory=Counter)
    problem_counts: Counter[str] = field(default_factory=Counter)
    resources: list[tuple[int | None, JsonObject]] = field(default_factory=list)


def flatten_fhir(
    path: Path,
    *,
    source_key: str,
    object_id: str,
    run_id: str,
    strict: bool = False,
    keep_resources: bool = False,
    delivered_at: int | None = None,
) -> FlattenResult:
    """Flatten every valid resource of an NDJSON or Bundle file (gzip or not) into CLINICAL_TABLES rows.

    Raises InvalidInputError (empty-file, truncated-gzip, fhir-not-json, invalid-json, not-utf8,
    document-too-large) when the file as a whole cannot be read; bad lines or entries are problems.
    `strict` adds full R4 model validation of every resource (see the module docstring);
    `keep_resources` returns the accepted resources too (FlattenResult.resources); `delivered_at`
    (microseconds, UTC: when S3 created the object) fills the rows' delivered_at for the version rule.
    """
    lineage = Lineage(source_key, object_id, run_id, delivered_at)
    sink = _Flattener(lineage, _R4Models() if strict else None, keep_resources)
    with gzip_damage_is_invalid_input(), _content(path) as stream:
        _read_into(sink, _numbered_lines(stream), stream)
    return sink.result()


# ------------------------------------------------------------------------------------------ reading


@contextmanager
def _content(path: Path) -> Iterator[BinaryIO]:
    """The file's bytes, inflated when gzip (by magic number, whatever the name)."""
    with path.open("rb") as raw:
        magic = raw.read(2)
        if not magic:
            raise InvalidInputError("empty-file", "the file is empty (0 bytes)")
        raw.seek(0)
        if magic != b"\x1f\x8b":
            yield raw
            return
        with gzip.GzipFile(fileobj=raw, mode="rb") as inflated:
            yield inflated  # type: ignore[misc]  # GzipFile is a BinaryIO in all but name


@dataclass(frozen=True)
class _Line:
    number: int
    raw: bytes  # with its line ending; cut at MAX_BUNDLE_BYTES when `too_long`
    too_long: bool = False

    @property
    def blank(self) -> bool:
        return not self.raw.strip()


def _numbered_lines(stream: BinaryIO) -> Iterator[_Line]:
    """Lines of at most MAX_BUNDLE_BYTES; the rest of a longer one is read past, not kept."""
    number = 0
    while raw := stream.readline(MAX_BUNDLE_BYTES + 1):
        number += 1
        if len(raw) <= MAX_BUNDLE_BYTES or raw.endswith(b"\n"):
            yield _Line(number, raw)
            continue
        while (rest := stream.readline(_READ_BUFFER)) and not rest.endswith(b"\n"):
            pass
        yield _Line(number, raw[:64], too_long=True)


def _read_into(sink: _Flattener, lines: Iterator[_Line], stream: BinaryIO) -> None:
    """Decide NDJSON or one document from the first two non-blank lines, then feed `sink`."""
    head: list[_Line] = []
    parsed: list[Any] = []
    for line in lines:
        head.append(line)
        if line.blank:
            continue
        parsed.append(_parse_line(line))
        if type(parsed[-1]) is dict or len(parsed) == 2:
            break
    if not parsed:
        raise InvalidInputError("empty-file", "no content: the file holds only blank lines")
    if type(parsed[-1]) is dict:
        _take_ndjson(sink, head, parsed, lines)
        return
    if any(line.too_long for line in head):
        raise InvalidInputError("document-too-large", f"a line is over {MAX_BUNDLE_BYTES >> 20} MiB")
    data = _whole_file(head, stream)
    try:
        document = _parse_document(data, first_line=next(line.number for line in head if not line.blank))
    except InvalidInputError:
        # Not one document, but NDJSON whose first lines are broken? Only when a later line is a resource
        # on its own: a cut pretty-printed Bundle has none, and must stay one whole-file problem.
        numbered = [_Line(n, raw) for n, raw in enumerate(data.splitlines(keepends=True), start=1)]
        values = [None if line.blank else _parse_line(line) for line in numbered]
        if not any(type(v) is dict and "resourceType" in v for v in values):
            raise
        for line, value in zip(numbered, values, strict=True):
            if not line.blank:
                sink.take_line(line, value)
        return
    sink.take_document(document)


def _take_ndjson(sink: _Flattener, head: list[_Line], parsed: list[Any], rest: Iterator[_Line]) -> None:
    """The head's lines (already parsed), then the rest of the stream, one line at a time."""
    values = iter(parsed)
    for line in head:
        if not line.blank:
            sink.take_line(line, next(values))
    for line in rest:
        if not line.blank:
            sink.take_line(line, _parse_line(line))


def _whole_file(head: list[_Line], stream: BinaryIO) -> bytes:
    """The head's lines and the rest of the stream, as long as that is within MAX_BUNDLE_BYTES."""
    data = b"".join(line.raw for line in head)
    data += stream.read(MAX_BUNDLE_BYTES + 1 - len(data))
    if len(data) > MAX_BUNDLE_BYTES:
        raise InvalidInputError(
            "document-too-large",
            f"not NDJSON, and over {MAX_BUNDLE_BYTES >> 20} MiB as one JSON document (a Bundle is read whole)",
        )
    return data


def _parse_document(data: bytes, first_line: int) -> _Document:
    """The file as one JSON object. Raises InvalidInputError (not-utf8, fhir-not-json, invalid-json)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InvalidInputError(
            "not-utf8", "the document holds bytes that are not UTF-8", line=line
        ) from None
    start = text.lstrip("\ufeff \t\r\n")[:1]
    try:
        document = _JSON.decode(text.lstrip("\ufeff"))
    except (ValueError, RecursionError) as exc:
        if start != "{":
            raise InvalidInputError("fhir-not-json", _not_json(start)) from None
        where = exc.lineno if isinstance(exc, json.JSONDecodeError) else None
        raise InvalidInputError(
            "invalid-json", f"not NDJSON, and not one valid JSON document ({_json_error(exc)})", line=where
        ) from None
    if type(document) is not dict:
        raise InvalidInputError("fhir-not-json", f"the file is {json_kind(document)}, not NDJSON or a Bundle")
    return _Document(text, document, first_line)


def _not_json(start: str) -> str:
    if start == "<":
        return "the file looks like XML: FHIR is accepted as JSON (NDJSON or a Bundle) only"
    return "neither NDJSON (no line is a JSON object) nor one JSON document"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# NaN and Infinity are not JSON (the stdlib accepts them by default); FHIR decimals cannot carry them.
_JSON = json.JSONDecoder(parse_constant=_reject_constant)


@dataclass(frozen=True)
class _Unparsable:
    reason: str
    detail: str


def _parse_line(line: _Line) -> Any:
    """The line's JSON value, or _Unparsable (not-utf8, invalid-json, line-too-long)."""
    if line.too_long:
        return _Unparsable("line-too-long", f"the line is over {MAX_BUNDLE_BYTES >> 20} MiB")
    try:
        text = line.raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _Unparsable("not-utf8", f"byte {exc.start + 1} of the line is not valid UTF-8")
    if line.number == 1:
        text = text.lstrip("\ufeff")  # a byte order mark may open the file
    try:
        return _JSON.decode(text)
    except (ValueError, RecursionError) as exc:
        return _Unparsable("invalid-json", f"the line is not a JSON value ({_json_error(exc)})")


def _json_error(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return (
            f"{exc.msg} at line {exc.lineno}, column {exc.colno}"
            if exc.lineno > 1
            else f"{exc.msg} at column {exc.colno}"
        )
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(exc)


@dataclass(frozen=True)
class _Document:
    text: str
    value: JsonObject
    first_line: int


# --------------------------------------------------------------------------------------- flattening


class _TableRows:
    """Rows of one table, turned into a RecordBatch every _BATCH_ROWS rows to bound memory."""

    def __init__(self, name: str, lineage: Lineage) -> None:
        self.schema = CLINICAL_TABLES[name]
        self._types = [f.type for f in self.schema][: -len(VERSIONED_LINEAGE)]
        self._lineage = lineage
        self._rows: list[Row] = []
        self._batches: list[pa.RecordBatch] = []

    def extend(self, rows: list[Row]) -> None:
        self._rows.extend(rows)
        if len(self._rows) >= _BATCH_ROWS:
            self._flush()

    def table(self) -> pa.Table:
        self._flush()
        return pa.Table.from_batches(self._batches, schema=self.schema)

    def _flush(self) -> None:
        if not self._rows:
            return
        columns = [
            pa.array(values, type=t)
            for values, t in zip(zip(*self._rows, strict=True), self._types, strict=True)
        ]
        lineage = self._lineage.versioned_columns(len(self._rows))
        self._batches.append(pa.RecordBatch.from_arrays([*columns, *lineage], schema=self.schema))
        self._rows = []


@dataclass(frozen=True)
class _Where:
    """Where a resource was read: its line, its entry when it came from a Bundle, and that entry's
    conditional-create identifier (`request.ifNoneExist` = `identifier=system|value`), as `system|value`."""

    line: int | None
    entry: int | None = None
    if_none_exist: str | None = None


class _Flattener:
    """Validates resources and collects their rows and the problems."""

    def __init__(self, lineage: Lineage, models: _R4Models | None, keep_resources: bool = False) -> None:
        self._lineage = lineage
        self._resources: list[tuple[int | None, JsonObject]] | None = [] if keep_resources else None
        self._models = models
        self._tables: dict[str, _TableRows] = {}
        self._problems: list[LineProblem] = []
        self._problem_counts: Counter[str] = Counter()
        self._other_types: Counter[str] = Counter()
        self._accepted: Counter[str] = Counter()
        self._position = -1  # of the resource being read, in file order (the version rule's tiebreak)

    # -- inputs

    def take_line(self, line: _Line, value: Any) -> None:
        """One NDJSON line (already parsed, or _Unparsable)."""
        where = _Where(line.number)
        if isinstance(value, _Unparsable):
            self._problem(where, value.reason, value.detail)
        elif len(line.raw) > MAX_RESOURCE_BYTES and not _is_bundle(value):
            self._problem(
                where,
                "line-too-long",
                f"the line is over {MAX_RESOURCE_BYTES >> 20} MiB (only a Bundle may be larger)",
                *_identity(value),
            )
        else:
            self._take(value, where, _NO_BUNDLE)

    def take_document(self, document: _Document) -> None:
        """A one-document file: a Bundle (entries located by line when one has a problem) or a resource."""
        before = len(self._problems)
        self._take(document.value, _Where(document.first_line), _NO_BUNDLE)
        if len(self._problems) > before and _is_bundle(document.value):
            lines = _entry_lines(document.text)
            self._problems[before:] = [_at_entry_line(p, lines) for p in self._problems[before:]]

    def result(self) -> FlattenResult:
        tables = {name: rows.table() for name, rows in sorted(self._tables.items())}
        return FlattenResult(
            tables,
            self._problems,
            self._other_types,
            self._accepted,
            self._problem_counts,
            self._resources or [],
        )

    # -- one resource

    def _take(self, resource: Any, where: _Where, refs: References, fallback_id: str | None = None) -> None:
        self._position += 1
        prefix = "" if where.entry is None else f"Bundle entry {where.entry}: "
        if type(resource) is not dict:
            self._problem(where, "invalid-resource", f"{prefix}{json_kind(resource)}, not a resource object")
            return
        resource_type = resource.get("resourceType")
        if resource_type is None:
            self._problem(
                where, "missing-resource-type", f"{prefix}no resourceType", None, _safe_id(resource)
            )
            return
        if type(resource_type) is not str or resource_type not in r4.RESOURCE_TYPES:
            name, detail = _unknown_type(resource_type)
            self._problem(where, "unknown-resource-type", prefix + detail, name, _safe_id(resource))
            return
        if resource_type == "Bundle" and where.entry is None:
            # A Bundle inside a Bundle (a document in a collection) is not unpacked: kept as it is.
            self._take_bundle(resource, where)
            return
        resource_id = resource.get("id", fallback_id)
        if resource_id is None:
            self._problem(where, "missing-id", f"{prefix}{resource_type} has no id", resource_type)
            return
        if type(resource_id) is not str or not r4.ID.fullmatch(resource_id):
            detail = f"{prefix}{resource_type}.id is not a FHIR id (1-64 of A-Z a-z 0-9 - .)"
            self._problem(where, "invalid-resource", detail, resource_type)
            return
        if "id" not in resource:
            resource = {**resource, "id": resource_id}
        self._flatten(resource, resource_type, resource_id, where, refs, prefix)

    def _flatten(
        self,
        resource: JsonObject,
        resource_type: str,
        resource_id: str,
        where: _Where,
        refs: References,
        prefix: str,
    ) -> None:
        if self._models is not None:
            violation = self._models.violation(resource)
            if violation is not None:
                self._problem(where, "invalid-resource", prefix + violation, resource_type, resource_id)
                return
        table = TABLE_OF.get(resource_type)
        try:
            version: tuple[Any, ...] = (last_updated(resource, resource_type), self._position)
            if resource_type == "Patient":  # its if_none_exist comes from the Bundle entry, not the resource
                version = (where.if_none_exist, *version)
            if table is None:
                rows = [(*other_resource(resource, refs), *version)]
                self._other_types[resource_type] += 1
            else:
                rows = [(*row, *version) for row in table[1](resource, resource_type, refs)]
        except ShapeError as exc:
            self._problem(where, "invalid-resource", f"{prefix}{exc}", resource_type, resource_id)
            return
        except MissingReference as exc:
            self._problem(where, "missing-reference", f"{prefix}{exc}", resource_type, resource_id)
            return
        name = OTHER_TABLE if table is None else table[0]
        rows_of_table = self._tables.get(name)
        if rows_of_table is None:
            rows_of_table = self._tables[name] = _TableRows(name, self._lineage)
        rows_of_table.extend(rows)
        self._accepted[resource_type] += 1
        if self._resources is not None:
            self._resources.append((where.line, refs.localized(resource)))

    def _take_bundle(self, bundle: JsonObject, where: _Where) -> None:
        """Every entry's resource, references resolved through the entries' fullUrls."""
        entries = bundle.get("entry", [])
        if type(entries) is not list:
            self._problem(
                where, "invalid-resource", f"Bundle.entry is {json_kind(entries)}, not an array", "Bundle"
            )
            return
        full_urls, shared = _full_urls(entries)
        refs = References(full_urls, ambiguous=set(shared))
        for index, entry in enumerate(entries):
            at = _Where(where.line, index, _if_none_exist(entry))
            if type(entry) is not dict:
                self._problem(
                    at, "invalid-resource", f"Bundle entry {index}: {json_kind(entry)}, not an object"
                )
                continue
            resource = entry.get("resource")
            full_url = entry.get("fullUrl")
            if resource is None:
                self._problem(
                    at, "missing-resource", f"Bundle entry {index} has no resource{_request_of(entry)}"
                )
                continue
            if type(full_url) is str and full_url in shared:
                self._position += 1
                others = ", ".join(str(i) for i in shared[full_url] if i != index)
                detail = (
                    f"Bundle entry {index}: its fullUrl is also the fullUrl of entry {others}, a different resource "
                    "(or one without an id); which one a reference to it means cannot be told, so none is kept"
                )
                self._problem(at, "duplicate-full-url", detail, *_identity(resource))
                continue
            self._take(resource, at, refs, _uuid_of(full_url))

    def _problem(
        self,
        where: _Where,
        reason: str,
        detail: str,
        resource_type: str | None = None,
        resource_id: str | None = None,
    ) -> None:
        self._problem_counts[reason] += 1
        if len(self._problems) < MAX_LISTED_PROBLEMS:
            self._problems.append(
                LineProblem(where.line, reason, detail, resource_type, resource_id, where.entry)
            )


_NO_BUNDLE = References()
_TYPE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]{0,63}")


def _at_entry_line(problem: LineProblem, lines: list[int]) -> LineProblem:
    if problem.entry is None:
        return problem
    return replace(problem, line=lines[problem.entry] if problem.entry < len(lines) else None)


def _is_bundle(value: Any) -> bool:
    return type(value) is dict and value.get("resourceType") == "Bundle"


def _safe_type_name(value: Any) -> str | None:
    """A resourceType fit to quote in a problem: an R4 type (or one of a later version), else None."""
    known = type(value) is str and (value in r4.RESOURCE_TYPES or value in r4.LATER_RESOURCE_TYPES)
    return value if known else None


def _unknown_type(value: Any) -> tuple[str | None, str]:
    """(the name when fit to quote, the problem's detail) for a resourceType that is not R4's.

    The value could be anything, a person's name included: it is quoted only when it is a type of a
    later FHIR version or a misspelt R4 type, which is what on-call needs to see.
    """
    if type(value) is not str:
        return None, f"resourceType is {json_kind(value)}, not a FHIR R4 resource type name"
    if value in r4.LATER_RESOURCE_TYPES:
        return value, f"resourceType {value} is an R4B/R5 resource type, not FHIR R4"
    near = difflib.get_close_matches(value, r4.RESOURCE_TYPES, n=1, cutoff=0.8)
    if near and _TYPE_NAME.fullmatch(value):
        return value, f"resourceType {value} is not a FHIR R4 resource type (misspelt {near[0]}?)"
    return (
        None,
        f"resourceType is not a FHIR R4 resource type (a value of {len(value)} characters, not quoted)",
    )


def _safe_id(resource: JsonObject) -> str | None:
    value = resource.get("id")
    return value if type(value) is str and r4.ID.fullmatch(value) else None


def _identity(value: Any) -> tuple[str | None, str | None]:
    if type(value) is not dict:
        return None, None
    return _safe_type_name(value.get("resourceType")), _safe_id(value)


def _request_of(entry: JsonObject) -> str:
    request = entry.get("request")
    method = request.get("method") if type(request) is dict else None
    return f" (request {method})" if type(method) is str and method.isalpha() else ""


def _if_none_exist(entry: JsonObject) -> str | None:
    """`system|value` of an entry's `request.ifNoneExist` when it searches by identifier, else None: the
    sender's statement that this resource is the one that identifier names (conditional create)."""
    request = entry.get("request")
    criterion = request.get("ifNoneExist") if type(request) is dict else None
    token = conditional_token(f"Patient?{criterion}") if type(criterion) is str else None
    return token.removeprefix(IDENTIFIER_PREFIX) if token else None


def _uuid_of(full_url: Any) -> str | None:
    """The id a transaction entry without one is known by: the uuid of its `urn:uuid:` fullUrl."""
    if type(full_url) is str and full_url.startswith("urn:uuid:"):
        uuid = full_url[len("urn:uuid:") :]
        return uuid if r4.ID.fullmatch(uuid) else None
    return None


def _full_urls(entries: list[Any]) -> tuple[dict[str, Target], dict[str, list[int]]]:
    """fullUrl -> (type, id) of every entry that has both: what references inside the Bundle use; and the
    fullUrls that name more than one resource, with the indexes of their entries.

    R4's bdl-7 lets entries share a fullUrl only as versions of one resource (a history, or the same
    resource listed twice): same type, same explicit id. Those stay (the version rule keeps one); entries
    whose shared fullUrl stands for different resources, or for resources without an id of their own, make
    every reference to it ambiguous.
    """
    found: dict[str, Target] = {}
    seen: dict[str, list[tuple[int, Target | None, bool]]] = {}
    for index, entry in enumerate(entries):
        if type(entry) is not dict:
            continue
        full_url, resource = entry.get("fullUrl"), entry.get("resource")
        if type(full_url) is not str or type(resource) is not dict:
            continue
        resource_type, resource_id = resource.get("resourceType"), resource.get("id", _uuid_of(full_url))
        target = (
            (resource_type, resource_id) if type(resource_type) is str and type(resource_id) is str else None
        )
        seen.setdefault(full_url, []).append((index, target, "id" in resource))
        if target is not None:
            found[full_url] = target
    shared = {
        url: [index for index, _, _ in named]
        for url, named in seen.items()
        if len(named) > 1 and (len({t for _, t, _ in named}) > 1 or not all(has_id for _, _, has_id in named))
    }
    return {url: target for url, target in found.items() if url not in shared}, shared


# A JSON string (escapes included) or a structural character: enough to find where each entry starts.
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\]:]')


def _entry_lines(text: str) -> list[int]:
    """1-based line on which each element of the top-level `entry` array starts.

    Only run when an entry has a problem: the scan costs about as much as parsing the document.
    """
    lines: list[int] = []
    depth, key, last_string, in_entry = 0, None, None, False
    newlines, counted_to = 0, 0
    for token in _JSON_TOKEN.finditer(text):
        char = token.group()[0]
        if char == '"':
            last_string = token.group()
        elif char == ":":
            if depth == 1:
                key = last_string
        elif char in "{[":
            if in_entry and depth == 2:
                newlines += text.count("\n", counted_to, token.start())
                counted_to = token.start()
                lines.append(newlines + 1)
            if depth == 1 and char == "[" and key == '"entry"':
                in_entry = True
            depth += 1
        else:
            depth -= 1
            if depth == 1:
                in_entry = False
    return lines


# ------------------------------------------------------------------------------------- strict mode


_OBJECT_REPR = re.compile(r"<(?:class '|)(?:fhirclient\.models\.\w+\.)?(\w+)(?:'>| object at 0x[0-9a-f]+>)")


_CLASS_NAME = r"\1"


class _R4Models:
    """Full validation against fhirclient's R4 (4.0.1) models. Imported only when strict mode runs."""

    def __init__(self) -> None:
        from fhirclient.models.fhirabstractbase import FHIRValidationError
        from fhirclient.models.fhirelementfactory import FHIRElementFactory

        self._factory = FHIRElementFactory
        self._error = FHIRValidationError

    def violation(self, resource: JsonObject) -> str | None:
        """None when the R4 model accepts the resource, else its first violation with the path."""
        resource_type = resource["resourceType"]
        try:
            self._factory.instantiate(resource_type, resource)
        except self._error as exc:
            path, message = next(self._leaves(exc, resource_type), (resource_type, "invalid"))
            return f"{path}: {_OBJECT_REPR.sub(_CLASS_NAME, message)}"[:300]
        except Exception as exc:  # the models raise bare exceptions for some shapes
            return f"{resource_type}: rejected by the R4 model ({type(exc).__name__})"
        return None

    def _leaves(self, error: Any, path: str) -> Iterator[tuple[str, str]]:
        for inner in error.errors:
            if isinstance(inner, self._error):
                yield from self._leaves(inner, f"{path}.{inner.path}" if inner.path else path)
            else:
                yield path, str(inner).strip("'\"")
