"""Pass 1 over the bytes (Python + numpy): inflate and check every gzip member, validate the header, check
every record line's columns. See the package docstring for why htslib alone is not enough."""

from __future__ import annotations

import gzip
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
import numpy.typing as npt

from mmhealth.compression import gzip_damage_is_invalid_input
from mmhealth.errors import InvalidInputError
from mmhealth.genomic.vcf.format import (
    BGZF_EOF,
    CR,
    FIXED_COLUMNS,
    LF,
    META_LINE,
    READ_SIZE,
    STRUCTURED_ID,
    TAB,
)

if TYPE_CHECKING:
    pass


# ------------------------------------------------------------------------ pass 1: bytes, header, columns


@dataclass
class VcfLayout:
    """What the first pass learned: the header, and where the records are."""

    meta: list[str]  # the ## lines, without line endings
    columns: list[str]  # the #CHROM line split on tabs
    first_record_line: int  # 1-based line number of the first record
    records: int = 0
    contigs: frozenset[str] = frozenset()
    contig_lengths: dict[str, int] = field(default_factory=dict)
    file_date: str | None = None
    format_types: dict[str, str] = field(default_factory=dict)  # FORMAT ID -> declared Type

    @property
    def samples(self) -> list[str]:
        return self.columns[9:]


def scan_layout(path: Path) -> VcfLayout:
    """Check the whole file's bytes, header and column counts. Raises InvalidInputError."""
    scanner = _LayoutScanner()
    for data in _decompressed_chunks(path):
        scanner.feed(data)
    return scanner.finish()


def _decompressed_chunks(path: Path) -> Iterator[bytes]:
    """The file's content, inflated when gzip/BGZF; every member's CRC and length verified."""
    with path.open("rb") as raw:
        head = raw.read(READ_SIZE)
        if not head:
            raise InvalidInputError("empty-file", "the file is empty (0 bytes)")
        if not head.startswith(b"\x1f\x8b"):
            yield head
            yield from iter(lambda: raw.read(READ_SIZE), b"")
            return
        if _is_bgzf(head):
            require_bgzf_eof(raw)
        raw.seek(0)
        yield from _inflated(raw)


def _is_bgzf(head: bytes) -> bool:
    # BGZF is gzip with FEXTRA set and a 'BC' subfield right after the 12-byte header prefix.
    return len(head) >= 18 and head[3] & 4 != 0 and head[12:14] == b"BC"


def require_bgzf_eof(raw: BinaryIO) -> None:
    """A BGZF file cut at a block boundary inflates cleanly: only the EOF marker block tells."""
    raw.seek(0, os.SEEK_END)
    if raw.tell() < len(BGZF_EOF):
        raise InvalidInputError("truncated-gzip", "BGZF file shorter than its EOF marker: truncated")
    raw.seek(-len(BGZF_EOF), os.SEEK_END)
    if raw.read(len(BGZF_EOF)) != BGZF_EOF:
        raise InvalidInputError("truncated-gzip", "BGZF end-of-file marker missing: the file is truncated")


def _inflated(raw: BinaryIO) -> Iterator[bytes]:
    with gzip_damage_is_invalid_input(), gzip.GzipFile(fileobj=raw, mode="rb") as stream:
        yield from iter(lambda: stream.read(READ_SIZE), b"")


# Bytes a QUAL value may hold: a float ("50", "1e3", "-10.5") or "." (missing).
_QUAL_BYTES = np.zeros(256, dtype=np.bool_)
_QUAL_BYTES[np.frombuffer(b"0123456789.eE+-", dtype=np.uint8)] = True
_QUAL_COLUMN = 5  # 0-based: #CHROM POS ID REF ALT QUAL


