"""One geometry rule, two judges: the Lambda's series judgement (mmhealth.imaging.series, over indexed
instance rows) and the radiomics container's (radiomics_job.volume.assemble_series, over the files) hold
the same numbers and reach the same verdict on the same files. Scanner-sized noise is accepted and recorded
alike; tilt, shear, missing and duplicate slices, uneven spacing and mixed orientation or pixel spacing
are refused with their reason, on either side of each tolerance.

The container has no series-not-stacked / series-uneven-spacing reasons: it reports them as
series-mixed-geometry with a detail starting "not stacked:" / "uneven spacing:".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from pydicom.dataset import FileDataset

import radiomics_job.volume as container_volume
from mmhealth.errors import InvalidInputError
from mmhealth.imaging import dicom, series
from mmhealth.imaging.series import summarise_series
from radiomics_job.errors import SeriesError
from radiomics_job.volume import Geometry, assemble_series
from tests.unit.imaging.dicom_files import RUN_ID, index_files
from tests.unit.radiomics.dicom_series import SeriesSpec, dataset, known_volume

SHARED = (
    "ORIENTATION_TOLERANCE",
    "PIXEL_SPACING_TOLERANCE",
    "DUPLICATE_FRACTION",
    "STACK_DRIFT_TOLERANCE",
    "MISSING_SLICE_FACTOR",
    "UNEVEN_SPACING_FRACTION",
)
# Lambda reason -> (container reason, start of the container's detail)
IN_CONTAINER = {
    "series-not-stacked": ("series-mixed-geometry", "not stacked: "),
    "series-uneven-spacing": ("series-mixed-geometry", "uneven spacing: "),
}

Edit = Callable[[int, FileDataset], None]


def _tolerances(module: ModuleType) -> dict[str, float]:
    """Every public float constant of a module: the rule's numbers."""
    return {
        name: value for name, value in vars(module).items() if name.isupper() and isinstance(value, float)
    }


def test_both_judges_hold_the_same_numbers() -> None:
    # Given the Lambda's series module and the container's volume module (which cannot import mmhealth)
    lambda_side, container_side = _tolerances(series), _tolerances(container_volume)
    # Then they define exactly the rule's constants, with equal values, and dicom.py's per-file
    # orthonormality tolerance is the container's too
    assert sorted(lambda_side) == sorted(SHARED)
    assert container_side == lambda_side
    assert dicom.ORIENTATION_TOLERANCE == container_volume.ORIENTATION_TOLERANCE


# ----------------------------------------------------------------------------------------- both judges


@dataclass(frozen=True)
class Verdicts:
    lambda_reason: str | None  # None: a series row
    lambda_detail: str
    row: dict[str, Any] | None
    container_reason: str | None  # None: an image
    container_detail: str
    geometry: Geometry | None


def judge(paths: list[Path], root: Path) -> Verdicts:
    summary = summarise_series(index_files(paths, root=root), run_id=RUN_ID)
    assert summary.series.num_rows + len(summary.problems) == 1
    row = summary.series.to_pylist()[0] if summary.series.num_rows else None
    problem = summary.problems[0] if summary.problems else None
    try:
        geometry: Geometry | None = Geometry.of(assemble_series(paths))
        container_reason, container_detail = None, ""
    except SeriesError as error:
        geometry, container_reason, container_detail = None, error.reason, error.detail
    return Verdicts(
        lambda_reason=problem.reason if problem else None,
        lambda_detail=problem.detail if problem else "",
        row=row,
        container_reason=container_reason,
        container_detail=container_detail,
        geometry=geometry,
    )


def assert_refused(verdicts: Verdicts, reason: str) -> None:
    container_reason, prefix = IN_CONTAINER.get(reason, (reason, ""))
    assert (verdicts.lambda_reason, verdicts.container_reason) == (reason, container_reason), verdicts
    assert verdicts.container_detail.startswith(prefix), verdicts.container_detail


def assert_accepted(verdicts: Verdicts) -> tuple[dict[str, Any], Geometry]:
    assert (verdicts.lambda_reason, verdicts.container_reason) == (None, None), verdicts
    assert verdicts.row is not None
    assert verdicts.geometry is not None
    # both judges recorded the same measures of what they accepted
    assert verdicts.geometry.stack_drift_mm == pytest.approx(verdicts.row["stack_drift_mm"], abs=2e-6)
    assert verdicts.geometry.slice_spacing_deviation == pytest.approx(
        verdicts.row["slice_spacing_deviation"], abs=2e-6
    )
    return verdicts.row, verdicts.geometry


