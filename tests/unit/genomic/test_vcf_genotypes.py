"""read_genotypes: one genomic.variants row per sample x site x ALT allele carried (Given / When / Then)."""

from __future__ import annotations

import gzip
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pysam
import pytest

from mmhealth.genomic import vcf
from mmhealth.genomic.vcf import read_genotypes
from mmhealth.lakehouse.schemas import GENOMIC_VARIANTS
from tests.unit.genomic.vcf_files import LINEAGE, genotype_vcf, write_cohort_vcf, write_vcf_file

HAND_MADE = [
    # S1 het, S2 carries both ALTs, S3 no call
    "1\t100\trs1\tA\tG,T\t50\tPASS\t.\tGT:AD:DP:GQ\t0/1:5,5,0:10:30\t1/2:0,4,6:10:40\t./.:.:.:.",
    # phased calls, two failing filters, no ID, no QUAL, FORMAT without DP/GQ; S3 hom-ref
    "1\t200\t.\tC\tT\t.\tq10;s50\t.\tGT:AD\t0|1:3,4\t1|1:0,9\t0/0:9,0",
    # chrX haploid calls: S1 carries (hemizygous), S2 reference, S3 missing; FILTER "."
    "X\t300\t.\tG\tA\t20\t.\t.\tGT:DP\t1:12\t0:9\t.:.",
    # 2/2 is homozygous for ALT2 only; half-missing 1/. has the ALT in every called copy; AD short for S3
    "1\t400\trs4;rs44\tC\tA,G\t60\tPASS\t.\tGT:AD\t2/2:0,0,8\t1/.:3,5,0\t0/2:4",
]


def rows_of(table: pa.Table) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k not in LINEAGE} for row in table.to_pylist()]


def test_hand_made_callset_expands_to_one_row_per_carried_alt(tmp_path: Path) -> None:
    # Given a 3-sample VCF exercising every genotype rule
    path = write_vcf_file(tmp_path, genotype_vcf(HAND_MADE), "calls.vcf.gz")

    # When it is read
    table = read_genotypes(path, **LINEAGE)

    # Then: 1/2 splits into ALT1 and ALT2, 0/0 ./. 0 and . give nothing, haploid is hemizygous
    got = [(r["sample_id"], r["pos"], r["alt"], r["genotype"], r["zygosity"]) for r in rows_of(table)]
    assert got == [
        ("S1", 100, "G", "0/1", "heterozygous"),
        ("S2", 100, "G", "1/2", "heterozygous"),
        ("S2", 100, "T", "1/2", "heterozygous"),
        ("S1", 200, "T", "0|1", "heterozygous"),
        ("S2", 200, "T", "1|1", "homozygous"),
        ("S1", 300, "A", "1", "hemizygous"),
        ("S1", 400, "G", "2/2", "homozygous"),
        ("S2", 400, "A", "1/.", "homozygous"),
        ("S3", 400, "G", "0/2", "heterozygous"),
    ]


def test_polyploid_and_mixed_phasing_are_kept_as_written(tmp_path: Path) -> None:
    # Given triploid calls with mixed separators and a missing copy
    record = "1\t500\t.\tA\tG,T\t.\tPASS\t.\tGT\t0|1/2\t1/1|.\t0/0/0"

    # When read
    rows = rows_of(read_genotypes(write_vcf_file(tmp_path, genotype_vcf([record])), **LINEAGE))

    # Then every separator survives, and 1/1|. is homozygous in its called copies
    assert [(r["sample_id"], r["alt"], r["genotype"], r["zygosity"]) for r in rows] == [
        ("S1", "G", "0|1/2", "heterozygous"),
        ("S1", "T", "0|1/2", "heterozygous"),
        ("S2", "G", "1/1|.", "homozygous"),
    ]


def test_site_and_call_fields(tmp_path: Path) -> None:
    # Given the hand-made callset
    table = read_genotypes(write_vcf_file(tmp_path, genotype_vcf(HAND_MADE)), **LINEAGE)
    rows = rows_of(table)

    # Then AD is the carried ALT's depth, DP/GQ per call, FILTER and ID as the spec says
    s2_alt2 = rows[2]
    assert (s2_alt2["ref"], s2_alt2["alt"], s2_alt2["allele_depth"]) == ("A", "T", 6)
    assert (s2_alt2["read_depth"], s2_alt2["genotype_quality"], s2_alt2["variant_id"]) == (10, 40, "rs1")
    assert (s2_alt2["qual"], s2_alt2["filter"]) == (50.0, "PASS")
    assert rows[3]["filter"] == "q10;s50"
    assert (rows[3]["variant_id"], rows[3]["qual"], rows[3]["read_depth"]) == (None, None, None)
    assert (rows[5]["filter"], rows[5]["allele_depth"], rows[5]["read_depth"]) == ("PASS", None, 12)
    assert rows[6]["variant_id"] == "rs4;rs44"
    assert rows[8]["allele_depth"] is None  # AD "4" has no value for ALT2