def _bad_qual(
    arr: npt.NDArray[np.uint8], newlines: npt.NDArray[np.intp], starts: npt.NDArray[np.intp]
) -> npt.NDArray[np.bool_]:
    """Per line: its QUAL column holds a byte no number has (vectorised: no Python loop per line)."""
    is_tab = arr == TAB
    line_of = np.repeat(np.arange(len(newlines)), newlines - starts + 1)
    tabs_seen = np.cumsum(is_tab) - is_tab
    column = tabs_seen - tabs_seen[starts][line_of]
    bad_byte = (column == _QUAL_COLUMN) & ~is_tab & ~_QUAL_BYTES[arr]
    bad = np.zeros(len(newlines), dtype=np.bool_)
    bad[line_of[bad_byte]] = True
    return bad


class _LayoutScanner:
    """Streams decompressed bytes: header lines first, then a vectorised column count per record line."""

    def __init__(self) -> None:
        self._bytes = 0
        self._pending = b""
        self._line = 0  # lines consumed so far
        self._meta: list[str] = []
        self._layout: VcfLayout | None = None
        self._expected_tabs = 0
        self._first_blank: int | None = None  # blank lines are only allowed after the last record

    def feed(self, data: bytes) -> None:
        self._bytes += len(data)
        data = self._pending + data
        if self._layout is None:
            data = self._consume_header(data)
            if self._layout is None:
                self._pending = data
                return
        cut = data.rfind(b"\n") + 1
        self._count_records(data[:cut])
        self._pending = data[cut:]

    def finish(self) -> VcfLayout:
        if self._bytes == 0:
            raise InvalidInputError("empty-file", "the file decompresses to 0 bytes")
        if self._layout is None:
            if self._pending:
                self.feed(b"\n")  # a header without a final newline
            if self._layout is None:
                raise InvalidInputError("vcf-header", "no #CHROM header line: not a complete VCF header")
        if self._pending:
            self._count_records(self._pending + b"\n")
            self._pending = b""
        return self._layout

    # -- header

    def _consume_header(self, data: bytes) -> bytes:
        """Parse complete header lines from `data`; return the unconsumed rest."""
        if self._line == 0 and len(data) >= 16 and not data.startswith(b"##fileformat=VCF"):
            raise InvalidInputError("vcf-header", "line 1 is not ##fileformat=VCF...: not a VCF", line=1)
        start = 0
        while (end := data.find(b"\n", start)) >= 0:
            text = data[start:end].decode("utf-8", errors="replace").rstrip("\r")
            start = end + 1
            self._line += 1
            if text.startswith("#CHROM"):
                self._layout = _layout_from_header(self._meta, text, self._line)
                self._expected_tabs = len(self._layout.columns) - 1
                return data[start:]
            self._check_meta_line(text)
            self._meta.append(text)
        return data[start:]

    def _check_meta_line(self, text: str) -> None:
        if self._line == 1:
            if not text.startswith("##fileformat=VCF"):
                raise InvalidInputError("vcf-header", "line 1 is not ##fileformat=VCF...: not a VCF", line=1)
            return
        if not text.startswith("#"):
            raise InvalidInputError("vcf-header", "no #CHROM header line before the records", line=self._line)
        match = META_LINE.fullmatch(text)
        if match is None:
            raise InvalidInputError(
                "vcf-header", "malformed meta-information line (expected ##key=value)", line=self._line
            )
        key, value = match.groups()
        if value.startswith("<") and not value.endswith(">"):
            raise InvalidInputError("vcf-header", f"unterminated ##{key}=<...> line", line=self._line)
        if key in {"INFO", "FORMAT", "FILTER", "contig", "ALT"} and not STRUCTURED_ID.search(value):
            raise InvalidInputError("vcf-header", f"##{key} line without <ID=...>", line=self._line)

    # -- records

    def _count_records(self, block: bytes) -> None:
        """Check each complete line of `block` with numpy (no Python loop per line): column count, no
        empty column, no '#' line; blank lines only at the end. Counts the records."""
        if not block:
            return
        assert self._layout is not None
        arr = np.frombuffer(block, dtype=np.uint8)
        newlines = np.flatnonzero(arr == LF)
        starts = np.concatenate([[0], newlines[:-1] + 1])
        tab_at = np.flatnonzero(arr == TAB)
        tabs = np.diff(np.searchsorted(tab_at, newlines), prepend=0)
        lengths = newlines - starts
        blank = (lengths == 0) | ((lengths == 1) & (arr[np.maximum(newlines - 1, 0)] == CR))
        first_line = self._line + 1
        self._line += len(newlines)
        self._track_blank_lines(blank, first_line)
        # An empty column ("\t\t", a leading or trailing tab): htslib reads it as 0, "" or no FORMAT.
        empty_after = np.isin(arr[tab_at + 1], (TAB, LF, CR))
        empty_column = np.zeros(len(newlines), dtype=np.bool_)
        empty_column[np.searchsorted(newlines, tab_at[empty_after])] = True
        problems = {
            "QUAL is neither a number nor '.' (htslib would read it as 0 or a prefix of it)": _bad_qual(
                arr, newlines, starts
            ),
            "a '#' line among the records": arr[starts] == ord("#"),
            "empty column (a missing value is written '.')": empty_column | (arr[starts] == TAB),
            "wrong number of columns": tabs != self._expected_tabs,
        }
        first_bad = [
            (int(np.argmax(bad & ~blank)), what) for what, bad in problems.items() if (bad & ~blank).any()
        ]
        if first_bad:
            index, what = min(first_bad)
            if what == "wrong number of columns":
                what = (
                    f"record has {int(tabs[index]) + 1} tab-separated columns, the header declares "
                    f"{self._expected_tabs + 1}"
                )
            raise InvalidInputError("vcf-record", what, line=first_line + index)
        self._layout.records += int(len(newlines) - np.count_nonzero(blank))

    def _track_blank_lines(self, blank: npt.NDArray[np.bool_], first_line: int) -> None:
        """Blank lines may only trail the records (htslib would parse them as records of contig "")."""
        if self._first_blank is None:
            blanks = np.flatnonzero(blank)
            if not len(blanks):
                return
            self._first_blank = first_line + int(blanks[0])
            blank = blank[blanks[0] :]
        if not blank.all():
            raise InvalidInputError("vcf-record", "empty line between records", line=self._first_blank)