def write(
    folder: Path,
    spec: SeriesSpec,
    positions: list[npt.NDArray[np.float64]] | None = None,
    edit: Edit | None = None,
) -> list[Path]:
    """The spec's slices (or slices at `positions`), each edited before it is saved."""
    folder.mkdir(parents=True)
    count = spec.stored.shape[0] if positions is None else len(positions)
    paths = []
    for k in range(count):
        ds = dataset(spec, k % spec.stored.shape[0], None if positions is None else positions[k])
        if edit is not None:
            edit(k, ds)
        path = folder / f"{count - k:03d}.dcm"  # file order against position order
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def spec_of(slices: int, pixel_spacing: tuple[float, float] = (0.8, 1.1)) -> SeriesSpec:
    """An oblique series (2.5 mm slices) of 8 x 8 pixels."""
    return SeriesSpec(known_volume((slices, 8, 8)), pixel_spacing=pixel_spacing)


def along_normal(spec: SeriesSpec, distances: list[float], shifts: list[float] | None = None) -> list[Any]:
    """Positions at `distances` (mm) along the normal, each shifted in-plane along the row direction."""
    shifts = shifts or [0.0] * len(distances)
    origin = np.array(spec.origin)
    return [origin + d * spec.normal + s * spec.axes[:, 0] for d, s in zip(distances, shifts, strict=True)]


# ----------------------------------------------------------------------------------------------- noise


def test_scanner_rounding_is_accepted_by_both_and_recorded_alike(tmp_path: Path) -> None:
    # Given 12 slices whose positions carry rounding-sized noise: in-plane up to 0.2 mm per axis (the
    # pixels are 0.8 x 1.1 mm) and along the normal up to 0.04 mm (the slices are 2.5 mm apart)
    spec = spec_of(12)
    generator = np.random.default_rng(11)
    in_plane = generator.uniform(-0.2, 0.2, size=(12, 2))
    along = np.arange(12) * 2.5 + generator.uniform(-0.04, 0.04, size=12)
    positions = [
        np.array(spec.origin) + a * spec.normal + r * spec.axes[:, 0] + c * spec.axes[:, 1]
        for a, (r, c) in zip(along, in_plane, strict=True)
    ]
    # When both judges see the files
    row, geometry = assert_accepted(judge(write(tmp_path / "s", spec, positions), tmp_path))
    # Then the recorded drift is the largest in-plane distance from slice 1, and the spacing deviation the
    # largest relative distance of a gap from the median gap
    drift = np.linalg.norm(in_plane - in_plane[0], axis=1).max()
    gaps = np.diff(along)
    assert row["stack_drift_mm"] == pytest.approx(drift, abs=1e-5)
    assert row["slice_spacing_deviation"] == pytest.approx(np.abs(gaps / np.median(gaps) - 1).max(), abs=1e-5)
    assert 0.0 < row["stack_drift_mm"] < 0.5 * 0.8
    assert geometry.as_json()["stack_drift_mm"] == geometry.stack_drift_mm


def test_orientation_and_pixel_spacing_within_the_rule_are_accepted(tmp_path: Path) -> None:
    # Given slices rotated in-plane by up to 5e-4 rad (cosines differ by up to 5e-4) and a PixelSpacing
    # written with one more rounding (0.8004 for 0.8: 5e-4 of itself) on every third slice
    spec = spec_of(6)

    def noise(k: int, ds: FileDataset) -> None:
        angle = 5e-4 * (k % 2)
        row, col = spec.axes[:, 0], spec.axes[:, 1]
        rotated = (np.cos(angle) * row + np.sin(angle) * col, -np.sin(angle) * row + np.cos(angle) * col)
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in np.concatenate(rotated)]
        if k % 3 == 0:
            ds.PixelSpacing = [0.8004, 1.1]

    # When both judges see the files, Then both accept
    assert_accepted(judge(write(tmp_path / "s", spec, edit=noise), tmp_path))


# ----------------------------------------------------------------------------------------------- drift


