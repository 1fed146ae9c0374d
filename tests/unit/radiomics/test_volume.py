"""volume.assemble_series: a known array written as an oblique DICOM series comes back exactly, or is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from radiomics_job.errors import SeriesError
from radiomics_job.volume import Geometry, assemble_series
from tests.unit.radiomics.dicom_series import (
    SeriesSpec,
    dataset,
    known_volume,
    make_undecodable,
    remove_pixels,
    reorient,
    write_series,
)


def test_an_oblique_series_in_shuffled_files_is_assembled_with_its_values_and_geometry(
    tmp_path: Path,
) -> None:
    # Given a known volume (non-square 24 x 32 slices, 0.8 x 1.1 mm pixels, 2.5 mm slices, rescale 0.5 / -100)
    # written obliquely with shuffled file names and InstanceNumber running against position
    spec = SeriesSpec(known_volume())
    paths = write_series(spec, tmp_path / "series", seed=5)
    # When it is read back from the files in yet another order
    image = assemble_series(list(reversed(paths)))
    # Then voxels, spacing, direction and origin are the ones written
    expected = spec.image()
    np.testing.assert_allclose(sitk.GetArrayFromImage(image), spec.values, rtol=0, atol=1e-4)
    np.testing.assert_allclose(image.GetSpacing(), (1.1, 0.8, 2.5), atol=1e-6)
    np.testing.assert_allclose(image.GetDirection(), expected.GetDirection(), atol=1e-6)
    np.testing.assert_allclose(image.GetOrigin(), spec.origin, atol=1e-5)
    # and every voxel sits at its world position: the last voxel of the last slice
    last = (spec.stored.shape[2] - 1, spec.stored.shape[1] - 1, spec.stored.shape[0] - 1)
    world = (
        spec.position(last[2])
        + last[1] * spec.pixel_spacing[0] * spec.axes[:, 1]
        + last[0] * spec.pixel_spacing[1] * spec.axes[:, 0]
    )
    np.testing.assert_allclose(image.TransformIndexToPhysicalPoint(last), world, atol=1e-4)
    # and the geometry rule measured only the rounding of the written positions (6 decimals)
    geometry = Geometry.of(image)
    assert geometry.stack_drift_mm is not None
    assert geometry.slice_spacing_deviation is not None
    assert geometry.stack_drift_mm < 1e-5
    assert geometry.slice_spacing_deviation < 1e-5


def test_a_synthetic_series_matches_the_generators_geometry_and_mask(synthetic_delivery: Path) -> None:
    # Given the synth's oblique-or-axial series and its truth (mask in InstanceNumber order, origin, spacing)
    for series in sorted((synthetic_delivery / "imaging").glob("*/*")):
        truth = np.load(synthetic_delivery / ".truth" / "masks" / f"{series.name}.npz")
        # When the series is assembled
        image = assemble_series(sorted(series.glob("*.dcm")))
        # Then slice k of the volume is the mask's slice k: same shape, origin and (z, y, x) spacing
        assert sitk.GetArrayFromImage(image).shape == truth["mask"].shape
        np.testing.assert_allclose(image.GetOrigin(), truth["origin_mm"], atol=1e-3)
        np.testing.assert_allclose(image.GetSpacing()[::-1], truth["spacing_mm"], atol=1e-4)
        np.testing.assert_allclose(image.GetDirection()[0::3], truth["orientation"][:3], atol=1e-6)


def _series(tmp_path: Path) -> tuple[SeriesSpec, list[Path]]:
    spec = SeriesSpec(known_volume((7, 16, 16)))
    return spec, write_series(spec, tmp_path / "series")  # in position order, shuffled names


def _reason(paths: list[Path]) -> tuple[str, str]:
    with pytest.raises(SeriesError) as caught:
        assemble_series(paths)
    return caught.value.reason, caught.value.detail


def test_a_file_that_is_not_dicom_is_refused_by_name(tmp_path: Path) -> None:
    _, paths = _series(tmp_path)
    paths[2].write_bytes(b"this is a text file named like a DICOM file")
    reason, detail = _reason(paths)
    assert reason == "not-dicom"
    assert paths[2].name in detail


def test_a_dicom_without_pixel_data_is_refused(tmp_path: Path) -> None:
    _, paths = _series(tmp_path)
    remove_pixels(paths[1])
    assert _reason(paths) == ("dicom-no-pixels", f"{paths[1].name}: no PixelData element")


def test_undecodable_pixel_data_is_an_unsupported_transfer_syntax(tmp_path: Path) -> None:
    _, paths = _series(tmp_path)
    make_undecodable(paths[3])
    reason, detail = _reason(paths)
    assert reason == "dicom-unsupported-transfer-syntax"
    assert "JPEG 2000" in detail


def test_a_missing_middle_slice_is_refused(tmp_path: Path) -> None:
    _, paths = _series(tmp_path)
    reason, detail = _reason(paths[:3] + paths[4:])
    assert reason == "series-missing-slice"
    assert "1 slice(s) missing" in detail


def test_mixed_orientations_are_refused(tmp_path: Path) -> None:
    _, paths = _series(tmp_path)
    reorient(paths[4], [1, 0, 0, 0, 1, 0])
    assert _reason(paths)[0] == "series-mixed-geometry"


def test_two_slices_at_one_position_are_refused(tmp_path: Path) -> None:
    spec, paths = _series(tmp_path)
    copy = tmp_path / "series" / "duplicate.dcm"
    dataset(spec, 2).save_as(copy, enforce_file_format=True)
    assert _reason([*paths, copy])[0] == "series-duplicate-position"


def test_a_single_slice_takes_its_thickness_as_spacing(tmp_path: Path) -> None:
    spec = SeriesSpec(known_volume((1, 8, 8)), slice_spacing=3.0)
    image = assemble_series(write_series(spec, tmp_path / "one"))
    assert image.GetSize() == (8, 8, 1)
    assert image.GetSpacing()[2] == pytest.approx(3.0)
    # nothing stacked, nothing measured
    geometry = Geometry.of(image).as_json()
    assert (geometry["stack_drift_mm"], geometry["slice_spacing_deviation"]) == (None, None)
