"""Assemble one DICOM series (one file per slice) into a correctly oriented SimpleITK volume.

Geometry comes from the DICOM attributes, never from file names or InstanceNumber:
- slice order: position of each ImagePositionPatient along the normal n = row_dir x col_dir
  (ImageOrientationPatient = row_dir + col_dir);
- spacing: x = PixelSpacing[1] (between columns, along row_dir), y = PixelSpacing[0] (between rows, along
  col_dir), z = the mean distance between consecutive positions along n;
- direction: the columns row_dir, col_dir, n (SimpleITK's row-major 3x3 matrix);
- origin: ImagePositionPatient of the first slice along n;
- values: stored * RescaleSlope + RescaleIntercept, slice by slice, as float32.
The array of the returned image (sitk.GetArrayFromImage) is (slice, row, col), slices in position order.

Rejected series raise SeriesError: a file that is not DICOM (not-dicom), a DICOM without pixel data
(dicom-no-pixels), missing geometry attributes (dicom-no-geometry), pixel data that cannot be decoded
(dicom-unsupported-transfer-syntax), orientation/size/pixel-spacing that differ between slices or positions
that do not lie on one line along n (series-mixed-geometry), two slices at one position
(series-duplicate-position), a gap larger than MISSING_SLICE_FACTOR x the median spacing (series-missing-slice).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pydicom
import SimpleITK as sitk
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from radiomics_job.errors import (
    DICOM_NO_GEOMETRY,
    DICOM_NO_PIXELS,
    DICOM_UNSUPPORTED_TRANSFER_SYNTAX,
    NOT_DICOM,
    SERIES_DUPLICATE_POSITION,
    SERIES_MISSING_SLICE,
    SERIES_MIXED_GEOMETRY,
    SeriesError,
)

FloatArray = npt.NDArray[np.float64]

MISSING_SLICE_FACTOR = 1.5  # a step this many times the median spacing means a slice is missing
DUPLICATE_TOLERANCE_MM = 0.01  # two positions closer than this along the normal are one position
ORIENTATION_TOLERANCE = 1e-4  # direction cosines that differ by more are a different orientation
IN_PLANE_TOLERANCE = 0.05  # positions off the stacking line by more than this x pixel spacing: mixed
PIXEL_ELEMENTS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


@dataclass(frozen=True)
class Geometry:
    """Where the volume is: SimpleITK order (x, y, z) for spacing and origin, row-major 3x3 direction."""

    slices: int
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]

    @classmethod
    def of(cls, image: sitk.Image) -> Geometry:
        spacing = image.GetSpacing()  # type: ignore[no-untyped-call, unused-ignore]
        origin = image.GetOrigin()  # type: ignore[no-untyped-call, unused-ignore]
        return cls(
            slices=int(image.GetSize()[2]),  # type: ignore[no-untyped-call, unused-ignore]
            spacing=(float(spacing[0]), float(spacing[1]), float(spacing[2])),
            origin=(float(origin[0]), float(origin[1]), float(origin[2])),
            direction=tuple(float(v) for v in image.GetDirection()),  # type: ignore[no-untyped-call, unused-ignore]
        )

    def apply(self, image: sitk.Image) -> sitk.Image:
        """Give `image` (same size) this geometry; returns it."""
        image.SetSpacing(self.spacing)  # type: ignore[no-untyped-call, unused-ignore]
        image.SetOrigin(self.origin)  # type: ignore[no-untyped-call, unused-ignore]
        image.SetDirection(self.direction)  # type: ignore[no-untyped-call, unused-ignore]
        return image

    @property
    def voxel_volume_mm3(self) -> float:
        return float(self.spacing[0] * self.spacing[1] * self.spacing[2])

    def as_json(self) -> dict[str, Any]:
        return {
            "slices": self.slices,
            "spacing": [round(v, 6) for v in self.spacing],
            "spacing_order": "xyz",
            "origin": [round(v, 6) for v in self.origin],
            "direction": [round(v, 9) for v in self.direction],
        }


@dataclass(frozen=True)
class _Slice:
    path: Path
    dataset: Dataset
    orientation: FloatArray  # 6 direction cosines
    position: FloatArray  # ImagePositionPatient
    pixel_spacing: tuple[float, float]  # (between rows, between columns)
    shape: tuple[int, int]  # (rows, columns)


def read_dicom(path: Path) -> Dataset:
    """Read one DICOM file with its pixel data; not-dicom / dicom-no-pixels on failure."""
    try:
        dataset = pydicom.dcmread(path)
    except (InvalidDicomError, EOFError, OSError, ValueError, TypeError, KeyError) as error:
        raise SeriesError(NOT_DICOM, f"{path.name}: {error}") from error
    if not any(name in dataset for name in PIXEL_ELEMENTS):
        raise SeriesError(DICOM_NO_PIXELS, f"{path.name}: no PixelData element")
    return dataset


def _geometry_of(path: Path, dataset: Dataset) -> _Slice:
    try:
        orientation = np.array([float(v) for v in dataset.ImageOrientationPatient], dtype=np.float64)
        position = np.array([float(v) for v in dataset.ImagePositionPatient], dtype=np.float64)
        spacing = tuple(float(v) for v in dataset.PixelSpacing)
        shape = (int(dataset.Rows), int(dataset.Columns))
    except (AttributeError, TypeError, ValueError) as error:
        raise SeriesError(DICOM_NO_GEOMETRY, f"{path.name}: {error}") from error
    if orientation.shape != (6,) or position.shape != (3,) or len(spacing) != 2 or min(spacing) <= 0:
        raise SeriesError(DICOM_NO_GEOMETRY, f"{path.name}: malformed orientation, position or spacing")
    row, col = orientation[:3], orientation[3:]
    if abs(np.linalg.norm(row) - 1) > 1e-2 or abs(np.linalg.norm(col) - 1) > 1e-2 or abs(row @ col) > 1e-2:
        raise SeriesError(DICOM_NO_GEOMETRY, f"{path.name}: ImageOrientationPatient is not orthonormal")
    return _Slice(path, dataset, orientation, position, (spacing[0], spacing[1]), shape)


def _check_same_frame(slices: Sequence[_Slice]) -> None:
    first = slices[0]
    for other in slices[1:]:
        if np.max(np.abs(other.orientation - first.orientation)) > ORIENTATION_TOLERANCE:
            raise SeriesError(
                SERIES_MIXED_GEOMETRY,
                f"{other.path.name}: orientation {other.orientation.tolist()} differs from "
                f"{first.path.name}: {first.orientation.tolist()}",
            )
        if other.shape != first.shape:
            raise SeriesError(
                SERIES_MIXED_GEOMETRY,
                f"{other.path.name}: {other.shape} pixels, {first.path.name}: {first.shape}",
            )
        if max(abs(a - b) for a, b in zip(other.pixel_spacing, first.pixel_spacing, strict=True)) > 1e-4:
            raise SeriesError(
                SERIES_MIXED_GEOMETRY,
                f"{other.path.name}: pixel spacing {other.pixel_spacing}, {first.path.name}: {first.pixel_spacing}",
            )


def _unit_axes(orientation: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    row = orientation[:3] / np.linalg.norm(orientation[:3])
    col = orientation[3:] / np.linalg.norm(orientation[3:])
    col = col - (col @ row) * row  # remove the rounding of DS values so the direction is orthonormal
    col /= np.linalg.norm(col)
    normal = np.cross(row, col)
    return row, col, normal


def _order_and_spacing(slices: list[_Slice], normal: FloatArray) -> tuple[list[_Slice], float]:
    """Slices sorted along the normal and the slice spacing; raises on duplicates, gaps and shear."""
    ordered = sorted(slices, key=lambda s: float(s.position @ normal))
    distances = np.array([float(s.position @ normal) for s in ordered])
    if len(ordered) == 1:
        dataset = ordered[0].dataset
        thickness = dataset.get("SpacingBetweenSlices") or dataset.get("SliceThickness") or 1.0
        return ordered, float(thickness)
    steps = np.diff(distances)
    for k, step in enumerate(steps):
        if step < DUPLICATE_TOLERANCE_MM:
            raise SeriesError(
                SERIES_DUPLICATE_POSITION,
                f"{ordered[k].path.name} and {ordered[k + 1].path.name} are both at {distances[k]:.3f} mm "
                "along the slice normal",
            )
    median = float(np.median(steps))
    for k, step in enumerate(steps):
        if step > MISSING_SLICE_FACTOR * median:
            raise SeriesError(
                SERIES_MISSING_SLICE,
                f"gap of {step:.3f} mm between {ordered[k].path.name} and {ordered[k + 1].path.name} "
                f"(median spacing {median:.3f} mm): about {round(step / median) - 1} slice(s) missing",
            )
        if step < median / MISSING_SLICE_FACTOR:
            raise SeriesError(
                SERIES_MIXED_GEOMETRY,
                f"irregular spacing: {step:.3f} mm between {ordered[k].path.name} and "
                f"{ordered[k + 1].path.name} (median {median:.3f} mm)",
            )
    # Every position must lie on the line origin + t * normal (no gantry tilt / shear, no second stack).
    offsets = np.array([s.position - (s.position @ normal) * normal for s in ordered])
    drift = float(np.max(np.linalg.norm(offsets - offsets[0], axis=1)))
    if drift > IN_PLANE_TOLERANCE * min(ordered[0].pixel_spacing):
        raise SeriesError(
            SERIES_MIXED_GEOMETRY,
            f"slice positions drift {drift:.3f} mm in-plane: not one stack along the normal",
        )
    return ordered, float((distances[-1] - distances[0]) / (len(ordered) - 1))


def _pixels(item: _Slice) -> npt.NDArray[np.float32]:
    dataset = item.dataset
    try:
        stored = dataset.pixel_array
    except Exception as error:  # pydicom raises NotImplementedError, RuntimeError, ValueError... per decoder
        syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", "unknown")
        name = getattr(syntax, "name", str(syntax))
        raise SeriesError(
            DICOM_UNSUPPORTED_TRANSFER_SYNTAX, f"{item.path.name}: cannot decode {name} ({syntax}): {error}"
        ) from error
    if stored.shape != item.shape:
        raise SeriesError(
            SERIES_MIXED_GEOMETRY,
            f"{item.path.name}: pixel array {stored.shape} is not one {item.shape} frame",
        )
    slope = float(dataset.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(dataset.get("RescaleIntercept", 0.0) or 0.0)
    return (stored.astype(np.float64) * slope + intercept).astype(np.float32)


def assemble_series(paths: Sequence[Path]) -> sitk.Image:
    """The series' files (any order) as one float32 SimpleITK image; SeriesError when it cannot be done."""
    if not paths:
        raise SeriesError(NOT_DICOM, "the series has no instances")
    slices = [_geometry_of(path, read_dicom(path)) for path in paths]
    _check_same_frame(slices)
    row, col, normal = _unit_axes(slices[0].orientation)
    ordered, slice_spacing = _order_and_spacing(slices, normal)
    volume = np.stack([_pixels(item) for item in ordered])
    image = sitk.GetImageFromArray(volume)
    row_spacing, column_spacing = ordered[0].pixel_spacing
    image.SetSpacing((column_spacing, row_spacing, slice_spacing))  # type: ignore[no-untyped-call, unused-ignore]
    image.SetOrigin(tuple(float(v) for v in ordered[0].position))  # type: ignore[no-untyped-call, unused-ignore]
    image.SetDirection(tuple(float(v) for v in np.column_stack([row, col, normal]).ravel()))  # type: ignore[no-untyped-call, unused-ignore]
    return image