@pytest.mark.parametrize(
    ("pixel_spacing", "shift", "accepted"),
    [
        ((0.8, 1.1), 0.36, True),  # 0.45 x the smaller pixel spacing
        ((0.8, 1.1), 0.44, False),  # 0.55 x
        ((0.5, 0.5), 0.3, False),  # the same 0.3 mm that 0.8 mm pixels accept is 0.6 x 0.5 mm pixels
        ((0.8, 1.1), 0.3, True),
    ],
)
def test_drift_off_the_stacking_line_is_judged_in_pixels(
    tmp_path: Path, pixel_spacing: tuple[float, float], shift: float, accepted: bool
) -> None:
    # Given 6 evenly spaced slices, the 5th shifted in-plane by `shift` mm
    spec = spec_of(6, pixel_spacing)
    positions = along_normal(spec, [k * 2.5 for k in range(6)], [0, 0, 0, 0, shift, 0])
    # When both judges see the files
    verdicts = judge(write(tmp_path / "s", spec, positions), tmp_path)
    # Then the drift is accepted and recorded below half the smaller pixel spacing, refused above it
    if accepted:
        row, _ = assert_accepted(verdicts)
        assert row["stack_drift_mm"] == pytest.approx(shift, abs=1e-5)
    else:
        assert_refused(verdicts, "series-not-stacked")
        pixel = min(pixel_spacing)
        assert verdicts.lambda_detail.startswith(f"slice 5 of 6 lies {shift:.3f} mm off the normal")
        assert (
            f"{shift / pixel:.2f} x its pixel spacing {pixel:g} mm (tolerance 0.5 x" in verdicts.lambda_detail
        )
        assert f"(slice 5 of 6) lies {shift:.3f} mm off the normal" in verdicts.container_detail


@pytest.mark.parametrize(("slices", "accepted"), [(6, True), (20, False)])
def test_a_gantry_tilt_is_refused_once_it_drifts_half_a_pixel(
    tmp_path: Path, slices: int, accepted: bool
) -> None:
    # Given a 1 degree gantry tilt: each slice shifted along the column direction by tan(1 deg) x its
    # distance along the normal (0.22 mm at the 6th slice, 0.83 mm at the 20th; the pixels are 0.8 mm)
    spec = spec_of(slices)
    distances = [k * 2.5 for k in range(slices)]
    tilt = np.tan(np.radians(1.0))
    positions = [np.array(spec.origin) + d * spec.normal + d * tilt * spec.axes[:, 1] for d in distances]
    # When both judges see the files
    verdicts = judge(write(tmp_path / "s", spec, positions), tmp_path)
    # Then a short stack stays within half a pixel, a longer one does not
    if accepted:
        row, _ = assert_accepted(verdicts)
        assert row["stack_drift_mm"] == pytest.approx(distances[-1] * tilt, abs=1e-5)
    else:
        assert_refused(verdicts, "series-not-stacked")
        assert verdicts.lambda_detail.startswith(f"slice 20 of 20 lies {distances[-1] * tilt:.3f} mm off")
        assert "gantry tilt or a sheared stack" in verdicts.lambda_detail
        assert "gantry tilt or a sheared stack" in verdicts.container_detail


# --------------------------------------------------------------------------------------------- spacing


@pytest.mark.parametrize(("wider", "accepted"), [(0.08, True), (0.12, False)])
def test_spacing_irregularity_is_judged_against_the_median_gap(
    tmp_path: Path, wider: float, accepted: bool
) -> None:
    # Given 6 slices 2.5 mm apart but for one gap `wider` longer
    spec = spec_of(6)
    distances = list(np.cumsum([0, 2.5, 2.5, 2.5 * (1 + wider), 2.5, 2.5]))
    # When both judges see the files
    verdicts = judge(write(tmp_path / "s", spec, along_normal(spec, distances)), tmp_path)
    # Then 8% is recorded, 12% is uneven spacing, named with its slices and share
    if accepted:
        row, _ = assert_accepted(verdicts)
        assert row["slice_spacing_deviation"] == pytest.approx(wider, abs=1e-5)
    else:
        assert_refused(verdicts, "series-uneven-spacing")
        assert verdicts.lambda_detail == (
            f"1 gap(s) off the median spacing 2.500 mm by more than 10%: {2.5 * (1 + wider):.3f} mm between "
            "slices 3 and 4 (+12.0%)"
        )
        assert "+12.0% off the median spacing 2.500 mm (tolerance 10%" in verdicts.container_detail


