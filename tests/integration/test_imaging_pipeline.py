"""The imaging path on the local runtime: DICOM series in, imaging tables, the radiomics job, features out.

Real template, state machine and handlers; the SageMaker Processing job is answered by the local runtime,
which runs the real radiomics entry point (MONAI segmentation with the shipped weights + pyradiomics) in
a subprocess on CPU. Bad input rides along in the same delivery and must not stop the rest.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from mmhealth.lakehouse.catalog import read_table
from mmpipe.local import LocalRuntime
from mmpipe.synth import generate_cohort

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cohort") / "delivery"
    generate_cohort(out, patients=6, seed=5, modalities={"clinical", "imaging"})
    return out


@pytest.fixture
def runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalRuntime]:
    # Judge inconsistent series at once: the whole delivery is uploaded before the first run starts.
    monkeypatch.setenv("RUN_CONFIG", json.dumps({"series_stable_seconds": 0}))
    with LocalRuntime() as rt:
        yield rt


def test_series_are_indexed_segmented_and_featurised_and_bad_files_quarantined(
    runtime: LocalRuntime, cohort: Path, tmp_path: Path
) -> None:
    # Given the cohort's MR series and FHIR, plus bad imaging input: a text file named .dcm, an instance
    # without pixels, and a copy of one series (new series UID) with a slice missing in its middle
    series_dirs = sorted(p for p in (cohort / "imaging").iterdir() if p.is_dir())
    for path in sorted(cohort.rglob("*")):
        if path.is_file() and ".truth" not in path.parts:
            runtime.upload(path, f"incoming/d-img/{path.relative_to(cohort).as_posix()}")
    runtime.put_object("incoming/d-img/imaging/notes/readme.dcm", b"scanner export notes, not DICOM\n")
    source = sorted(series_dirs[0].rglob("*.dcm"))
    no_pixels = dcmread(source[0])
    del no_pixels.PixelData
    no_pixels.SOPInstanceUID = generate_uid()
    no_pixels.save_as(tmp_path / "no-pixels.dcm")
    runtime.upload(tmp_path / "no-pixels.dcm", "incoming/d-img/imaging/odd/no-pixels.dcm")
    gapped = sorted((dcmread(p) for p in source), key=lambda ds: int(ds.InstanceNumber))
    gapped_series = generate_uid()
    for n, ds in enumerate(gapped):
        if n == len(gapped) // 2:
            continue
        ds.SeriesInstanceUID = gapped_series
        ds.SOPInstanceUID = generate_uid()
        ds.save_as(tmp_path / f"gap-{n:03d}.dcm")
        runtime.upload(tmp_path / f"gap-{n:03d}.dcm", f"incoming/d-img/imaging/gapped/{n:03d}.dcm")
    runtime.complete("d-img")

    # When the events drive the pipeline
    runtime.drain()
    executions = runtime.wait_for_executions(count=1, timeout=600)

    # Then every run succeeded
    assert [e["status"] for e in executions] == ["SUCCEEDED"] * len(executions), executions[-1].get("cause")
    # And every valid instance is indexed (the gapped copy too: its instances are fine one by one)
    good_files = sum(1 for d in series_dirs for _ in d.rglob("*.dcm"))
    instances = read_table("imaging.instances")
    assert instances is not None
    assert instances.num_rows == good_files + len(gapped) - 1
    # And each consistent series has its summary row and its radiomics, the gapped one neither
    series = read_table("imaging.series")
    assert series is not None
    assert series.num_rows == len(series_dirs)
    radiomics = read_table("features.radiomics")
    assert radiomics is not None
    assert set(radiomics["series_uid"].to_pylist()) == set(series["series_uid"].to_pylist())
    assert sorted(set(radiomics["region"].to_pylist())) == ["hippocampus", "lesion"]
    hippocampus = [r for r in radiomics.to_pylist() if r["region"] == "hippocampus"]
    assert all(r["voxels"] > 0 and len(r["features"]) == 107 for r in hippocampus)
    # with the lake keys of the series' pictures (the job's thumbnail and overlay) on every row
    assert all(r["thumbnail_key"].endswith("/thumbnail.png") for r in radiomics.to_pylist())
    assert all(r["overlay_key"].endswith("/overlay.png") for r in radiomics.to_pylist())
    # And the bad files are quarantined with their reasons
    quarantine = read_table("ops.quarantine")
    assert quarantine is not None
    reasons = {(q["key"].split("/imaging/", 1)[1], q["reason"]) for q in quarantine.to_pylist()}
    assert ("notes/readme.dcm", "not-dicom") in reasons
    assert ("odd/no-pixels.dcm", "dicom-no-pixels") in reasons
    assert {r for k, r in reasons if k.startswith("gapped/")} == {"series-missing-slice"}
    assert sum(1 for k, _ in reasons if k.startswith("gapped/")) == len(gapped) - 1
    # And imaging features exist for imaged patients with an MR before their index date
    imaging = read_table("features.imaging")
    assert imaging is not None
    assert 0 < imaging.num_rows <= len(series_dirs)
    assert {"lesion_volume_ml", "hippocampus_volume_ml", "hippocampus_shape_voxelvolume"} <= set(
        imaging.column_names
    )
