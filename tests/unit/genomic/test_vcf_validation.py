"""Bad input: every problem is an InvalidInputError with a reason code, a detail and (for records) the line.

The pipeline quarantines whole files, so a broken record anywhere must reject the file, never return part
of it. Files are real: plain text, htslib BGZF (pysam) and ordinary gzip written into tmp_path.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

from mmhealth.errors import InvalidInputError
from mmhealth.genomic import vcf
from mmhealth.genomic.vcf import read_genotypes
from tests.unit.genomic.vcf_files import LINEAGE, genotype_vcf, write_cohort_vcf, write_vcf_file

GOOD = "1\t100\t.\tA\tG\t50\tPASS\t.\tGT\t0/1\t0/1\t0/1"
GOOD_LATER = "1\t300\t.\tA\tG\t50\tPASS\t.\tGT\t0/1\t1/1\t0/0"
FIRST_RECORD_LINE = 14  # GENOTYPE_HEADER has 12 ## lines, then #CHROM
BAD_LINE = FIRST_RECORD_LINE + 1


def rejected(path: Path) -> InvalidInputError:
    with pytest.raises(InvalidInputError) as caught:
        read_genotypes(path, **LINEAGE)
    return caught.value


# ------------------------------------------------------------------------------------------ records

BROKEN_RECORDS = {
    "too-few-columns": ("1\t150\t.\tA\tG\t50\tPASS\t.\tGT\t0/1\t0/1", "11 tab-separated columns"),
    "too-many-columns": ("1\t150\t.\tA\tG\t50\tPASS\t.\tGT\t0/1\t0/1\t0/1\t0/1", "13 tab-separated"),
    "sites-only-line": ("1\t150\t.\tA\tG", "5 tab-separated columns"),
    "pos-not-integer": ("1\t15x0\t.\tA\tG\t50\tPASS\t.\tGT\t0/1\t0/1\t0/1", "Could not parse the position"),
    "pos-letters": ("1\tabc\t.\tA\tG\t50\tPASS\t.\tGT\t0/1\t0/1\t0/1", "Could not parse the position"),
    "pos-negative": ("1\t-5\t.\tA\tG\t50\tPASS\t.\tGT\t0/1\t0/1\t0/1", "Could not parse the position"),
    "pos-zero": ("1\t0\t.\tA\tG\t50\tPASS\t.\tGT\t0/1\t0/1\t0/1", "POS 0 is not a 1-based position"),
    "ref-not-bases": ("1\t150\t.\tA?\tG\t50\tPASS\t.\tGT\t0/1\t0/1\t0/1", "invalid REF allele"),
    "ref-missing": ("1\t150\t.\t.\tG\t50\tPASS\t.\tGT\t0/1\t0/1\t0/1", "invalid REF allele"),
    "alt-not-bases": ("1\t150\t.\tA\tG,X1\t50\tPASS\t.\tGT\t0/1\t0/1\t0/1", "invalid ALT allele"),
    "gt-beyond-alts": ("1\t150\t.\tA\tG\t50\tPASS\t.\tGT\t0/1\t0/3\t0/1", "GT refers to allele 3"),
    "gt-haploid-beyond": ("X\t150\t.\tA\tG\t50\tPASS\t.\tGT\t0/1\t2\t0/1", "GT refers to allele 2"),
    "gt-not-a-number": ("1\t150\t.\tA\tG\t50\tPASS\t.\tGT\t0/z\t0/1\t0/1", "Couldn't read GT data"),
    "ad-not-a-number": (
        "1\t150\t.\tA\tG\t50\tPASS\t.\tGT:AD\t0/1:a,b\t0/1:1,2\t0/1:1,2",
        "Invalid character",
    ),
    "contig-undeclared": ("7\t150\t.\tA\tG\t50\tPASS\t.\tGT\t0/1\t0/1\t0/1", "contig '7' is not declared"),
    # cyvcf2 returns this half-parsed record (contig undeclared) instead of raising: must not crash
    "contig-undeclared-bad-pos": ("7\t15x0\t.\tA\tG\t50\tPASS\t.\tGT\t0/1\t0/1\t0/1", "parse the position"),
    "pos-beyond-contig": (
        "1\t248956424\t.\tA\tG\t50\tPASS\t.\tGT\t0/1\t0/1\t0/1",
        "beyond the declared length",
    ),
    "pos-beyond-32-bits": (
        "1\t99999999999999\t.\tA\tG\t50\tPASS\t.\tGT\t0/1\t0/1\t0/1",
        "beyond the declared",
    ),
    "gt-index-huge": (
        "1\t150\t.\tA\tG\t50\tPASS\t.\tGT\t0/99999\t0/1\t0/1",
        "GT refers to allele 99999",
    ),
    "empty-pos": ("1\t\t.\tA\tG\t50\tPASS\t.\tGT\t0/1\t0/1\t0/1", "empty column"),
    "empty-filter": ("1\t150\t.\tA\tG\t50\t\t.\tGT\t0/1\t0/1\t0/1", "empty column"),
    "empty-format": ("1\t150\t.\tA\tG\t50\tPASS\t.\t\t0/1\t0/1\t0/1", "empty column"),
    "empty-last-sample": ("1\t150\t.\tA\tG\t50\tPASS\t.\tGT\t0/1\t0/1\t", "empty column"),
    "blank-line": ("", "empty line between records"),
    # htslib reads these as 0.0 and 12.0 without a word: QUAL must be a number or "."
    "qual-a-word": ("1\t150\t.\tA\tG\thigh\tPASS\t.\tGT\t0/1\t0/1\t0/1", "QUAL is neither a number nor"),
    "qual-number-and-text": ("1\t150\t.\tA\tG\t12abc\tPASS\t.\tGT\t0/1\t0/1\t0/1", "QUAL is neither"),
    "comment-line": ("#1\t150\t.\tA\tG\t50\tPASS\t.\tGT\t0/1\t0/1\t0/1", "a '#' line among the records"),
}


@pytest.mark.parametrize("name", ["calls.vcf", "calls.vcf.gz"])
@pytest.mark.parametrize("case", sorted(BROKEN_RECORDS))
def test_a_broken_record_rejects_the_file_with_its_line(tmp_path: Path, case: str, name: str) -> None:
    # Given a record broken in `case`'s way between two good ones
    record, detail = BROKEN_RECORDS[case]
    path = write_vcf_file(tmp_path, genotype_vcf([GOOD, record, GOOD_LATER]), name)

    # When it is read / Then the file is rejected as vcf-record at the broken line, saying why
    error = rejected(path)
    assert (error.reason, error.line) == ("vcf-record", BAD_LINE)
    assert detail in error.detail


def test_crlf_file_with_a_broken_record_is_rejected_at_the_same_line(tmp_path: Path) -> None:
    path = write_vcf_file(
        tmp_path, genotype_vcf([GOOD, BROKEN_RECORDS["too-few-columns"][0], GOOD_LATER]), crlf=True
    )

    error = rejected(path)

    assert (error.reason, error.line) == ("vcf-record", BAD_LINE)


def test_the_earliest_problem_is_reported_whoever_finds_it(tmp_path: Path) -> None:
    # Given a bad REF (found by our checks) before an unparsable POS (found by htslib)
    records = [GOOD, BROKEN_RECORDS["ref-not-bases"][0], BROKEN_RECORDS["pos-letters"][0]]

    # When it is read / Then the bad REF's line is reported
    error = rejected(write_vcf_file(tmp_path, genotype_vcf(records)))
    assert (error.line, error.detail) == (BAD_LINE, "invalid REF allele (expected nucleotide letters)")


def test_a_broken_record_deep_in_a_large_file_rejects_the_whole_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a 3,000-site callset read in chunks of 100 records, broken at its 2,500th record
    source = write_cohort_vcf(tmp_path / "cohort.vcf.gz", samples=2, records=3000, seed=3)
    lines = gzip.decompress(source.read_bytes()).decode().split("\n")
    first_record = next(i for i, line in enumerate(lines) if not line.startswith("#"))
    broken_index = first_record + 2499
    fields = lines[broken_index].split("\t")
    lines[broken_index] = "\t".join([fields[0], "12x", *fields[2:]])
    path = write_vcf_file(tmp_path, "\n".join(lines), "broken.vcf.gz")
    monkeypatch.setattr(vcf.genotypes, "CHUNK_GENOTYPES", 200)

    # When it is read / Then nothing is returned: the whole file is rejected at that line
    error = rejected(path)
    assert (error.reason, error.line) == ("vcf-record", broken_index + 1)


def test_htslib_messages_become_the_detail_instead_of_stderr_noise(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    # Given a record htslib refuses, and an INFO tag it only warns about
    records = [GOOD.replace("\t.\tGT", "\tZZ=1\tGT"), BROKEN_RECORDS["pos-letters"][0]]

    # When it is read
    error = rejected(write_vcf_file(tmp_path, genotype_vcf(records)))

    # Then htslib's message is in the error, and nothing of it leaked onto the process's stderr
    assert error.detail == "[E::vcf_parse] Could not parse the position 'abc'"
    assert "[E::" not in capfd.readouterr().err


# ------------------------------------------------------------------------------------- compression


def test_zero_byte_files_are_empty(tmp_path: Path) -> None:
    for name in ("empty.vcf", "empty.vcf.gz"):
        (tmp_path / name).write_bytes(b"")
        assert rejected(tmp_path / name).reason == "empty-file"


def test_a_gzip_of_nothing_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "nothing.vcf.gz"
    path.write_bytes(gzip.compress(b""))

    assert rejected(path).reason == "empty-file"


@pytest.fixture
def bgzf_callset(tmp_path: Path) -> bytes:
    return write_cohort_vcf(tmp_path / "whole.vcf.gz", samples=3, records=2000, seed=9).read_bytes()


def test_a_bgzf_file_cut_in_the_middle_is_truncated(tmp_path: Path, bgzf_callset: bytes) -> None:
    path = tmp_path / "cut.vcf.gz"
    path.write_bytes(bgzf_callset[: len(bgzf_callset) // 2])

    error = rejected(path)

    assert error.reason == "truncated-gzip"


def test_a_bgzf_file_cut_at_a_block_boundary_is_truncated(tmp_path: Path, bgzf_callset: bytes) -> None:
    # Given a BGZF file missing only its final empty block: it inflates cleanly, htslib merely warns
    path = tmp_path / "no-eof.vcf.gz"
    path.write_bytes(bgzf_callset[:-28])

    # When / Then the missing EOF marker rejects it
    error = rejected(path)
    assert (error.reason, error.detail) == (
        "truncated-gzip",
        "BGZF end-of-file marker missing: the file is truncated",
    )


def test_a_corrupt_bgzf_block_is_rejected(tmp_path: Path, bgzf_callset: bytes) -> None:
    corrupt = bytearray(bgzf_callset)
    corrupt[len(corrupt) // 2] ^= 0xFF
    path = tmp_path / "corrupt.vcf.gz"
    path.write_bytes(bytes(corrupt))

    error = rejected(path)

    assert error.reason == "truncated-gzip"
    assert error.detail.startswith("corrupt compressed data")


def test_an_ordinary_gzip_cut_short_is_truncated(tmp_path: Path) -> None:
    whole = gzip.compress(genotype_vcf([GOOD] * 200).encode())
    path = tmp_path / "cut.vcf.gz"
    path.write_bytes(whole[:-10])

    assert rejected(path).reason == "truncated-gzip"


# ------------------------------------------------------------------------------------------ header

HEADER_LINES = genotype_vcf([GOOD]).split("\n")


def header_case(lines: list[str]) -> str:
    return "\n".join(lines)


BROKEN_HEADERS = {
    "no-fileformat": (header_case(HEADER_LINES[1:]), 1),
    "fileformat-not-vcf": (header_case(["##fileformat=BAM", *HEADER_LINES[1:]]), 1),
    "no-chrom-line": (header_case([*HEADER_LINES[:12], GOOD]), 13),
    "header-only-no-chrom": (header_case(HEADER_LINES[:12]), None),
    "malformed-meta": (header_case([*HEADER_LINES[:3], "##INFO DP", *HEADER_LINES[3:]]), 4),
    "single-hash-line": (header_case([*HEADER_LINES[:3], "#just a comment", *HEADER_LINES[3:]]), 4),
    "unterminated-meta": (header_case([*HEADER_LINES[:3], "##INFO=<ID=XX,Number=1", *HEADER_LINES[3:]]), 4),
    "structured-without-id": (header_case([*HEADER_LINES[:3], "##contig=<length=5>", *HEADER_LINES[3:]]), 4),
    "chrom-line-columns": (
        header_case([*HEADER_LINES[:12], "#CHROM\tPOS\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1", GOOD]),
        13,
    ),
    "samples-without-format": (
        header_case(
            [*HEADER_LINES[:12], "\t".join(vcf.FIXED_COLUMNS) + "\tS1", "1\t1\t.\tA\tG\t.\t.\t.\tGT"]
        ),
        13,
    ),
    "duplicate-samples": (header_case(genotype_vcf([GOOD], samples=("S1", "S2", "S1")).split("\n")), 13),
    "not-text": ("\x00\x01binary\xff garbage that is not a VCF at all\n", 1),
}


@pytest.mark.parametrize("name", ["header.vcf", "header.vcf.gz"])
@pytest.mark.parametrize("case", sorted(BROKEN_HEADERS))
def test_a_broken_header_is_a_vcf_header_error(tmp_path: Path, case: str, name: str) -> None:
    text, line = BROKEN_HEADERS[case]

    error = rejected(write_vcf_file(tmp_path, text, name))

    assert (error.reason, error.line) == ("vcf-header", line)
    assert error.detail


def test_a_random_binary_file_is_not_a_vcf(tmp_path: Path) -> None:
    path = tmp_path / "random.vcf"
    path.write_bytes(os.urandom(4096).replace(b"\x1f\x8b", b"xx"))

    assert rejected(path).reason == "vcf-header"


def test_a_sites_only_vcf_has_no_samples(tmp_path: Path) -> None:
    # Given a VCF without FORMAT/sample columns (what an annotation file looks like)
    text = "\n".join([*HEADER_LINES[:12], "\t".join(vcf.FIXED_COLUMNS), "1\t100\t.\tA\tG\t.\t.\t."])

    # When read as genotypes / Then there is nothing to ingest
    error = rejected(write_vcf_file(tmp_path, text, "sites.vcf.gz"))
    assert (error.reason, error.line) == ("vcf-no-samples", None)


def test_errors_name_positions_never_genotypes(tmp_path: Path) -> None:
    # Given a bad GT index in a call whose genotype text is distinctive
    record = "1\t150\t.\tA\tG\t50\tPASS\t.\tGT:GQ\t0/1:77\t0|3:77\t0/1:77"

    # When / Then the detail speaks of allele indexes, not of the sample's call
    error = rejected(write_vcf_file(tmp_path, genotype_vcf([GOOD, record])))
    assert error.detail == "GT refers to allele 3; the record has 1 ALT(s)"
    assert "0|3" not in str(error)
    assert "S2" not in str(error)