def test_a_missing_slice_is_refused_by_both(tmp_path: Path) -> None:
    # Given 7 slices without the 4th
    spec = spec_of(7)
    paths = write(tmp_path / "s", spec)
    gone = next(p for p in paths if p.name == "004.dcm")  # slice k is file 7 - k: the 4th is 004
    kept = [p for p in paths if p != gone]
    # When both judges see the files, Then both name the gap of two spacings
    verdicts = judge(kept, tmp_path)
    assert_refused(verdicts, "series-missing-slice")
    assert "5.000 mm between slices 3 and 4" in verdicts.lambda_detail
    assert "gap of 5.000 mm between 005.dcm and 003.dcm" in verdicts.container_detail
    assert "about 1 slice(s) missing" in verdicts.container_detail


@pytest.mark.parametrize("apart", [0.0, 0.03])
def test_duplicate_positions_are_judged_against_the_slice_spacing(tmp_path: Path, apart: float) -> None:
    # Given 6 slices 0.5 mm apart and a 7th instance (another SOP) `apart` mm beyond the 3rd: a tenth of the
    # mean spacing is 0.042 mm, so even 0.03 mm apart is one position (the old 0.01 mm said uneven)
    spec = SeriesSpec(known_volume((6, 8, 8)), slice_spacing=0.5)
    distances = [k * 0.5 for k in range(6)] + [1.0 + apart]
    # When both judges see the files
    verdicts = judge(write(tmp_path / "s", spec, along_normal(spec, distances)), tmp_path)
    # Then both call it a duplicate position, naming the pair
    assert_refused(verdicts, "series-duplicate-position")
    assert "slices 3 and 4 at " in verdicts.lambda_detail
    assert f"({apart:.3f} mm apart)" in verdicts.lambda_detail
    assert f"are {apart:.3f} mm apart at " in verdicts.container_detail


# ------------------------------------------------------------------------------------- mixed geometry


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        ("rotate", "ImageOrientationPatient differs by"),
        ("pixel spacing", "PixelSpacing differs by"),
        ("frame of reference", "FrameOfReferenceUID differs"),
    ],
)
def test_mixed_orientation_pixel_spacing_or_frame_is_refused_by_both(
    tmp_path: Path, edit: str, expected: str
) -> None:
    # Given 6 slices, the 3rd rotated in-plane by 3e-3 rad (cosines 3x the tolerance off), or with a
    # PixelSpacing 0.4% larger (4x the tolerance), or in another frame of reference
    spec = spec_of(6)

    def change(k: int, ds: FileDataset) -> None:
        ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.1"
        if k != 2:
            return
        if edit == "rotate":
            row, col = spec.axes[:, 0], spec.axes[:, 1]
            rotated = (np.cos(3e-3) * row + np.sin(3e-3) * col, -np.sin(3e-3) * row + np.cos(3e-3) * col)
            ds.ImageOrientationPatient = [f"{v:.8f}" for v in np.concatenate(rotated)]
        elif edit == "pixel spacing":
            ds.PixelSpacing = [0.8032, 1.1]
        else:
            ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.2"

    # When both judges see the files, Then both call it mixed geometry and say what differs
    verdicts = judge(write(tmp_path / "s", spec, edit=change), tmp_path)
    assert_refused(verdicts, "series-mixed-geometry")
    assert expected in verdicts.lambda_detail
    assert verdicts.container_detail.startswith(expected)


def test_an_orientation_that_is_not_orthonormal_is_refused_per_file_by_both(tmp_path: Path) -> None:
    # Given 4 slices, the 2nd with a row direction 2e-3 longer than a unit vector (twice the tolerance)
    spec = spec_of(4)

    def stretch(k: int, ds: FileDataset) -> None:
        if k == 1:
            ds.ImageOrientationPatient = [f"{v:.8f}" for v in (*(spec.axes[:, 0] * 1.002), *spec.axes[:, 1])]

    paths = write(tmp_path / "s", spec, edit=stretch)
    bad = paths[1]
    # When the Lambda indexes it and the container reads it, Then both refuse that file
    with pytest.raises(InvalidInputError) as indexed:
        index_files([bad], root=tmp_path)
    assert indexed.value.reason == "dicom-invalid-value"
    assert "the row direction has length 1.002" in str(indexed.value)
    with pytest.raises(SeriesError) as assembled:
        assemble_series(paths)
    assert assembled.value.reason == "dicom-no-geometry"
    assert assembled.value.detail.startswith(
        f"{bad.name}: ImageOrientationPatient is not two orthogonal unit"
    )
