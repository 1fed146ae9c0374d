"""Benchmark: clinical_features (pyarrow + numpy) against the DuckDB SQL reference on a large synthetic cohort.

    PYTHONPATH=. .venv/bin/python bench/clinical_features.py --patients 10000

Generates the cohort once into --workdir (clinical FHIR only), flattens it to `clinical.*` tables cached
as Parquet there, then times both versions in memory, best of --repeat, and checks they agree. Not a test
(pytest does not collect it): numbers depend on the machine; the module docstring quotes one run.
"""

from __future__ import annotations

import argparse
import platform
import resource
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from mmhealth.features.clinical import FeatureConfig, clinical_features
from mmhealth.lakehouse.clinical_tables import CLINICAL_TABLES
from mmpipe.synth import generate_cohort
from tests.unit.features.fhir_tables import clinical_tables
from tests.unit.features.sql_reference import reference_features, reference_labels
from tests.unit.features.test_clinical_features import assert_tables_close


def cached_tables(workdir: Path, patients: int, seed: int) -> dict[str, pa.Table]:
    cache = workdir / f"tables-{patients}-{seed}"
    if not cache.exists():
        delivery = workdir / f"delivery-{patients}-{seed}"
        if not delivery.exists():
            started = time.perf_counter()
            generate_cohort(delivery, patients=patients, seed=seed, modalities={"clinical"})
            print(f"generated {patients} patients in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        tables = clinical_tables(delivery / "clinical")
        print(f"flattened in {time.perf_counter() - started:.1f} s")
        cache.mkdir(parents=True)
        for name, table in tables.items():
            pq.write_table(table, cache / f"{name}.parquet")
    return {
        name: pq.read_table(cache / f"{name}.parquet", schema=CLINICAL_TABLES[name])
        for name in CLINICAL_TABLES
    }


def best_of(repeat: int, run: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mmpipe-bench-features"))
    args = parser.parse_args()
    tables = cached_tables(args.workdir, args.patients, args.seed)
    rows = {name.split(".")[1]: t.num_rows for name, t in tables.items() if t.num_rows}
    print(f"{platform.machine()} {platform.python_version()} pyarrow {pa.__version__}; rows: {rows}")
    config = FeatureConfig()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    module = clinical_features(tables, config)
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        f"peak RSS {rss_before / 1024:.0f} MB with the tables loaded, {rss_after / 1024:.0f} MB after one run"
    )
    assert_tables_close(module.features, reference_features(tables, config))
    assert module.labels.equals(reference_labels(tables, config))
    print("module and SQL reference agree")
    module_s = best_of(args.repeat, lambda: clinical_features(tables, config))
    sql_s = best_of(
        args.repeat, lambda: (reference_features(tables, config), reference_labels(tables, config))
    )
    print(f"clinical_features (pyarrow + numpy)   {module_s:.2f} s")
    print(f"DuckDB SQL reference (features+labels) {sql_s:.2f} s")


if __name__ == "__main__":
    main()
