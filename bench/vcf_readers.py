"""Benchmark (not a test): cyvcf2 vs pysam for the VCF -> `genomic.variants` conversion, against the gzip ceiling.

    python bench/vcf_readers.py [--files 200] [--records 1000] [--multi-files 20] [--samples 50] [--repeat 3]

Writes synthetic BGZF VCFs (text generated with numpy, compressed by htslib through pysam) into a temp dir:
a per-patient set (`--files` single-sample files of `--records` records, like the 889-patient delivery) and
a cohort set (`--multi-files` files with `--samples` samples). Then, on the same files, one process, best of
`--repeat` runs:
  cyvcf2          mmhealth.genomic.vcf.read_genotypes: the product (both passes: validation + conversion)
  cyvcf2 pass 1   its first pass alone (gzip CRC/length + BGZF EOF + header + per-line column checks)
  pysam           pysam.VariantFile, the same rows built per sample through its mapping API, no validation
  gzip ceiling    zlib inflate of the same files: no VCF reader can beat it
and checks that both readers produce the same rows. Results are printed and written as JSON (--out).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cyvcf2
import numpy as np
import pyarrow as pa
import pysam

from mmhealth.genomic import vcf
from mmhealth.genomic.vcf import layout
from mmhealth.lakehouse.schemas import GENOMIC_VARIANTS

LINEAGE = {"source_key": "bench", "object_id": "bench", "run_id": "bench"}
CONTIGS = (("1", 248956422), ("2", 242193529), ("X", 156040895))
HEADER = (
    "##fileformat=VCFv4.2\n"
    + "".join(f"##contig=<ID={name},length={length}>\n" for name, length in CONTIGS)
    + '##FILTER=<ID=LowQual,Description="Low quality">\n'
    '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
    '##FORMAT=<ID=AD,Number=R,Type=Integer,Description="Allelic depths">\n'
    '##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Read depth">\n'
    '##FORMAT=<ID=GQ,Number=1,Type=Integer,Description="Genotype quality">\n'
)
GENOTYPES = np.array(["0/0", "0/1", "1/1", "0|1", "1|0", "./.", "1/2"])
GENOTYPE_WEIGHTS = np.array([0.10, 0.45, 0.25, 0.08, 0.05, 0.02, 0.05])
HAPLOID = {"0/0": "0", "0/1": "1", "1/1": "1", "0|1": "1", "1|0": "0", "./.": ".", "1/2": "2"}


# ----------------------------------------------------------------------------------- synthetic files


def synthetic_vcf(path: Path, *, records: int, samples: int, rng: np.random.Generator) -> Path:
    """A realistic-enough callset: ~10% multi-allelic sites, haploid chrX calls, LowQual filters, IDs."""
    names = [f"pt-{i:05d}" for i in range(samples)]
    per_contig = np.array_split(np.arange(records), len(CONTIGS))
    lines = [HEADER + "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(names) + "\n"]
    for (contig, _), rows in zip(CONTIGS, per_contig, strict=True):
        positions = np.cumsum(rng.integers(1, 20_000, len(rows)))
        for pos in positions:
            lines.append(_record(contig, int(pos), samples, rng))
    plain = path.with_suffix(".plain")
    plain.write_text("".join(lines))
    pysam.tabix_compress(str(plain), str(path), force=True)
    plain.unlink()
    return path


def _record(contig: str, pos: int, samples: int, rng: np.random.Generator) -> str:
    ref, alt1, alt2 = rng.permutation(["A", "C", "G", "T"])[:3]
    multi = rng.random() < 0.1
    alts = f"{alt1},{alt2}" if multi else alt1
    gts = rng.choice(GENOTYPES, size=samples, p=GENOTYPE_WEIGHTS)
    if not multi:
        gts[gts == "1/2"] = "0/1"
    if contig == "X":  # about half the calls haploid (males)
        haploid = rng.random(samples) < 0.5
        gts = np.where(haploid, [HAPLOID[g] for g in gts], gts)
    depth = rng.integers(8, 60, samples)
    ref_depth = rng.integers(0, depth + 1)
    ad = [f"{r},{d - r}" + (",3" if multi else "") for r, d in zip(ref_depth, depth, strict=True)]
    calls = "\t".join(
        f"{g}:{a}:{d}:{q}" for g, a, d, q in zip(gts, ad, depth, rng.integers(1, 99, samples), strict=True)
    )
    qual = rng.uniform(10, 99)
    record_id = f"rs{rng.integers(1, 10**8)}" if rng.random() < 0.5 else "."
    filt = "LowQual" if qual < 20 else "PASS"
    return f"{contig}\t{pos}\t{record_id}\t{ref}\t{alts}\t{qual:.1f}\t{filt}\t.\tGT:AD:DP:GQ\t{calls}\n"


# ------------------------------------------------------------------------------------------ readers


def read_with_cyvcf2(path: Path) -> pa.Table:
    return vcf.read_genotypes(path, **LINEAGE)


def first_pass_only(path: Path) -> int:
    return layout.scan_layout(path).records


def bgzf_eof_check_only(path: Path) -> int:
    with path.open("rb") as raw:
        layout.require_bgzf_eof(raw)
    return 0


def read_with_pysam(path: Path) -> pa.Table:
    """The same rows through pysam's per-sample mapping API (what a straightforward port looks like)."""
    columns: dict[str, list[Any]] = {field.name: [] for field in GENOMIC_VARIANTS}
    with pysam.VariantFile(str(path)) as reader:
        for rec in reader:
            alts = rec.alts or ()
            filters = [str(f) for f in rec.filter]
            site = (
                rec.chrom,
                rec.pos,
                rec.ref,
                rec.id,
                rec.qual,
                "PASS" if filters in ([], ["PASS"]) else ";".join(filters),
            )
            for name, call in rec.samples.items():
                _add_call_rows(columns, site, alts, str(name), call)
    rows = len(columns["sample_id"])
    for key, value in LINEAGE.items():
        columns[key] = [value] * rows
    return pa.Table.from_pydict(columns, schema=GENOMIC_VARIANTS)


