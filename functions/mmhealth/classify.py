"""Decide what a delivered object is from its first bytes, falling back to its name.

Content wins over the name (a VCF called `.txt` is still a VCF); the name decides when the content cannot
(a truncated `.vcf.gz` is still genomic, and its importer then quarantines it with the precise reason).
What neither recognises is `unknown` and is quarantined at once with the reason. A delivery's completion
marker (`_COMPLETE`) is a `marker`, not data.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import PurePosixPath

from mmhealth.contracts import FileKind
from mmhealth.genomic.annotation import is_annotation_header

SNIFF_BYTES = 64 * 1024
# A linkage file (mmhealth.identity.linkage): by name, or by its header line.
LINKAGE_NAME = "linkage.csv"
LINKAGE_HEADER = "kind,value,patient_id"
# The delivery's completion marker (mmhealth.waves): by name only, whatever it holds.
MARKER_NAME = "_COMPLETE"
GZIP_MAGIC = b"\x1f\x8b"

_NAME_KINDS: tuple[tuple[tuple[str, ...], FileKind], ...] = (
    ((".vcf", ".vcf.gz", ".vcf.bgz", ".bcf"), "genomic"),
    ((".ndjson", ".ndjson.gz", ".json", ".jsonl"), "clinical"),
    ((".dcm", ".dicom"), "imaging"),
)


@dataclass(frozen=True)
class Classification:
    kind: FileKind
    reason: str | None = None  # set for "unknown": why the file was not recognised


def classify(key: str, head: bytes, size: int) -> Classification:
    """Classify an object from its key, its first bytes (`head`, at most SNIFF_BYTES) and its size."""
    if PurePosixPath(key).name == MARKER_NAME:
        return Classification("marker")
    if size == 0:
        by_name = _kind_from_name(key)
        if by_name is not None:
            return Classification(by_name)  # the modality's importer quarantines it as "empty-file"
        return Classification("unknown", "empty-file: zero-byte object of unrecognised type")
    by_content = _kind_from_content(key, head)
    if by_content is not None:
        return Classification(by_content)
    by_name = _kind_from_name(key)
    if by_name is not None:
        return Classification(by_name)
    return Classification(
        "unknown",
        "unrecognised-type: not VCF, FHIR JSON/NDJSON, DICOM or a linkage CSV by content or by file name",
    )


def _kind_from_name(key: str) -> FileKind | None:
    name = PurePosixPath(key).name.lower()
    if name == LINKAGE_NAME or name.endswith(f".{LINKAGE_NAME}"):
        return "linkage"
    for suffixes, kind in _NAME_KINDS:
        if name.endswith(suffixes):
            if kind == "genomic" and name.startswith("clinvar"):
                return "annotation"
            return kind
    return None


def _kind_from_content(key: str, head: bytes) -> FileKind | None:
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "imaging"
    text = _decompressed_text(head)
    if text is None:
        return None
    stripped = text.lstrip("\ufeff \t\r\n")
    if stripped.startswith("##fileformat=VCF"):
        return _vcf_kind(key, stripped)
    if stripped.startswith("{") and _looks_like_fhir(stripped):
        return "clinical"
    if _header_of(stripped) == LINKAGE_HEADER:
        return "linkage"
    return None


def _header_of(text: str) -> str:
    """The first line, lower-cased, without spaces: how a CSV header is compared."""
    return text.split("\n", 1)[0].strip().lower().replace(" ", "")


def _decompressed_text(head: bytes) -> str | None:
    """The head as text, gunzipping a (possibly partial) gzip/BGZF stream; None when not text."""
    data = head
    if head.startswith(GZIP_MAGIC):
        try:
            # 16 + MAX_WBITS: gzip framing; a partial stream decompresses as far as the bytes go.
            data = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, SNIFF_BYTES * 4)
        except zlib.error:
            return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        # The sniffed window can end in the middle of a multi-byte character.
        if exc.start < len(data) - 4:
            return None
        return data[: exc.start].decode("utf-8")


def _vcf_kind(key: str, text: str) -> FileKind:
    header = [line for line in text.splitlines() if line.startswith("#")]
    if PurePosixPath(key).name.lower().startswith("clinvar") or is_annotation_header(header):
        return "annotation"
    return "genomic"


def _looks_like_fhir(text: str) -> bool:
    """A Bundle or NDJSON whose first complete JSON value has a resourceType."""
    first_line = text.split("\n", 1)[0]
    for candidate in (first_line, text):
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        return isinstance(value, dict) and "resourceType" in value
    # A large pretty-printed Bundle does not fit in the sniffed window: look for the member instead.
    return '"resourceType"' in text[:4096]
