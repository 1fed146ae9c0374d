"""Benchmark (not a test): FHIR NDJSON -> `clinical.*` tables, against validating FHIR model libraries alone.

    python bench/fhir_flatten.py [--patients 200] [--seed 3] [--repeat 3] [--out out/bench/fhir_flatten.json]

Writes a synthetic cohort's clinical NDJSON (mmpipe.synth: one file per resource type, ~200 resources per
patient) into a temp dir, then, over the same files, one process, best of `--repeat` runs:
  json.loads            parse each line, nothing else: the ceiling of any per-line reader
  flatten_fhir          mmhealth.clinical.fhir.flatten_fhir: the product (checks + rows + Arrow tables)
  flatten_fhir strict   the same with full R4 validation (fhirclient's models) of every resource
  fhirclient            fhirclient 4.4.0 R4 models alone: json.loads + FHIRElementFactory.instantiate (strict)
  fhir.resources R4B    fhir.resources 8.3.0 R4B pydantic models alone: model_validate_json per line
The model libraries only parse and validate (no rows); each is skipped when not installed. Results are
printed and written as JSON (--out).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from mmhealth.clinical.fhir import flatten_fhir
from mmpipe.synth import generate_cohort

LINEAGE = {"source_key": "bench", "object_id": "bench", "run_id": "bench"}


def cohort_files(directory: Path, patients: int, seed: int) -> list[Path]:
    generate_cohort(directory, patients=patients, seed=seed, modalities={"clinical"})
    return [f for f in sorted((directory / "clinical").glob("*.ndjson")) if f.stat().st_size]


def per_line(check: Callable[[bytes], Any]) -> Callable[[list[Path]], int]:
    def run(files: list[Path]) -> int:
        count = 0
        for path in files:
            with path.open("rb") as lines:
                for line in lines:
                    check(line)
                    count += 1
        return count

    return run


def flatten(strict: bool) -> Callable[[list[Path]], int]:
    def run(files: list[Path]) -> int:
        count = 0
        for path in files:
            result = flatten_fhir(path, **LINEAGE, strict=strict)
            assert not result.problems, result.problems[:3]
            count += sum(result.accepted.values())
        return count

    return run


def fhirclient_reader() -> Callable[[list[Path]], int] | None:
    try:
        from fhirclient.models.fhirelementfactory import FHIRElementFactory
    except ImportError:
        return None

    def check(line: bytes) -> None:
        resource = json.loads(line)
        FHIRElementFactory.instantiate(resource["resourceType"], resource)

    return per_line(check)


def fhir_resources_reader() -> Callable[[list[Path]], int] | None:
    try:
        from fhir.resources.R4B import get_fhir_model_class
    except ImportError:
        return None
    models: dict[str, Any] = {}

    def check(line: bytes) -> None:
        # The type is read from the line's head, so the model parses the JSON itself (its fastest path).
        resource_type = line[17 : line.index(b'"', 17)].decode()
        model = models.get(resource_type) or models.setdefault(
            resource_type, get_fhir_model_class(resource_type)
        )
        model.model_validate_json(line)

    return per_line(check)


def best_of(repeat: int, run: Callable[[list[Path]], int], files: list[Path]) -> tuple[float, int]:
    timings, count = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        count = run(files)
        timings.append(time.perf_counter() - started)
    return min(timings), count


def version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        files = cohort_files(Path(tmp), args.patients, args.seed)
        size = sum(f.stat().st_size for f in files)
        readers: dict[str, Callable[[list[Path]], int] | None] = {
            "json.loads": per_line(json.loads),
            "flatten_fhir": flatten(strict=False),
            "flatten_fhir strict": flatten(strict=True) if fhirclient_reader() else None,
            f"fhirclient {version('fhirclient')}": fhirclient_reader(),
            f"fhir.resources {version('fhir.resources')} R4B": fhir_resources_reader(),
        }
        results = {}
        for name, run in readers.items():
            if run is None:
                print(f"{name:32s} skipped (not installed)")
                continue
            seconds, count = best_of(args.repeat, run, files)
            results[name] = {
                "seconds": round(seconds, 3),
                "resources": count,
                "per_second": round(count / seconds),
            }
            print(f"{name:32s} {seconds:7.2f} s  {count:,} resources  {count / seconds:10,.0f} resources/s")

    report = {
        "benchmark": "fhir_flatten",
        "patients": args.patients,
        "seed": args.seed,
        "files": len(files),
        "bytes": size,
        "repeat": args.repeat,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "results": results,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