def _add_call_rows(
    columns: dict[str, list[Any]], site: tuple[Any, ...], alts: tuple[str, ...], name: str, call: Any
) -> None:
    gt = call["GT"]
    called = [a for a in gt if a is not None]
    carried = dict.fromkeys(a for a in called if a > 0)
    if not carried:
        return
    text = ("|" if call.phased else "/").join("." if a is None else str(a) for a in gt)
    ad = call.get("AD")
    for allele in carried:
        zygosity = (
            "hemizygous"
            if len(gt) == 1
            else "homozygous"
            if all(a == allele for a in called)
            else "heterozygous"
        )
        chrom, pos, ref, record_id, qual, filt = site
        for key, value in (
            ("sample_id", name),
            ("chrom", chrom),
            ("pos", pos),
            ("ref", ref),
            ("alt", alts[allele - 1]),
            ("variant_id", record_id),
            ("qual", qual),
            ("filter", filt),
            ("genotype", text),
            ("zygosity", zygosity),
            ("allele_depth", ad[allele] if ad is not None and len(ad) > allele else None),
            ("read_depth", call.get("DP")),
            ("genotype_quality", call.get("GQ")),
        ):
            columns[key].append(value)


def gzip_inflate(path: Path) -> int:
    return len(gzip.decompress(path.read_bytes()))


# ---------------------------------------------------------------------------------------- measuring


def best_of(repeat: int, files: list[Path], read: Callable[[Path], Any]) -> tuple[float, list[Any]]:
    best, results = float("inf"), []
    for _ in range(repeat):
        start = time.perf_counter()
        results = [read(path) for path in files]
        best = min(best, time.perf_counter() - start)
    return best, results


