"""Linkage files: what a delivery says about who is who, beyond what FHIR says itself.

A linkage file is a CSV (UTF-8, comma-separated, a header line) named `linkage.csv` or `<anything>.linkage.csv`,
or any file whose first line is the header below, dropped anywhere in a delivery next to the data:

    kind,value,patient_id
    vcf_sample,SYNTH_OC_0001,030a81c6-fbbc-4265-a70a-0fd5ea5da6ac
    dicom_patient_id,MRN-0042,030a81c6-fbbc-4265-a70a-0fd5ea5da6ac
    identifier,urn:tietai:synthetic|030a81c6-fbbc-4265-a70a-0fd5ea5da6ac,030a81c6-fbbc-4265-a70a-0fd5ea5da6ac
    patient_id,legacy-0042,030a81c6-fbbc-4265-a70a-0fd5ea5da6ac

Each row says that `value` (a VCF sample column name, a DICOM PatientID, a Patient identifier `system|value`,
or another Patient.id) belongs to the person whose Patient resource has id `patient_id`. Rows are versions
of their source (`<kind>:<value>`): a later file's row replaces an earlier one (lakehouse.versions). A bad
row is a problem with its line (`linkage-row`); the others are kept. Nothing here is personal data beyond
identifiers, and no value is quoted in a problem.
"""

from __future__ import annotations

import codecs
import csv
import io
from pathlib import Path

import pyarrow as pa

from mmhealth.errors import InvalidInputError
from mmhealth.lakehouse.schemas import IDENTITY_LINKAGE, Lineage
from mmhealth.modality import Converted, LineProblem

KINDS = ("vcf_sample", "dicom_patient_id", "identifier", "patient_id")
HEADER = ("kind", "value", "patient_id")
TABLE = "identity.linkage"
MAX_BYTES = 64 << 20  # a linkage file of a million rows is ~60 MB; more is not a linkage file


def read_linkage(path: Path, lineage: Lineage) -> Converted:
    """The file's rows as IDENTITY_LINKAGE, and a problem per bad row. Raises InvalidInputError (empty-file,
    linkage-header, not-utf8, linkage-too-large) when the file as a whole cannot be read."""
    data = path.read_bytes()
    if not data.strip():
        raise InvalidInputError("empty-file", "the linkage file is empty")
    if len(data) > MAX_BYTES:
        raise InvalidInputError("linkage-too-large", f"over {MAX_BYTES >> 20} MiB: not a linkage file")
    try:
        text = data.decode("utf-8").removeprefix(codecs.BOM_UTF8.decode())
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InvalidInputError(
            "not-utf8", "the linkage file holds bytes that are not UTF-8", line=line
        ) from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header = tuple(c.strip().lower() for c in next(reader, []))
    if header != HEADER:
        raise InvalidInputError("linkage-header", f"line 1 must be the header {','.join(HEADER)}", line=1)
    rows: list[tuple[str, str, str, str, int]] = []
    problems: list[LineProblem] = []
    for position, record in enumerate(reader):
        line = reader.line_num
        if not any(cell.strip() for cell in record):
            continue
        problem = _problem(record)
        if problem is not None:
            problems.append(LineProblem(reason="linkage-row", detail=problem, line=line))
            continue
        kind, value, patient = (cell.strip() for cell in record)
        rows.append((f"{kind}:{value}", kind, value, patient, position))
    own = IDENTITY_LINKAGE.names[:5]  # source, kind, value, patient_id, source_position; then the lineage
    columns = [
        pa.array([row[i] for row in rows], type=IDENTITY_LINKAGE.field(n).type) for i, n in enumerate(own)
    ]
    table = pa.Table.from_arrays([*columns, *lineage.versioned_columns(len(rows))], schema=IDENTITY_LINKAGE)
    return Converted({TABLE: table}, problems)


def _problem(record: list[str]) -> str | None:
    """Why a data row is unusable (never quoting its values), or None."""
    if len(record) != len(HEADER):
        return f"{len(record)} columns, the header has {len(HEADER)}"
    kind, value, patient = (cell.strip() for cell in record)
    if kind not in KINDS:
        return f"kind must be one of {', '.join(KINDS)}"
    if not value or not patient:
        return "value and patient_id must both be given"
    if kind == "identifier" and "|" not in value:
        return "an identifier is written system|value"
    return None
