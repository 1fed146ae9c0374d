"""The network's canonical grid (radiomics_job/grid.py) and the fallback region (radiomics_job/foreground.py)."""

from __future__ import annotations

import numpy as np
import pytest

from radiomics_job.foreground import FOREGROUND_LABEL, foreground, network_found_nothing
from radiomics_job.grid import MAX_SIZE, TRAINING_SPACING_MM, Grid, canonical, to_grid


def test_a_series_on_the_training_grid_is_not_resampled() -> None:
    # Given a synthetic-like series: 64 x 64 at 1.05 mm, 24 slices of 4.5 mm
    native = Grid((64, 64, 24), (1.05, 1.05, 4.5))
    volume = np.random.default_rng(1).random((24, 64, 64)).astype(np.float32)
    # Then its canonical grid is itself and the array comes back untouched (the same object)
    assert canonical(native) == native
    assert to_grid(volume, native, canonical(native), labels=False) is volume


@pytest.mark.parametrize(
    ("native", "expected_size"),
    [
        (Grid((256, 256, 20), (0.859375, 0.859375, 7.0)), (192, 192, 24)),  # real GE brain: capped in-plane
        (Grid((256, 256, 100), (0.9, 0.9, 1.5)), (192, 192, 50)),  # 1.5 mm slices -> 3 mm
        (Grid((512, 512, 300), (0.7, 0.7, 1.0)), MAX_SIZE),  # CT: capped on every axis
        (Grid((128, 128, 30), (1.5, 1.5, 5.0)), (160, 160, 30)),  # coarse pixels -> 1.2 mm
    ],
)
def test_the_canonical_grid_clamps_spacing_into_training_and_caps_size(
    native: Grid, expected_size: tuple[int, int, int]
) -> None:
    grid = canonical(native)
    assert grid.size == expected_size
    for n, s, size, spacing, (low, high), cap in zip(
        native.size, native.spacing, grid.size, grid.spacing, TRAINING_SPACING_MM, MAX_SIZE, strict=True
    ):
        # the same physical box, never more voxels than the cap
        assert size * spacing == pytest.approx(n * s)
        assert size <= cap
        # inside the training range unless the cap made it coarser
        assert spacing >= low * (1 - 1e-9)
        assert spacing <= high * (1 + 1e-9) or size == cap


def test_labels_go_back_to_the_native_grid_by_nearest_neighbour() -> None:
    # Given a label map on a coarse grid (2 x 2 x 2 voxels) over the box of a 4 x 4 x 4 native grid
    native = Grid((4, 4, 4), (1.0, 1.0, 1.0))
    coarse = Grid((2, 2, 2), (2.0, 2.0, 2.0))
    labels = np.arange(8, dtype=np.uint8).reshape(2, 2, 2)
    # When it goes back to the native grid
    back = to_grid(labels, coarse, native, labels=True)
    # Then each native voxel has the label of the coarse voxel it lies in
    assert back.shape == (4, 4, 4)
    assert back.dtype == np.uint8
    assert np.array_equal(back, labels.repeat(2, 0).repeat(2, 1).repeat(2, 2))


def test_foreground_is_the_body_with_its_holes_filled() -> None:
    # Given a head: a bright shell with a dark inside (ventricles) in noisy air
    _k, i, j = np.indices((12, 48, 48))
    radius = np.sqrt((i - 24.0) ** 2 + (j - 24.0) ** 2)
    volume = np.where(radius < 18, 600.0, 5.0) + np.random.default_rng(2).normal(0, 3, (12, 48, 48))
    volume[(radius < 6)] = 20.0  # dark inside
    volume[:, 2, 2] = 900.0  # a bright speck in the air: not the largest component
    # When the fallback region is computed
    mask = foreground(volume.astype(np.float32))
    # Then it is the disc, dark inside included, speck excluded
    assert mask.dtype == np.uint8
    assert mask[:, 24, 24].all()
    assert mask[:, 2, 2].sum() == 0
    disc = int((radius < 18).sum())  # every slice
    assert abs(int(mask.sum()) - disc) < 0.05 * disc


def test_a_constant_volume_has_no_foreground() -> None:
    assert foreground(np.full((4, 8, 8), 7.0, dtype=np.float32)).sum() == 0


def test_the_network_found_nothing_below_a_3x3x3_region() -> None:
    labels = np.zeros((10, 10, 10), dtype=np.uint8)
    labels[0, 0, :5] = 1  # 5 stray voxels
    assert network_found_nothing(labels)
    labels[2:5, 2:5, 2:5] = 2  # 27 voxels of hippocampus
    assert not network_found_nothing(labels)
    assert FOREGROUND_LABEL == 3


def test_network_regions_larger_than_their_anatomy_are_implausible() -> None:
    from radiomics_job.foreground import MAX_PLAUSIBLE_ML, implausible

    labels = np.zeros((20, 50, 50), dtype=np.uint8)
    labels[:10] = 2  # 25,000 voxels of "hippocampus"
    labels[10:11, :10, :10] = 1  # 100 voxels of lesion
    # At 1 mm^3 voxels the hippocampus is 25 ml (over 12 ml), the lesion 0.1 ml
    assert implausible(labels, voxel_ml=0.001) == {2: 25.0}
    assert MAX_PLAUSIBLE_ML[2] < 25.0 < MAX_PLAUSIBLE_ML[1]
    # At 0.1 mm^3 voxels both are plausible
    assert implausible(labels, voxel_ml=0.0001) == {}


def test_series_of_one_input_shape_are_segmented_in_one_forward_pass_with_the_same_labels() -> None:
    import torch

    from radiomics_job import DEFAULT_WEIGHTS
    from radiomics_job.segment import Segmenter

    segmenter = Segmenter(DEFAULT_WEIGHTS, torch.device("cpu"))
    calls: list[int] = []
    network = segmenter.network
    segmenter.network = lambda batch: (calls.append(batch.shape[0]), network(batch))[1]  # type: ignore[assignment]
    # Given two series of one shape, one of another, and a constant one (never given to the network)
    rng = np.random.default_rng(4)
    _k, i, j = np.indices((24, 64, 64))
    head = ((i - 32) ** 2 + (j - 32) ** 2 < 26**2).astype(np.float32) * 500
    series = [
        (head + rng.normal(0, 20, head.shape).astype(np.float32), (1.05, 1.05, 4.5)),
        (head * 1.2 + rng.normal(0, 20, head.shape).astype(np.float32), (1.0, 1.0, 5.0)),
        (head[:20, :48, :48].copy(), (1.1, 1.1, 4.0)),
        (np.full((20, 64, 64), 7.0, dtype=np.float32), (1.0, 1.0, 4.0)),
    ]
    # When they are segmented together
    together = segmenter.segmentations(series)
    # Then the network ran once per input shape, two series in the first pass
    assert sorted(calls) == [1, 2]
    # And each series got exactly what it gets alone (instance normalisation is per series)
    calls.clear()
    for (volume, spacing), batched in zip(series, together, strict=True):
        alone = segmenter.segmentation(volume, spacing)
        assert np.array_equal(alone.labels, batched.labels)
        assert alone.notes == batched.notes
    assert not together[3].labels.any()