def test_table_has_exactly_the_lakehouse_schema_and_lineage(tmp_path: Path) -> None:
    table = read_genotypes(write_vcf_file(tmp_path, genotype_vcf(HAND_MADE)), **LINEAGE)

    assert table.schema.equals(GENOMIC_VARIANTS, check_metadata=True)
    for column, value in LINEAGE.items():
        assert table[column].unique().to_pylist() == [value]
    assert all(table[f.name].null_count == 0 for f in GENOMIC_VARIANTS if not f.nullable)


def written_genotypes(path: Path) -> dict[tuple[str, int, str], str]:
    """GT exactly as written in the file, by (chrom, pos, sample): read from the raw text."""
    written = {}
    samples: list[str] = []
    with gzip.open(path, "rt") as text:
        for line in text:
            fields = line.rstrip("\n").split("\t")
            if line.startswith("#CHROM"):
                samples = fields[9:]
            elif not line.startswith("#"):
                for sample, column in zip(samples, fields[9:], strict=True):
                    written[(fields[0], int(fields[1]), sample)] = column.split(":")[0]
    return written


def pysam_expected_rows(path: Path) -> Counter[tuple[Any, ...]]:
    """Independent count: pysam's parse, the row rules applied by hand, GT text from the raw file."""
    written = written_genotypes(path)
    expected: Counter[tuple[Any, ...]] = Counter()
    with pysam.VariantFile(str(path)) as reader:
        for rec in reader:
            filters = [str(f) for f in rec.filter]
            site = (rec.chrom, rec.pos, rec.ref, rec.id, None if rec.qual is None else round(rec.qual, 1))
            filter_text = "PASS" if filters in ([], ["PASS"]) else ";".join(filters)
            for sample, call in rec.samples.items():
                for allele, zygosity in carried_alleles(call["GT"]):
                    expected[
                        (
                            str(sample),
                            *site[:3],
                            rec.alts[allele - 1] if rec.alts else None,
                            *site[3:],
                            filter_text,
                            written[(rec.chrom, rec.pos, str(sample))],
                            zygosity,
                            *format_values(call, allele),
                        )
                    ] += 1
    return expected


def carried_alleles(gt: tuple[int | None, ...]) -> list[tuple[int, str]]:
    """(ALT index, zygosity) for each distinct ALT in a call, by the rules of genomic.variants."""
    called = [a for a in gt if a is not None]
    carried = dict.fromkeys(a for a in called if a > 0)
    if len(gt) == 1:
        return [(allele, "hemizygous") for allele in carried]
    return [(a, "homozygous" if all(c == a for c in called) else "heterozygous") for a in carried]


def format_values(call: Any, allele: int) -> tuple[int | None, int | None, int | None]:
    """(AD of the allele, DP, GQ) of a pysam call; None where absent or '.'."""
    ad = call.get("AD") if "AD" in call else None
    depth = ad[allele] if ad is not None and len(ad) > allele else None
    return depth, call.get("DP") if "DP" in call else None, call.get("GQ") if "GQ" in call else None


def table_rows(table: pa.Table) -> Counter[tuple[Any, ...]]:
    return Counter(
        (
            r["sample_id"],
            r["chrom"],
            r["pos"],
            r["ref"],
            r["alt"],
            r["variant_id"],
            None if r["qual"] is None else round(r["qual"], 1),
            r["filter"],
            r["genotype"],
            r["zygosity"],
            r["allele_depth"],
            r["read_depth"],
            r["genotype_quality"],
        )
        for r in table.to_pylist()
    )


def test_agrees_with_an_independent_pysam_count_on_a_realistic_callset(tmp_path: Path) -> None:
    # Given a seeded 6-sample, 600-site callset with multi-allelic sites, haploid X and missing calls
    path = write_cohort_vcf(tmp_path / "cohort.vcf.gz", samples=6, records=600, seed=11)

    # When it is read, and counted independently with pysam under the same rules
    table = read_genotypes(path, **LINEAGE)
    expected = pysam_expected_rows(path)

    # Then every (sample, site, ALT) row agrees, field by field, and the file exercised every rule
    assert table.num_rows == sum(expected.values())
    assert table_rows(table) == expected
    zygosities = Counter(table["zygosity"].to_pylist())
    assert set(zygosities) == {"heterozygous", "homozygous", "hemizygous"}
    per_call = Counter((r[0], r[1], r[2]) for r in expected.elements())
    assert max(per_call.values()) >= 2  # some calls carry two ALTs (split rows)
    assert table["allele_depth"].null_count > 0
    assert table["read_depth"].null_count > 0