def measure(name: str, files: list[Path], repeat: int) -> dict[str, Any]:
    records = sum(first_pass_only(p) for p in files)
    cyvcf2_s, cy_tables = best_of(repeat, files, read_with_cyvcf2)
    pass1_s, _ = best_of(repeat, files, first_pass_only)
    eof_s, _ = best_of(repeat, files, bgzf_eof_check_only)
    pysam_s, ps_tables = best_of(repeat, files, read_with_pysam)
    gzip_s, sizes = best_of(repeat, files, gzip_inflate)
    rows = sum(t.num_rows for t in cy_tables)
    agree = all(_same_rows(a, b) for a, b in zip(cy_tables, ps_tables, strict=True))

    def rates(seconds: float, with_rows: bool = True) -> dict[str, float]:
        out = {"seconds": round(seconds, 4), "ms_per_file": round(seconds / len(files) * 1e3, 3)}
        out["records_per_s"] = round(records / seconds)
        if with_rows:
            out["rows_per_s"] = round(rows / seconds)
        return out

    return {
        "set": name,
        "files": len(files),
        "records": records,
        "rows": rows,
        "decompressed_mb": round(sum(sizes) / 1e6, 2),
        "cyvcf2": rates(cyvcf2_s),
        "cyvcf2_first_pass": {**rates(pass1_s, False), "share_of_cyvcf2": round(pass1_s / cyvcf2_s, 3)},
        "bgzf_eof_check": {"us_per_file": round(eof_s / len(files) * 1e6, 1)},
        "pysam": rates(pysam_s),
        "gzip_ceiling": {**rates(gzip_s, False), "mb_per_s": round(sum(sizes) / 1e6 / gzip_s, 1)},
        "pysam_over_cyvcf2": round(pysam_s / cyvcf2_s, 2),
        "readers_agree": agree,
    }


def _same_rows(a: pa.Table, b: pa.Table) -> bool:
    # pysam keeps one phase flag per call, so compare on everything but the GT text of mixed calls.
    keys = [f.name for f in GENOMIC_VARIANTS if f.name != "qual"]
    return bool(a.select(keys).to_pylist() == b.select(keys).to_pylist())


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "cyvcf2": cyvcf2.__version__,
        "pysam": pysam.__version__,
        "pyarrow": pa.__version__,
    }


def print_report(result: dict[str, Any]) -> None:
    print(
        f"\n{result['set']}: {result['files']} files, {result['records']:,} records, {result['rows']:,} rows,"
        f" {result['decompressed_mb']} MB of text; readers agree: {result['readers_agree']}"
    )
    print(f"  {'':24s}{'ms/file':>10s}{'records/s':>14s}{'rows/s':>14s}")
    for key, label in (
        ("cyvcf2", "cyvcf2 (read_genotypes)"),
        ("cyvcf2_first_pass", "  of which pass 1"),
        ("pysam", "pysam VariantFile"),
        ("gzip_ceiling", "gzip ceiling"),
    ):
        r = result[key]
        rows = f"{r['rows_per_s']:>14,}" if "rows_per_s" in r else f"{'':>14s}"
        print(f"  {label:24s}{r['ms_per_file']:>10.2f}{r['records_per_s']:>14,}{rows}")
    print(
        f"  pass 1 = {result['cyvcf2_first_pass']['share_of_cyvcf2']:.0%} of read_genotypes;"
        f" BGZF EOF marker check alone {result['bgzf_eof_check']['us_per_file']} us/file;"
        f" gzip {result['gzip_ceiling']['mb_per_s']} MB/s; pysam/cyvcf2 time = {result['pysam_over_cyvcf2']}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--multi-files", type=int, default=20)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    pysam.set_verbosity(0)  # pysam looks for a .tbi index when opening a .vcf.gz and says so on stderr
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory(prefix="vcf-readers-") as tmp:
        folder = Path(tmp)
        singles = [
            synthetic_vcf(folder / f"patient-{i:04d}.vcf.gz", records=args.records, samples=1, rng=rng)
            for i in range(args.files)
        ]
        cohorts = [
            synthetic_vcf(
                folder / f"cohort-{i:03d}.vcf.gz", records=args.records, samples=args.samples, rng=rng
            )
            for i in range(args.multi_files)
        ]
        report: dict[str, Any] = {"machine": machine(), "results": []}
        print(f"machine: {report['machine']}")
        for name, files in (
            ("per-patient (1 sample)", singles),
            (f"cohort ({args.samples} samples)", cohorts),
        ):
            if files:
                result = measure(name, files, args.repeat)
                report["results"].append(result)
                print_report(result)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
