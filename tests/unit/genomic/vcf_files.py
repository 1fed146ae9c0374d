"""VCF files for the genomic tests, written for real: text for the hand-made and broken cases, htslib's
BGZF (through pysam) for compressed ones, and a seeded multi-sample multi-allelic callset.

A plain module rather than a conftest: the tests import these helpers by name.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import pysam

LINEAGE = {"source_key": "incoming/d1/cohort.vcf.gz", "object_id": "0123456789abcdef", "run_id": "run-1"}

GENOTYPE_HEADER = """##fileformat=VCFv4.2
##fileDate=20260101
##contig=<ID=1,length=248956422>
##contig=<ID=X,length=156040895>
##FILTER=<ID=PASS,Description="All filters passed">
##FILTER=<ID=q10,Description="Quality below 10">
##FILTER=<ID=s50,Description="Less than 50% of samples have data">
##INFO=<ID=DP,Number=1,Type=Integer,Description="Total depth">
##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">
##FORMAT=<ID=AD,Number=R,Type=Integer,Description="Allelic depths">
##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Read depth">
##FORMAT=<ID=GQ,Number=1,Type=Integer,Description="Genotype quality">
"""
COLUMNS = "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT"


def genotype_vcf(records: Sequence[str], samples: Sequence[str] = ("S1", "S2", "S3")) -> str:
    """A VCF text with GENOTYPE_HEADER; `records` are tab-separated lines (no newline)."""
    header = GENOTYPE_HEADER + "\t".join([COLUMNS, *samples]) + "\n"
    return header + "".join(f"{line}\n" for line in records)


def bgzip(plain: Path, dest: Path) -> Path:
    """Compress with htslib's BGZF writer (as bgzip/tabix would)."""
    pysam.tabix_compress(str(plain), str(dest), force=True)
    return dest


def write_vcf_file(directory: Path, text: str, name: str = "input.vcf", *, crlf: bool = False) -> Path:
    """A real file; names ending .gz are BGZF-compressed; crlf=True writes Windows line endings."""
    data = text.replace("\n", "\r\n") if crlf else text
    if not name.endswith(".gz"):
        path = directory / name
        path.write_bytes(data.encode())
        return path
    plain = directory / f"{name}.plain"
    plain.write_bytes(data.encode())
    compressed = bgzip(plain, directory / name)
    plain.unlink()
    return compressed


def write_cohort_vcf(path: Path, *, samples: int, records: int, seed: int) -> Path:
    """A seeded, realistic multi-sample callset written by pysam (BGZF): multi-allelic sites (up to 3 ALTs),
    haploid chrX calls, missing and half-missing calls, phasing, absent FORMAT fields, FILTERs, IDs."""
    rnd = random.Random(seed)
    header = pysam.VariantHeader()
    for contig, length in (("1", 248956422), ("2", 242193529), ("X", 156040895)):
        header.add_line(f"##contig=<ID={contig},length={length}>")
    header.add_line('##FILTER=<ID=q10,Description="Quality below 10">')
    header.add_line('##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">')
    header.add_line('##FORMAT=<ID=AD,Number=R,Type=Integer,Description="Allelic depths">')
    header.add_line('##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Read depth">')
    header.add_line('##FORMAT=<ID=GQ,Number=1,Type=Integer,Description="Genotype quality">')
    names = [f"pt-{i:04d}" for i in range(samples)]
    for name in names:
        header.add_sample(name)
    with pysam.VariantFile(str(path), "wz", header=header) as out:
        position = {"1": 0, "2": 0, "X": 0}
        for index in range(records):
            contig = ("1", "2", "X")[index * 3 // records]
            position[contig] += rnd.randint(1, 3000)
            _write_site(out, rnd, contig, position[contig], names)
    return path


def _write_site(out: pysam.VariantFile, rnd: random.Random, contig: str, pos: int, names: list[str]) -> None:
    ref = rnd.choice("ACGT") * rnd.choice((1, 1, 1, 3))
    n_alts = rnd.choice((1, 1, 1, 1, 2, 3))
    alts = tuple(rnd.sample([b for b in ("A", "C", "G", "T", "TT", "GA") if b != ref], n_alts))
    record = out.new_record(
        contig=contig,
        start=pos - 1,
        alleles=(ref, *alts),
        id=f"rs{rnd.randint(1, 10**8)}" if rnd.random() < 0.5 else None,
        qual=round(rnd.uniform(5, 99), 1) if rnd.random() < 0.9 else None,
    )
    if rnd.random() < 0.15:
        record.filter.add("q10")
    elif rnd.random() < 0.8:
        record.filter.add("PASS")
    with_ad = rnd.random() < 0.85
    for name in names:
        call = record.samples[name]
        alleles = _random_call(rnd, contig, n_alts)
        call["GT"] = alleles
        call.phased = len(alleles) > 1 and rnd.random() < 0.3
        depth = rnd.randint(8, 60)
        if with_ad and rnd.random() < 0.95:
            call["AD"] = tuple(rnd.randint(0, depth) for _ in range(n_alts + 1))
        if rnd.random() < 0.9:
            call["DP"] = depth
        call["GQ"] = rnd.randint(1, 99)
    out.write(record)


def _random_call(rnd: random.Random, contig: str, n_alts: int) -> tuple[int | None, ...]:
    def allele() -> int:
        return rnd.choice([0, 0, 1, *range(1, n_alts + 1)])

    if contig == "X" and rnd.random() < 0.5:
        return (None,) if rnd.random() < 0.05 else (allele(),)
    roll = rnd.random()
    if roll < 0.05:
        return (None, None)
    if roll < 0.08:
        return (allele(), None)
    return (allele(), allele())
