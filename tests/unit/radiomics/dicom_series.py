"""Write a known 3-D array as a DICOM series (one MR file per slice) with any geometry, for the radiomics tests.

The geometry is explicit so tests can compare what the job reads with what was written:
position(k, i, j) = origin + k * slice_spacing * normal + i * pixel_spacing[0] * col_dir
                    + j * pixel_spacing[1] * row_dir,   normal = row_dir x col_dir.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, MRImageStorage, generate_uid


def rotation(yaw: float, pitch: float, roll: float) -> npt.NDArray[np.float64]:
    """A proper rotation matrix from three angles in degrees (z, y, x)."""
    a, b, c = np.radians([yaw, pitch, roll])
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rx = np.array([[1, 0, 0], [0, np.cos(c), -np.sin(c)], [0, np.sin(c), np.cos(c)]])
    return rz @ ry @ rx


@dataclass
class SeriesSpec:
    """A stored-value volume (slice, row, col) and where it lies in patient space."""

    stored: npt.NDArray[np.uint16]
    axes: npt.NDArray[np.float64] = field(default_factory=lambda: rotation(20.0, -12.0, 8.0))  # row, col, n
    pixel_spacing: tuple[float, float] = (0.8, 1.1)  # between rows, between columns
    slice_spacing: float = 2.5
    origin: tuple[float, float, float] = (-30.5, 12.25, 40.0)
    slope: float = 0.5
    intercept: float = -100.0
    series_uid: str = field(default_factory=generate_uid)

    @property
    def row_dir(self) -> npt.NDArray[np.float64]:
        return np.round(self.axes[:, 0], 8)

    @property
    def col_dir(self) -> npt.NDArray[np.float64]:
        return np.round(self.axes[:, 1], 8)

    @property
    def normal(self) -> npt.NDArray[np.float64]:
        return np.cross(self.axes[:, 0], self.axes[:, 1])

    def position(self, k: int) -> npt.NDArray[np.float64]:
        return np.array(self.origin) + k * self.slice_spacing * self.normal

    @property
    def values(self) -> npt.NDArray[np.float64]:
        """The rescaled values a reader must return."""
        return self.stored.astype(np.float64) * self.slope + self.intercept

    def image(self, array: npt.NDArray[np.generic] | None = None) -> sitk.Image:
        """The expected SimpleITK image (of `values`, or of another array with this geometry)."""
        image = sitk.GetImageFromArray(self.values.astype(np.float32) if array is None else array)
        image.SetSpacing((self.pixel_spacing[1], self.pixel_spacing[0], self.slice_spacing))
        image.SetOrigin(tuple(float(v) for v in self.origin))
        image.SetDirection(
            tuple(float(v) for v in np.column_stack([self.axes[:, 0], self.axes[:, 1], self.normal]).ravel())
        )
        return image


def dataset(spec: SeriesSpec, k: int, position: npt.NDArray[np.float64] | None = None) -> FileDataset:
    """Slice k of the series as an explicit-VR little-endian MR instance."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "MR"
    ds.PatientID = "pt-test"
    ds.StudyInstanceUID = "1.2.3.4"
    ds.SeriesInstanceUID = spec.series_uid
    ds.StudyDate = "20240102"
    # Deliberately misleading: InstanceNumber runs against the position order.
    ds.InstanceNumber = spec.stored.shape[0] - k
    ds.ImageOrientationPatient = [f"{v:.8f}" for v in (*spec.row_dir, *spec.col_dir)]
    ds.ImagePositionPatient = [f"{v:.6f}" for v in (spec.position(k) if position is None else position)]
    ds.PixelSpacing = list(spec.pixel_spacing)
    ds.SliceThickness = spec.slice_spacing
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = spec.stored.shape[1], spec.stored.shape[2]
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.RescaleSlope = spec.slope
    ds.RescaleIntercept = spec.intercept
    ds.PixelData = spec.stored[k].astype("<u2").tobytes()
    return ds


def write_series(spec: SeriesSpec, folder: Path, seed: int = 0) -> list[Path]:
    """One file per slice, named by a shuffled number so file order says nothing; returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    numbers = np.random.default_rng(seed).permutation(spec.stored.shape[0])
    paths = []
    for k in range(spec.stored.shape[0]):
        path = folder / f"{numbers[k]:03d}.dcm"
        dataset(spec, k).save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def make_undecodable(path: Path) -> None:
    """Rewrite a slice as JPEG 2000 Lossless whose codestream is garbage: readable header, no decodable pixels."""
    from pydicom import dcmread

    ds = dcmread(path)
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51 this is not a JPEG 2000 codestream"])
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)


def remove_pixels(path: Path) -> None:
    from pydicom import dcmread

    ds = dcmread(path)
    del ds.PixelData
    ds.save_as(path, enforce_file_format=True)


def reorient(path: Path, orientation: list[float]) -> None:
    from pydicom import dcmread

    ds = dcmread(path)
    ds.ImageOrientationPatient = [f"{v:.8f}" for v in orientation]
    ds.save_as(path, enforce_file_format=True)


def known_volume(shape: tuple[int, int, int] = (9, 24, 32), seed: int = 3) -> npt.NDArray[np.uint16]:
    """A volume with structure in every axis (so a flip or transpose shows) plus noise."""
    k, i, j = np.indices(shape)
    smooth = 200 * k + 40 * i + 7 * j
    noise = np.random.default_rng(seed).integers(0, 50, size=shape)
    return (1000 + smooth + noise).astype(np.uint16)
