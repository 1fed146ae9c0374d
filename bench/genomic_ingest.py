"""Benchmark (not a test): the genomic path end to end on N per-patient VCFs, against the gzip ceiling.

    python bench/genomic_ingest.py --vcfs 889 --out out/bench

Measures, on the same files:
1. pipeline   - `mmpipe local run`: upload to the landing bucket -> S3 events -> SQS -> trigger -> the real
                state machine -> import (validate + Parquet staging) -> catalog (Iceberg commit); wall time
                from the first upload to the last execution's end, and variants/s committed.
2. conversion - the import's per-file work alone (mmhealth.genomic.vcf.read_genotypes), one process.
3. ceiling    - raw gzip decompression of the same files (zlib), one process: no VCF reader can beat it.
The published figure to beat: AWS's multimodal guidance reports ~30 minutes to import 889 small VCFs into
HealthOmics. Results are printed and written to OUT/genomic_ingest.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq


def gzip_ceiling(files: list[Path]) -> dict[str, float]:
    start = time.perf_counter()
    raw = sum(len(gzip.decompress(p.read_bytes())) for p in files)
    seconds = time.perf_counter() - start
    return {
        "seconds": round(seconds, 3),
        "mb_per_s": round(raw / 1e6 / seconds, 1),
        "decompressed_mb": raw / 1e6,
    }


def conversion_only(files: list[Path]) -> dict[str, float]:
    from mmhealth.genomic.vcf import read_genotypes

    start = time.perf_counter()
    rows = sum(
        read_genotypes(p, source_key=p.name, object_id="bench", run_id="bench").num_rows for p in files
    )
    seconds = time.perf_counter() - start
    return {"seconds": round(seconds, 3), "rows": rows, "rows_per_s": round(rows / seconds)}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--vcfs", type=int, default=889, help="per-patient VCFs to ingest")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--out", default="out/bench")
    args = parser.parse_args()
    out = Path(args.out)
    cohort = out / "cohort"

    from mmpipe.local_run import run
    from mmpipe.synth import generate_cohort

    if not (cohort / "genomic").exists():
        # About 90% of synthetic patients have a genome: synthesise enough, deliver exactly --vcfs of them.
        full = out / "cohort-full"
        if not full.exists():
            generate_cohort(full, patients=int(args.vcfs * 1.2) + 10, seed=args.seed, modalities={"genomic"})
        (cohort / "genomic").mkdir(parents=True)
        vcfs = sorted(p for p in (full / "genomic").glob("*.vcf.gz") if not p.name.startswith("clinvar"))
        for path in [*vcfs[: args.vcfs], full / "genomic" / "clinvar_annotations.vcf.gz"]:
            shutil.copy(path, cohort / "genomic" / path.name)
    files = sorted((cohort / "genomic").glob("*.vcf.gz"))
    genotype_files = [p for p in files if not p.name.startswith("clinvar")]

    ceiling = gzip_ceiling(genotype_files)
    conversion = conversion_only(genotype_files)
    run_out = out / "run"
    status = run(cohort, run_out, delivery="bench", timeout=3600, parameters={})
    document = json.loads((run_out / "run.json").read_text())
    variants = pq.read_metadata(run_out / "tables" / "genomic.variants.parquet").num_rows
    wall = document["wall_seconds"]
    result = {
        "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
        "vcf_files": len(genotype_files),
        "pipeline": {
            "status": document["status"],
            "executions": len(document["executions"]),
            "wall_seconds": wall,
            "variants": variants,
            "variants_per_s": round(variants / wall),
            "states": {e["run_id"]: e["states"] for e in document["executions"]},
        },
        "conversion_only": conversion,
        "gzip_ceiling": ceiling,
        "published_reference": "AWS multimodal guidance: ~30 min to import 889 VCFs into HealthOmics",
    }
    (out / "genomic_ingest.json").write_text(json.dumps(result, indent=2))
    print(f"{len(genotype_files)} VCFs, {variants:,} variant rows, {os.cpu_count()} cores")
    print(
        f"  pipeline (upload -> Iceberg): {wall:8.1f} s  {result['pipeline']['variants_per_s']:>10,} variants/s"
    )
    print(
        f"  conversion only (1 process):  {conversion['seconds']:8.1f} s  {conversion['rows_per_s']:>10,} rows/s"
    )
    print(f"  gzip ceiling (1 process):     {ceiling['seconds']:8.1f} s  {ceiling['mb_per_s']:>10} MB/s")
    print("  reference: ~1800 s for 889 VCFs into HealthOmics (AWS multimodal guidance)")
    return status


if __name__ == "__main__":
    sys.exit(main())