def test_chunked_reading_gives_the_same_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a callset and a chunk size far below its size (many RecordBatches)
    path = write_cohort_vcf(tmp_path / "cohort.vcf.gz", samples=4, records=300, seed=5)
    whole = read_genotypes(path, **LINEAGE)

    # When it is read in chunks of 7 records
    monkeypatch.setattr(vcf.genotypes, "CHUNK_GENOTYPES", 28)
    chunked = read_genotypes(path, **LINEAGE)

    # Then the rows are the same, in the same order
    assert chunked.num_rows == whole.num_rows > 0
    assert chunked.to_pylist() == whole.to_pylist()


@pytest.mark.parametrize("name", ["calls.vcf", "calls.vcf.gz"])
def test_crlf_line_endings_read_like_lf(tmp_path: Path, name: str) -> None:
    # Given the same callset written with LF and with CRLF line endings
    lf = read_genotypes(write_vcf_file(tmp_path, genotype_vcf(HAND_MADE), "lf-" + name), **LINEAGE)

    # When the CRLF file is read
    crlf = read_genotypes(
        write_vcf_file(tmp_path, genotype_vcf(HAND_MADE), "crlf-" + name, crlf=True), **LINEAGE
    )

    # Then nothing differs (no "\r" in the last sample's values or names)
    assert crlf.to_pylist() == lf.to_pylist()
    assert "S3" in crlf["sample_id"].to_pylist()


def test_plain_bgzf_and_ordinary_gzip_files_read_alike(tmp_path: Path) -> None:
    # Given one callset as plain text, BGZF and ordinary (non-blocked) gzip
    plain = write_vcf_file(tmp_path, genotype_vcf(HAND_MADE), "calls.vcf")
    bgzf = write_vcf_file(tmp_path, genotype_vcf(HAND_MADE), "calls.vcf.gz")
    ordinary = tmp_path / "calls.gzip.vcf.gz"
    with plain.open("rb") as src, gzip.open(ordinary, "wb") as dst:
        shutil.copyfileobj(src, dst)

    # When each is read / Then they agree
    tables = [read_genotypes(p, **LINEAGE).to_pylist() for p in (plain, bgzf, ordinary)]
    assert tables[0] == tables[1] == tables[2]
    assert len(tables[0]) == 9


def test_trailing_blank_lines_are_tolerated(tmp_path: Path) -> None:
    # Given a file ending in blank lines (htslib alone would fail on them)
    path = write_vcf_file(tmp_path, genotype_vcf(HAND_MADE) + "\n\r\n\n", "calls.vcf.gz")

    # When / Then it reads like the file without them
    assert read_genotypes(path, **LINEAGE).num_rows == 9


def test_a_header_only_vcf_gives_an_empty_table(tmp_path: Path) -> None:
    table = read_genotypes(write_vcf_file(tmp_path, genotype_vcf([])), **LINEAGE)

    assert table.num_rows == 0
    assert table.schema.equals(GENOMIC_VARIANTS)


def test_records_without_gt_and_float_depths(tmp_path: Path) -> None:
    # Given a record whose FORMAT has no GT, and DP declared as Float
    text = genotype_vcf(
        ["1\t10\t.\tA\tG\t.\t.\t.\tDP\t3\t4\t5", "1\t20\t.\tA\tG\t.\t.\t.\tGT:DP\t0/1:7.6\t0/0:.\t./.:1"]
    )
    text = text.replace(
        'ID=DP,Number=1,Type=Integer,Description="Read', 'ID=DP,Number=1,Type=Float,Description="Read'
    )

    # When it is read
    rows = rows_of(read_genotypes(write_vcf_file(tmp_path, text), **LINEAGE))

    # Then the GT-less record yields no rows and the Float depth is rounded to the int32 column
    assert [(r["pos"], r["sample_id"], r["read_depth"]) for r in rows] == [(20, "S1", 8)]


def test_undeclared_contigs_are_fine_when_the_header_declares_none(tmp_path: Path) -> None:
    # Given a header without ##contig lines (htslib adds contigs as it meets them)
    text = "\n".join(line for line in genotype_vcf(HAND_MADE).split("\n") if not line.startswith("##contig"))

    # When / Then every record is read
    assert read_genotypes(write_vcf_file(tmp_path, text), **LINEAGE).num_rows == 9
