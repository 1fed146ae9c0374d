"""Realistic-size DICOM series for bench/radiomics.py: a brain MR and a chest CT, one file per slice.

Sizes as clinical scanners write them (issue 11): MR 256 x 256 in-plane at 0.9 mm with N slices of 1.5 mm;
CT 512 x 512 at 0.7 mm with N slices of 1 mm. The anatomy is coarse (an ellipsoid head with skull, brain,
ventricles; a trunk with lungs, spine and table) with scanner-like noise: what matters for timing is the
size of the grid and of the regions (the fallback region is the whole head or trunk), not realism.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Phantom:
    modality: str  # "MR" | "CT"
    rows: int
    slices: int
    pixel_spacing: float
    slice_spacing: float


MR_256 = Phantom("MR", 256, 100, 0.9, 1.5)
CT_512 = Phantom("CT", 512, 300, 0.7, 1.0)


def _grid(phantom: Phantom) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Voxel centres in mm from the volume centre: z (slices), y (rows), x (columns), broadcastable."""
    half = (phantom.rows - 1) / 2
    z = (np.arange(phantom.slices) - (phantom.slices - 1) / 2)[:, None, None] * phantom.slice_spacing
    y = (np.arange(phantom.rows) - half)[None, :, None] * phantom.pixel_spacing
    x = (np.arange(phantom.rows) - half)[None, None, :] * phantom.pixel_spacing
    return z, y, x


def _ellipsoid(z: FloatArray, y: FloatArray, x: FloatArray, axes: tuple[float, float, float]) -> FloatArray:
    return np.asarray((x / axes[0]) ** 2 + (y / axes[1]) ** 2 + (z / axes[2]) ** 2 <= 1.0)


def values(phantom: Phantom, seed: int = 1) -> npt.NDArray[np.float32]:
    """The phantom's intensities (MR arbitrary units, CT Hounsfield units), (slice, row, col), float32."""
    rng = np.random.default_rng(seed)
    z, y, x = _grid(phantom)
    shape = (phantom.slices, phantom.rows, phantom.rows)
    if phantom.modality == "MR":
        head = _ellipsoid(z, y, x, (75.0, 92.0, 85.0))
        brain = _ellipsoid(z, y, x, (68.0, 85.0, 78.0))
        ventricles = _ellipsoid(z, y - 5.0, np.abs(x) - 8.0, (5.0, 22.0, 12.0))
        out = np.zeros(shape, dtype=np.float32)
        out[head] = 900.0  # scalp and skull marrow
        out[brain] = 600.0
        out[brain & ventricles] = 250.0
        out += rng.normal(0.0, 20.0, shape).astype(np.float32) * (out > 0) + np.abs(
            rng.normal(0.0, 8.0, shape)
        ).astype(np.float32)
        return out
    trunk = _ellipsoid(z * 0.0, y + 20.0, x, (170.0, 115.0, 1.0))
    lungs = _ellipsoid(z * 0.6, y + 30.0, np.abs(x) - 70.0, (55.0, 70.0, 150.0))
    spine = _ellipsoid(z * 0.0, y - 60.0, x, (18.0, 18.0, 1.0))
    table = (y > 140.0) & (y < 150.0) & (np.abs(x) < 200.0)
    out = np.full(shape, -1000.0, dtype=np.float32)
    out[np.broadcast_to(trunk, shape)] = 40.0
    out[np.broadcast_to(trunk, shape) & lungs] = -820.0
    out[np.broadcast_to(spine, shape)] = 700.0
    out[np.broadcast_to(table, shape)] = 200.0
    out += rng.normal(0.0, 12.0, shape).astype(np.float32)
    return out


def write_series(phantom: Phantom, folder: Path, seed: int = 1) -> list[Path]:
    """One DICOM file per slice (axial, uncompressed, int16 with rescale); returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    volume = values(phantom, seed)
    intercept = -1024.0 if phantom.modality == "CT" else 0.0
    stored = np.clip(np.rint(volume - intercept), 0, 32767).astype(np.int16)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    sop_class = CTImageStorage if phantom.modality == "CT" else MRImageStorage
    extent = (phantom.rows - 1) / 2 * phantom.pixel_spacing
    paths = []
    for k in range(phantom.slices):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"{k + 1:04d}.dcm"
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
        ds.Modality = phantom.modality
        ds.PatientID = f"bench-{phantom.modality.lower()}"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.StudyDate = "20260101"
        ds.InstanceNumber = k + 1
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        z = (k - (phantom.slices - 1) / 2) * phantom.slice_spacing
        ds.ImagePositionPatient = [-extent, -extent, round(z, 4)]
        ds.PixelSpacing = [phantom.pixel_spacing, phantom.pixel_spacing]
        ds.SliceThickness = phantom.slice_spacing
        ds.Rows = ds.Columns = phantom.rows
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = 1, intercept
        ds.PixelData = stored[k].tobytes()
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
