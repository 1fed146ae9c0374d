"""Pass 2 plumbing: open the file with cyvcf2 (htslib), read exactly the counted records, and turn htslib's
stderr messages into the detail of the error instead of noise in the log."""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
from cyvcf2 import VCF

from mmhealth.errors import InvalidInputError
from mmhealth.genomic.vcf.format import UNDECLARED_CONTIG
from mmhealth.genomic.vcf.layout import VcfLayout
from mmhealth.observability import logger

# --------------------------------------------------------------------------------- htslib's stderr


class HtslibLog:
    """What htslib wrote to stderr (fd 2) while captured; it cannot be routed anywhere else.

    Read with pread only: fd 2 shares the file offset, and htslib keeps appending while we read.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._checked = 0  # bytes of the log already looked at by `new_errors`

    def _read(self, start: int) -> tuple[str, int]:
        size = os.fstat(self._fd).st_size
        data = os.pread(self._fd, size - start, start) if size > start else b""
        return data.decode("utf-8", errors="replace"), size

    def text(self) -> str:
        return self._read(0)[0]

    def new_errors(self) -> list[str]:
        """Error lines written since the previous call (one fstat when there are none)."""
        fresh, self._checked = self._read(self._checked)
        return [line for line in fresh.splitlines() if line.startswith("[E::")]

    def errors(self) -> list[str]:
        return [line for line in self.text().splitlines() if line.startswith("[E::")]

    def warnings(self) -> list[str]:
        return [line for line in self.text().splitlines() if line.startswith("[W::")]


_FD2_LOCK = threading.Lock()  # fd 2 is process-wide: two captures at once would swap it for good


@contextmanager
def _htslib_log() -> Iterator[HtslibLog]:
    """Redirect fd 2 to a temp file, so htslib's messages become the detail of our errors."""
    with _FD2_LOCK, tempfile.TemporaryFile(mode="a+b", buffering=0) as sink:
        sys.stderr.flush()  # Python's buffered text must land on the real stderr, not in the sink
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield HtslibLog(sink.fileno())
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _htslib_detail(htslib: HtslibLog, fallback: str) -> str:
    messages = htslib.errors() or [line for line in htslib.text().splitlines() if line.startswith("[")]
    return messages[-1][:300] if messages else fallback


def convert(
    path: Path,
    schema: pa.Schema,
    batches: Callable[[VCF, HtslibLog], Iterator[pa.RecordBatch]],
    source_key: str,
) -> pa.Table:
    """Pass 2: run `batches` over the file opened by cyvcf2, with htslib's stderr captured."""
    with _htslib_log() as htslib:
        vcf = _open_vcf(path, htslib)
        try:
            parts = list(batches(vcf, htslib))
        finally:
            vcf.close()
        warnings = htslib.warnings()
    _log_htslib_warnings(warnings, source_key)
    return pa.Table.from_batches(parts, schema=schema)


def _log_htslib_warnings(warnings: list[str], source_key: str) -> None:
    """Non-fatal htslib remarks (an undeclared INFO tag, ...) as one log line instead of raw stderr.

    Undeclared contigs are left out: they are the norm in ClinVar releases, and when a header declares
    contigs the record checks reject any other one.
    """
    warnings = [w for w in warnings if not UNDECLARED_CONTIG.search(w)]
    if warnings:
        logger.warning(f"htslib warnings for {source_key}: {' | '.join(warnings[:5])}")


def _open_vcf(path: Path, htslib: HtslibLog) -> VCF:
    """Open with cyvcf2; an htslib header error (logged or raised) rejects the file as "vcf-header"."""
    try:
        vcf = VCF(str(path))
    except Exception as exc:  # cyvcf2 raises bare Exception / OSError with no detail
        detail = _htslib_detail(htslib, f"htslib cannot read the header ({exc})")
        raise InvalidInputError("vcf-header", detail) from exc
    if errors := htslib.new_errors():
        vcf.close()
        raise InvalidInputError("vcf-header", errors[-1][:300])
    return vcf


def records(
    vcf: VCF, layout: VcfLayout, htslib: HtslibLog, check_earlier_records: Callable[[], None]
) -> Iterator[tuple[int, Any]]:
    """Exactly the records the first pass counted, as (index, record); htslib failures -> vcf-record.

    `check_earlier_records` runs first, so an earlier record's error is reported before htslib's.
    """
    records = iter(vcf)
    seen_contigs = set(layout.contigs)
    for index in range(layout.records):
        try:
            record = next(records)
        except StopIteration:
            check_earlier_records()
            raise InvalidInputError(
                "vcf-record",
                _htslib_detail(htslib, f"htslib read {index} records, the file has {layout.records}"),
                line=layout.first_record_line + index,
            ) from None
        except Exception as exc:  # cyvcf2 raises bare Exception; the cause is in htslib's log
            check_earlier_records()
            raise InvalidInputError(
                "vcf-record",
                _htslib_detail(htslib, "htslib cannot parse the record"),
                line=layout.first_record_line + index,
            ) from exc
        # cyvcf2 hands over a record htslib failed to parse when its contig was undeclared (it tests
        # errcode == BCF_ERR_CTG_UNDEF only), and reading such a record's REF or ID crashes the process.
        # That happens on a contig's first record only: look at htslib's log there, before any field.
        chrom = record.CHROM
        if chrom not in seen_contigs:
            seen_contigs.add(chrom)
            if errors := htslib.new_errors():
                check_earlier_records()
                raise InvalidInputError("vcf-record", errors[-1][:300], line=layout.first_record_line + index)
        yield index, record
    if errors := htslib.new_errors():  # an error htslib logged but did not raise: something was dropped
        check_earlier_records()
        raise InvalidInputError("vcf-record", errors[-1][:300])
