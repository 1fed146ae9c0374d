"""The network's canonical grid: where a series' voxels are resampled before segmentation, and back.

The segmenter was trained on series whose voxels are 0.9-1.2 mm in-plane and 3-6 mm between slices
(TRAINING_SPACING_MM, from the synthetic generator: devtools/mmpipe/synth/imaging.py), 64 x 64 x 20-28
voxels. Real series are 256-1024 px square with 20-600 slices of 0.5-7 mm. The rule, per axis:

1. spacing: the native spacing clamped into the training range (a 0.86 mm pixel becomes about 0.9 mm, a
   1 mm slice about 3 mm, a 5 mm slice stays 5 mm; "about": the count of voxels is a whole number, rounded
   so the spacing stays inside the range), so the network sees voxel sizes it was trained on;
2. size: when the extent over that spacing exceeds MAX_SIZE (192 in-plane, 64 slices) the spacing grows
   until it fits, which bounds the network's time and memory whatever the input (a 512 x 512 x 300 CT at
   0.7 x 0.7 x 1 mm becomes 192 x 192 x 64 at 1.87 x 1.87 x 4.69 mm).
A series already on a grid that satisfies both (every synthetic series) is not resampled at all: the
network sees exactly the voxels it saw before this rule existed.

Both grids cover the same physical box (the outer faces of the first and last voxels coincide) and share
origin corner and direction, so only spacing and size matter here (array order (slice, row, col), spacing in
SimpleITK's (x, y, z) order). Intensities go in by linear interpolation (no anti-aliasing: the network
normalises and is insensitive to it); the label map comes back by nearest neighbour, so every native voxel
takes the label of the canonical voxel it lies in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy.typing as npt
import SimpleITK as sitk

Spacing = tuple[float, float, float]  # (x, y, z) mm: between columns, between rows, between slices

TRAINING_SPACING_MM: tuple[tuple[float, float], tuple[float, float], tuple[float, float]] = (
    (0.9, 1.2),  # x: PixelSpacing[1]
    (0.9, 1.2),  # y: PixelSpacing[0]
    (3.0, 6.0),  # z: slice thickness 3-5 mm + gap 0-1 mm
)
MAX_SIZE = (192, 192, 64)  # (x, y, z) voxels
SAME_SPACING = 1e-6  # relative: closer than this is the same spacing

GRID: dict[str, Any] = {
    "rule": "native spacing clamped into the training range per axis, coarser when the size exceeds the cap",
    "training_spacing_mm_xyz": [list(r) for r in TRAINING_SPACING_MM],
    "max_size_xyz": list(MAX_SIZE),
    "image_interpolator": "linear",
    "labels_back": "nearest neighbour onto the native grid",
}


@dataclass(frozen=True)
class Grid:
    """A voxel grid: (x, y, z) size and spacing; the origin corner and direction are the native ones."""

    size: tuple[int, int, int]
    spacing: Spacing

    @classmethod
    def of_array(cls, array: npt.NDArray[Any], spacing: Spacing) -> Grid:
        slices, rows, cols = array.shape
        return cls((int(cols), int(rows), int(slices)), spacing)

    def same_as(self, other: Grid) -> bool:
        return self.size == other.size and all(
            abs(a - b) <= SAME_SPACING * max(a, b) for a, b in zip(self.spacing, other.spacing, strict=True)
        )

    def image(self, array: npt.NDArray[Any]) -> sitk.Image:
        """`array` (slice, row, col) on this grid, origin at the first voxel's centre of a box at 0."""
        image = sitk.GetImageFromArray(array)
        image.SetSpacing(self.spacing)  # type: ignore[no-untyped-call, unused-ignore]
        image.SetOrigin(tuple(s / 2 for s in self.spacing))  # type: ignore[no-untyped-call, unused-ignore]
        return image

    def reference(self, pixel_type: int) -> sitk.Image:
        image = sitk.Image(list(self.size), pixel_type)
        image.SetSpacing(self.spacing)  # type: ignore[no-untyped-call, unused-ignore]
        image.SetOrigin(tuple(s / 2 for s in self.spacing))  # type: ignore[no-untyped-call, unused-ignore]
        return image


def canonical(native: Grid) -> Grid:
    """The grid the network infers on for a series on `native` (see the module docstring)."""
    size: list[int] = []
    spacing: list[float] = []
    for n, s, (low, high), cap in zip(
        native.size, native.spacing, TRAINING_SPACING_MM, MAX_SIZE, strict=True
    ):
        extent = n * s
        if s < low * (1 - SAME_SPACING):  # finer than trained: fewer, larger voxels (at least `low`)
            count = max(math.floor(extent / low + 1e-9), 1)
        elif s > high * (1 + SAME_SPACING):  # coarser than trained: more, smaller voxels (at most `high`)
            count = math.ceil(extent / high - 1e-9)
        else:
            count = n
        count = min(count, cap)
        target = s if count == n else extent / count  # the same box: the last voxel's face stays put
        size.append(max(count, 1))
        spacing.append(target)
    return Grid((size[0], size[1], size[2]), (spacing[0], spacing[1], spacing[2]))


def to_grid(array: npt.NDArray[Any], source: Grid, target: Grid, *, labels: bool) -> npt.NDArray[Any]:
    """`array` on `source` resampled onto `target` (linear for images, nearest neighbour for labels)."""
    if source.same_as(target):
        return array
    interpolator = sitk.sitkNearestNeighbor if labels else sitk.sitkLinear
    pixel = sitk.sitkUInt8 if labels else sitk.sitkFloat32
    resampled = sitk.Resample(
        source.image(array),
        target.reference(pixel),
        sitk.Transform(),
        interpolator,
        0.0,
        pixel,
    )
    return sitk.GetArrayFromImage(resampled)