def _layout_from_header(meta: list[str], chrom_line: str, line: int) -> VcfLayout:
    """Validate the #CHROM line and collect what the record checks need from the ## lines."""
    if not meta or not meta[0].startswith("##fileformat=VCF"):
        raise InvalidInputError("vcf-header", "line 1 is not ##fileformat=VCF...: not a VCF", line=1)
    columns = chrom_line.split("\t")
    if tuple(columns[:8]) != FIXED_COLUMNS:
        raise InvalidInputError(
            "vcf-header", "the #CHROM line does not start with the 8 fixed VCF columns", line=line
        )
    if len(columns) > 8 and columns[8] != "FORMAT":
        raise InvalidInputError("vcf-header", "sample columns without a FORMAT column", line=line)
    samples = columns[9:]
    if any(not name.strip() for name in samples):
        raise InvalidInputError("vcf-header", "empty sample name in the #CHROM line", line=line)
    if len(set(samples)) != len(samples):
        raise InvalidInputError("vcf-header", "duplicated sample names in the #CHROM line", line=line)
    contigs: set[str] = set()
    lengths: dict[str, int] = {}
    format_types: dict[str, str] = {}
    file_date = None
    for text in meta:
        key, _, value = text[2:].partition("=")
        if key == "contig":
            contig = _structured_id(value)
            contigs.add(contig)
            if length := re.search(r"[<,]length=(\d+)[,>]", value):
                lengths[contig] = int(length.group(1))
        elif key == "FORMAT":
            type_match = re.search(r"[<,]Type=([A-Za-z]+)", value)
            format_types[_structured_id(value)] = type_match.group(1) if type_match else "String"
        elif key == "fileDate":
            file_date = value
    return VcfLayout(
        meta=meta,
        columns=columns,
        first_record_line=line + 1,
        contigs=frozenset(contigs),
        contig_lengths=lengths,
        file_date=file_date,
        format_types=format_types,
    )


def _structured_id(value: str) -> str:
    match = STRUCTURED_ID.search(value)
    return match.group(1) if match else ""
