"""The job's extraction on a DICOM series equals pyradiomics run directly on the source volume and mask."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from radiomics.featureextractor import RadiomicsFeatureExtractor

from radiomics_job import HOME
from radiomics_job.pipeline import SeriesOutcome, Source, extract, init_worker
from radiomics_job.volume import Geometry, assemble_series
from tests.unit.radiomics.dicom_series import SeriesSpec, known_volume, write_series

# v1 parameters (no resampling): the features must equal pyradiomics on the source arrays exactly, which
# checks the assembled geometry; v2 resamples, where sub-micrometre direction rounding moves the 1 mm grid.
PARAMS_V1 = HOME / "params" / "radiomics-v1.yaml"


def _mask(shape: tuple[int, int, int]) -> np.ndarray:
    """Label 2: an ellipsoid; label 1: a small off-centre block."""
    k, i, j = np.indices(shape)
    mask = np.zeros(shape, dtype=np.uint8)
    mask[((k - 5) / 3.5) ** 2 + ((i - 14) / 8) ** 2 + ((j - 16) / 9) ** 2 <= 1] = 2
    mask[2:5, 3:8, 20:26] = 1
    return mask


def test_features_of_the_assembled_series_equal_pyradiomics_on_the_source_arrays(tmp_path: Path) -> None:
    # Given a known oblique series on disk and a label map in the volume's (slice, row, col) order
    spec = SeriesSpec(known_volume((11, 28, 32), seed=9))
    mask = _mask(spec.stored.shape)
    image = assemble_series(write_series(spec, tmp_path / "series"))
    outcome = SeriesOutcome(
        Source("s", "s.json"), volume=sitk.GetArrayFromImage(image), geometry=Geometry.of(image), labels=mask
    )
    # When the job extracts features (and writes the mask) as it does for a segmented series
    init_worker(str(PARAMS_V1), single_threaded=False)
    result = extract(outcome, str(tmp_path))
    # Then each region's 107 features equal pyradiomics run directly on SimpleITK images built from the
    # source arrays with the written geometry
    assert result.error is None
    direct = RadiomicsFeatureExtractor(str(PARAMS_V1))
    for region in result.regions:
        expected = {
            name: float(value)
            for name, value in direct.execute(spec.image(), spec.image(mask), label=region["label"]).items()
            if not name.startswith("diagnostics_")
        }
        assert len(expected) == 107
        assert region["features"].keys() == expected.keys()
        for name, value in expected.items():
            assert region["features"][name] == pytest.approx(value, rel=1e-6, abs=1e-9), name
        voxel_mm3 = 0.8 * 1.1 * 2.5
        assert region["voxels"] == int(np.count_nonzero(mask == region["label"]))
        assert region["volume_mm3"] == pytest.approx(region["voxels"] * voxel_mm3, rel=1e-6)
        assert region["features"]["original_shape_VoxelVolume"] == pytest.approx(
            region["volume_mm3"], rel=1e-6
        )
    # and the mask file has the volume's geometry and labels
    written = sitk.ReadImage(str(tmp_path / "masks" / "s.nii.gz"))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(written), mask)
    np.testing.assert_allclose(written.GetOrigin(), image.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(written.GetDirection(), image.GetDirection(), atol=1e-6)


def test_an_empty_region_has_no_features_and_a_one_voxel_region_says_why(tmp_path: Path) -> None:
    # Given a volume whose label map has no lesion and a one-voxel hippocampus
    spec = SeriesSpec(known_volume((5, 12, 12)))
    labels = np.zeros(spec.stored.shape, dtype=np.uint8)
    labels[2, 6, 6] = 2
    image = spec.image()
    outcome = SeriesOutcome(
        Source("s", "s.json"),
        volume=sitk.GetArrayFromImage(image),
        geometry=Geometry.of(image),
        labels=labels,
    )
    init_worker(str(PARAMS_V1), single_threaded=False)
    # When features are extracted
    regions = {r["name"]: r for r in extract(outcome, str(tmp_path)).regions}
    # Then the lesion is reported empty (not an error) and the tiny hippocampus carries pyradiomics' reason
    assert regions["lesion"] == {
        "label": 1,
        "name": "lesion",
        "voxels": 0,
        "volume_mm3": 0.0,
        "features": None,
        "features_not_finite": None,
        "features_error": None,
    }
    assert regions["hippocampus"]["voxels"] == 1
    assert regions["hippocampus"]["features"] is None
    assert "single voxel" in regions["hippocampus"]["features_error"]
