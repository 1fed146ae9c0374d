"""One series that fails inside the radiomics job does not fail the run: on the local runtime (real template,
state machine, handlers; the job a subprocess with two supervised workers), the good series' features are
committed and the failing one is quarantined with the job's own reason.

The failing series is consistent for the Lambda side (functions/mmhealth/imaging/series.py: its headers
stack; the importer never reads pixel bytes), so it reaches the job; one of its slices holds a JPEG 2000
codestream that is not one, so the job cannot decode it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from mmhealth.lakehouse.catalog import read_table
from mmpipe.local import LocalRuntime
from mmpipe.synth import generate_cohort
from tests.integration.test_imaging_pipeline import runtime  # noqa: F401 (the fixture)
from tests.unit.radiomics.dicom_series import make_undecodable

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_series_the_job_cannot_process_is_quarantined_and_the_others_are_committed(
    runtime: LocalRuntime,  # noqa: F811 (the imported fixture)
    tmp_path: Path,
) -> None:
    # Given a small cohort's MR series and FHIR, and a copy of one series (new series UID) whose middle
    # slice's pixel data is an undecodable JPEG 2000 codestream
    cohort = tmp_path / "delivery"
    generate_cohort(cohort, patients=3, seed=5, modalities={"clinical", "imaging"})
    for path in sorted(cohort.rglob("*")):
        if path.is_file() and ".truth" not in path.parts:
            runtime.upload(path, f"incoming/d-iso/{path.relative_to(cohort).as_posix()}")
    good_uids = {
        str(dcmread(next(d.rglob("*.dcm")), stop_before_pixels=True).SeriesInstanceUID)
        for d in (cohort / "imaging").iterdir()
        if d.is_dir()
    }
    assert len(good_uids) >= 2
    source = sorted(next(d for d in sorted((cohort / "imaging").iterdir()) if d.is_dir()).rglob("*.dcm"))
    bad_uid = generate_uid()
    for n, path in enumerate(sorted(source, key=lambda p: int(dcmread(p).InstanceNumber))):
        ds = dcmread(path)
        ds.SeriesInstanceUID = bad_uid
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        copy = tmp_path / "bad" / f"{n:03d}.dcm"
        copy.parent.mkdir(exist_ok=True)
        ds.save_as(copy, enforce_file_format=True)
        if n == len(source) // 2:
            make_undecodable(copy)
        runtime.upload(copy, f"incoming/d-iso/imaging/bad/{n:03d}.dcm")

    # When the events drive the pipeline
    runtime.drain()
    executions = runtime.wait_for_executions(count=1, timeout=600)

    # Then every run succeeded
    assert [e["status"] for e in executions] == ["SUCCEEDED"] * len(executions), executions[-1].get("cause")
    # And the job reached every series: all of them are consistent series
    series = read_table("imaging.series")
    assert series is not None
    assert set(series["series_uid"].to_pylist()) == good_uids | {bad_uid}
    # And the good series' features are committed, the bad one's are not
    radiomics = read_table("features.radiomics")
    assert radiomics is not None
    assert set(radiomics["series_uid"].to_pylist()) == good_uids
    hippocampus = [r for r in radiomics.to_pylist() if r["region"] == "hippocampus"]
    assert hippocampus
    assert all(r["voxels"] > 0 and len(r["features"]) == 107 for r in hippocampus)
    # And every file of the bad series is quarantined with the job's reason, naming the series
    quarantine = read_table("ops.quarantine")
    assert quarantine is not None
    bad = [q for q in quarantine.to_pylist() if "/imaging/bad/" in q["key"]]
    assert len(bad) == len(source)
    assert {q["reason"] for q in bad} == {"dicom-unsupported-transfer-syntax"}
    assert all(q["detail"].startswith(f"series {bad_uid}: ") and "cannot decode" in q["detail"] for q in bad)
    assert {q["stage"] for q in bad} == {"catalog"}
