"""Imaging modality: one brain MR series (MR Image Storage, one file per slice) per imaged patient.

Geometry is real DICOM geometry, so importers must use it: the phantom head is defined in patient (LPS)
coordinates and each voxel is sampled at its own world position
    position(k, i, j) = IPP(slice 0) + k * SpacingBetweenSlices * normal + i * PixelSpacing[0] * col_dir
                        + j * PixelSpacing[1] * row_dir,      normal = row_dir x col_dir,
where ImageOrientationPatient = row_dir + col_dir. About 30% of series are oblique (tilted 5-15 degrees
about the left-right axis), so a reader that assumes axial z-positions gets the geometry wrong. File names
are a shuffled numbering, so slice order must come from the positions (InstanceNumber follows them).

Intensities (FLAIR-like, in rescaled units) come from smooth soft-edged ellipsoids - scalp, CSF,
grey/white matter, ventricles, two hippocampus-like structures (smaller and darker with atrophy) and, for
patients with small-vessel disease, one ellipsoid white-matter hyperintensity sized to the patient's lesion
volume - with a bias field and Rician noise. Stored values use a per-series RescaleSlope/Intercept.
The label map (0 background, 1 lesion, 2 hippocampus) is saved as .truth/masks/<SeriesInstanceUID>.npz in
(slice, row, col) order, slices in InstanceNumber order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian, MRImageStorage

from mmpipe.synth.cohort import Patient
from mmpipe.synth.identity import Identity
from mmpipe.synth.seeding import Stream, rng_for, stable_dicom_uid

ROWS = COLUMNS = 64
LABEL_LESION = 1
LABEL_HIPPOCAMPUS = 2
MR_IMAGE_STORAGE_URN = f"urn:oid:{MRImageStorage}"
MASK_LABELS = {
    "0": "background",
    str(LABEL_LESION): "white-matter lesion",
    str(LABEL_HIPPOCAMPUS): "hippocampus",
}
# (slope, intercept) choices: stored = (value - intercept) / slope, all within uint16.
RESCALE_CHOICES: tuple[tuple[float, float], ...] = ((1.0, -1024.0), (2.0, 0.0), (0.5, -200.0))
HIPPOCAMPUS_SEMI_AXES_MM = (3.5, 8.0, 5.0)

FloatArray = npt.NDArray[np.float64]
Vector = tuple[float, float, float]


@dataclass(frozen=True)
class SeriesPlan:
    """Everything about a series except its pixels; clinical.py reads it for the ImagingStudy resource."""

    patient_id: str
    study_uid: str
    series_uid: str
    frame_of_reference_uid: str
    sop_uids: tuple[str, ...]  # in InstanceNumber (= position) order
    file_numbers: tuple[int, ...]  # file name number of each slice, a shuffled 1..n
    pixel_spacing: float
    slice_thickness: float
    slice_spacing: float
    tilt_degrees: float
    rescale_slope: float
    rescale_intercept: float
    field_strength: float
    study_date: date
    study_time: str  # HHMMSS
    accession_number: str
    volume_center: Vector
    head_center: Vector

    @property
    def slices(self) -> int:
        return len(self.sop_uids)

    @property
    def row_direction(self) -> Vector:
        return (1.0, 0.0, 0.0)

    @property
    def column_direction(self) -> Vector:
        # Tilt about the patient's left-right axis (the usual AC-PC angulation of brain MR).
        tilt = math.radians(self.tilt_degrees)
        return (0.0, math.cos(tilt), math.sin(tilt))

    @property
    def normal(self) -> Vector:
        return _unit_cross(self.row_direction, self.column_direction)

    @property
    def description(self) -> str:
        return "AX T2 FLAIR" if self.tilt_degrees == 0 else "OBL T2 FLAIR"

    @property
    def voxel_volume_mm3(self) -> float:
        return self.pixel_spacing * self.pixel_spacing * self.slice_spacing

    def image_position(self, k: int) -> Vector:
        """ImagePositionPatient (centre of the first transmitted pixel) of the k-th slice by position."""
        half_rows = (ROWS - 1) / 2 * self.pixel_spacing
        half_cols = (COLUMNS - 1) / 2 * self.pixel_spacing
        offset = (k - (self.slices - 1) / 2) * self.slice_spacing
        r, c, n = self.row_direction, self.column_direction, self.normal
        return (
            self.volume_center[0] - half_cols * r[0] - half_rows * c[0] + offset * n[0],
            self.volume_center[1] - half_cols * r[1] - half_rows * c[1] + offset * n[1],
            self.volume_center[2] - half_cols * r[2] - half_rows * c[2] + offset * n[2],
        )

    def world_grid(self) -> FloatArray:
        """World (LPS, mm) coordinates of every voxel centre, shape (slices, rows, cols, 3)."""
        origin = np.array(self.image_position(0))
        k = np.arange(self.slices, dtype=np.float64)[:, None, None, None] * self.slice_spacing
        i = np.arange(ROWS, dtype=np.float64)[None, :, None, None] * self.pixel_spacing
        j = np.arange(COLUMNS, dtype=np.float64)[None, None, :, None] * self.pixel_spacing
        normal = np.array(self.normal)
        col = np.array(self.column_direction)
        row = np.array(self.row_direction)
        return origin + k * normal + i * col + j * row


def _unit_cross(a: Vector, b: Vector) -> Vector:
    x = a[1] * b[2] - a[2] * b[1]
    y = a[2] * b[0] - a[0] * b[2]
    z = a[0] * b[1] - a[1] * b[0]
    norm = math.sqrt(x * x + y * y + z * z)
    return (x / norm, y / norm, z / norm)


def study_uid(seed: int, patient: Patient) -> str:
    return stable_dicom_uid("mmpipe-synth", seed, patient.id, "study")


def plan_series(seed: int, patient: Patient) -> SeriesPlan:
    """The (deterministic) acquisition plan of a patient's brain MR series."""
    rng = rng_for(seed, Stream.IMAGING_PLAN, patient.index)
    slices = int(rng.integers(20, 29))
    thickness = float(rng.choice([3.0, 3.5, 4.0, 4.5, 5.0]))
    gap = float(rng.choice([0.0, 0.0, 0.0, 0.5, 1.0]))
    tilt = float(rng.uniform(5.0, 15.0) * rng.choice([-1.0, 1.0])) if rng.random() < 0.3 else 0.0
    slope, intercept = RESCALE_CHOICES[int(rng.integers(0, len(RESCALE_CHOICES)))]
    numbers = rng.permutation(slices) + 1
    if np.all(numbers == np.arange(1, slices + 1)):
        numbers = numbers[::-1]  # a shuffle that happens to be sorted would defeat its purpose
    volume_center = (rng.normal(0.0, 2.0), rng.normal(15.0, 3.0), rng.normal(10.0, 3.0))
    head_offset = rng.normal(0.0, 1.5, size=3)
    base = ("mmpipe-synth", seed, patient.id)
    return SeriesPlan(
        patient_id=patient.id,
        study_uid=study_uid(seed, patient),
        series_uid=stable_dicom_uid(*base, "series", 1),
        frame_of_reference_uid=stable_dicom_uid(*base, "frame-of-reference"),
        sop_uids=tuple(stable_dicom_uid(*base, "instance", k) for k in range(slices)),
        file_numbers=tuple(int(n) for n in numbers),
        pixel_spacing=round(float(rng.uniform(0.9, 1.2)), 4),
        slice_thickness=thickness,
        slice_spacing=thickness + gap,
        tilt_degrees=round(tilt, 2),
        rescale_slope=slope,
        rescale_intercept=intercept,
        field_strength=float(rng.choice([1.5, 3.0])),
        study_date=patient.imaging_date,
        study_time=f"{int(rng.integers(7, 19)):02d}{int(rng.integers(0, 60)):02d}{int(rng.integers(0, 60)):02d}",
        accession_number=f"ACC{int(rng.integers(10_000_000, 99_999_999))}",
        volume_center=(round(volume_center[0], 3), round(volume_center[1], 3), round(volume_center[2], 3)),
        head_center=(
            round(volume_center[0] + float(head_offset[0]), 3),
            round(volume_center[1] + float(head_offset[1]), 3),
            round(volume_center[2] + float(head_offset[2]), 3),
        ),
    )


# ---------------------------------------------------------------------------------------------------------
# The phantom
# ---------------------------------------------------------------------------------------------------------


def _inside(distance: FloatArray, edge: float, width: float) -> FloatArray:
    """Soft membership (1 inside, 0 outside) with a smooth edge, so images have no aliasing steps."""
    return 1.0 / (1.0 + np.exp(np.clip((distance - edge) / width, -50.0, 50.0)))


def _ellipsoid_distance(
    points: FloatArray, center: Vector | FloatArray, semi_axes: Vector | FloatArray
) -> FloatArray:
    """Normalised ellipsoid radius: <= 1 inside an axis-aligned ellipsoid."""
    scaled = (points - np.asarray(center)) / np.asarray(semi_axes)
    return np.sqrt(np.sum(scaled * scaled, axis=-1))


@dataclass(frozen=True)
class Anatomy:
    """Where the structures are, in world mm; drawn once per series from the pixel stream."""

    head_semi_axes: Vector
    hippocampus_centers: tuple[Vector, Vector]
    hippocampus_semi_axes: Vector
    lesion_center: Vector | None
    lesion_semi_axes: Vector | None


def _draw_anatomy(plan: SeriesPlan, patient: Patient, rng: np.random.Generator) -> Anatomy:
    fov = ROWS * plan.pixel_spacing
    slab = plan.slices * plan.slice_spacing
    head = (0.42 * fov, 0.46 * fov, min(0.45 * slab, 70.0))
    cx, cy, cz = plan.head_center
    # Atrophy shrinks the hippocampus volume by the atrophy fraction (each axis by its cube root).
    shrink = (1.0 - patient.brain.hippocampal_atrophy) ** (1.0 / 3.0)
    hippo_axes = tuple(a * shrink for a in HIPPOCAMPUS_SEMI_AXES_MM)
    hippo_x = 0.38 * head[0]
    hippo_y, hippo_z = cy + 0.05 * head[1], cz - 0.3 * head[2]
    lesion_center: Vector | None = None
    lesion_axes: Vector | None = None
    if patient.brain.lesion_volume_mm3 > 0:
        aspect = rng.uniform(0.7, 1.4, size=2)
        # V = 4/3 pi a b c with b = q1 a, c = q2 a.
        a = (3.0 * patient.brain.lesion_volume_mm3 / (4.0 * math.pi * aspect[0] * aspect[1])) ** (1.0 / 3.0)
        lesion_axes = (a, a * float(aspect[0]), a * float(aspect[1]))
        # Deep white matter above the hippocampi, away from the midline ventricles.
        side = float(rng.choice([-1.0, 1.0]))
        center = np.array(
            [
                cx + side * rng.uniform(0.2, 0.4) * head[0],
                cy + rng.uniform(-0.3, 0.3) * head[1],
                cz + rng.uniform(0.0, 0.3) * head[2],
            ]
        )
        # Centre the lesion on a slice plane: a small lesion between two thick slices would be invisible.
        normal = np.array(plan.normal)
        steps = float(np.dot(center - np.array(plan.image_position(0)), normal)) / plan.slice_spacing
        center += (round(steps) - steps) * plan.slice_spacing * normal
        lesion_center = (float(center[0]), float(center[1]), float(center[2]))
    return Anatomy(
        head_semi_axes=head,
        hippocampus_centers=((cx - hippo_x, hippo_y, hippo_z), (cx + hippo_x, hippo_y, hippo_z)),
        hippocampus_semi_axes=(hippo_axes[0], hippo_axes[1], hippo_axes[2]),
        lesion_center=lesion_center,
        lesion_semi_axes=lesion_axes,
    )


def _paint(image: FloatArray, distance: FloatArray, intensity: float, edge_width: float) -> FloatArray:
    """Blend a uniform structure into the image with a soft edge (distance <= 1 is inside)."""
    membership = _inside(distance, 1.0, edge_width)
    return image * (1.0 - membership) + intensity * membership


def _head_tissue(points: FloatArray, plan: SeriesPlan, head: Vector) -> FloatArray:
    """Scalp (bright), CSF rim (dark on FLAIR), grey matter with gyral texture, white matter, ventricles."""
    radius = _ellipsoid_distance(points, plan.head_center, head)
    scalp = _inside(radius, 1.0, 0.02)
    skull_inner = _inside(radius, 0.93, 0.015)
    brain = _inside(radius, 0.86, 0.015)
    white = _inside(radius, 0.62, 0.05)
    relative = (points - np.asarray(plan.head_center)) / np.asarray(head)
    texture = 25.0 * np.sin(3.0 * math.pi * relative[..., 0]) * np.cos(2.0 * math.pi * relative[..., 1])
    parenchyma = 430.0 * white + (560.0 + texture) * (1.0 - white)
    image = 650.0 * (scalp - skull_inner) + 120.0 * (skull_inner - brain) + parenchyma * brain
    (hx, hy, hz), (cx, cy, cz) = head, plan.head_center
    for side in (-1.0, 1.0):
        center = (cx + side * 0.12 * hx, cy - 0.05 * hy, cz + 0.1 * hz)
        ventricle = _ellipsoid_distance(points, center, (0.08 * hx, 0.3 * hy, 0.25 * hz))
        image = _paint(image, ventricle, 110.0, 0.08)
    # A smooth receive-coil bias field, as in real MR.
    return image * (1.0 + 0.08 * relative[..., 0] - 0.05 * relative[..., 2])


def render_volume(
    plan: SeriesPlan, patient: Patient, rng: np.random.Generator
) -> tuple[FloatArray, npt.NDArray[np.uint8]]:
    """Intensities (rescaled units, Rician noise) and the label map, both (slices, rows, cols)."""
    anatomy = _draw_anatomy(plan, patient, rng)
    points = plan.world_grid()
    image = _head_tissue(points, plan, anatomy.head_semi_axes)
    mask = np.zeros(image.shape, dtype=np.uint8)
    # Atrophic hippocampi are smaller (see _draw_anatomy) and darker.
    hippocampus_intensity = 640.0 - 300.0 * patient.brain.hippocampal_atrophy
    for center in anatomy.hippocampus_centers:
        distance = _ellipsoid_distance(points, center, anatomy.hippocampus_semi_axes)
        image = _paint(image, distance, hippocampus_intensity, 0.08)
        mask[distance <= 1.0] = LABEL_HIPPOCAMPUS
    if anatomy.lesion_center is not None and anatomy.lesion_semi_axes is not None:
        distance = _ellipsoid_distance(points, anatomy.lesion_center, anatomy.lesion_semi_axes)
        image = _paint(image, distance, 950.0, 0.1)
        mask[distance <= 1.0] = LABEL_LESION
    sigma = 12.0
    noisy = np.hypot(image + rng.normal(0.0, sigma, image.shape), rng.normal(0.0, sigma, image.shape))
    return noisy, mask


def to_stored_values(image: FloatArray, plan: SeriesPlan) -> npt.NDArray[np.uint16]:
    stored = np.rint((image - plan.rescale_intercept) / plan.rescale_slope)
    return np.clip(stored, 0, np.iinfo(np.uint16).max).astype(np.uint16)


# ---------------------------------------------------------------------------------------------------------
# DICOM files
# ---------------------------------------------------------------------------------------------------------


def _ds_number(value: float) -> float:
    """Round so every DS value fits the 16-character limit."""
    return round(float(value), 6) if abs(value) < 1000 else round(float(value), 3)


def _age_string(patient: Patient, on: date) -> str:
    years = (
        on.year
        - patient.birth_date.year
        - ((on.month, on.day) < (patient.birth_date.month, patient.birth_date.day))
    )
    return f"{years:03d}Y"


def series_dataset(plan: SeriesPlan, patient: Patient, identity: Identity) -> FileDataset:
    """The attributes every instance of the series shares (MR Image Storage, explicit VR little endian).

    Per-slice attributes are filled in by `set_slice`; reusing one dataset per series keeps pydicom's
    per-element cost off the hot path (thousands of files per cohort).
    """
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = FileDataset("", {}, file_meta=meta, preamble=b"\0" * 128)
    study_date = f"{plan.study_date:%Y%m%d}"
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
    ds.SOPClassUID = MRImageStorage
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = study_date
    ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = plan.study_time
    ds.AccessionNumber = plan.accession_number
    ds.Modality = "MR"
    ds.Manufacturer = "mmpipe-synth"
    ds.InstitutionName = "Synthetic General Hospital"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "MRI BRAIN WITHOUT CONTRAST"
    ds.SeriesDescription = plan.description
    ds.ManufacturerModelName = "SynthMR"
    ds.PatientName = identity.dicom_name
    ds.PatientID = patient.id
    ds.PatientBirthDate = f"{patient.birth_date:%Y%m%d}"
    ds.PatientSex = "M" if patient.sex == "male" else "F"
    ds.PatientAge = _age_string(patient, plan.study_date)
    ds.BodyPartExamined = "BRAIN"
    ds.ScanningSequence = ["SE", "IR"]
    ds.SequenceVariant = ["SK", "SP"]
    ds.ScanOptions = ""
    ds.MRAcquisitionType = "2D"
    ds.SliceThickness = plan.slice_thickness
    ds.RepetitionTime = 9000.0
    ds.EchoTime = 110.0
    ds.InversionTime = 2500.0
    ds.MagneticFieldStrength = plan.field_strength
    ds.SpacingBetweenSlices = plan.slice_spacing
    ds.ProtocolName = "BRAIN ROUTINE"
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = plan.study_uid
    ds.SeriesInstanceUID = plan.series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = 3
    ds.AcquisitionNumber = 1
    ds.ImageOrientationPatient = [_ds_number(v) for v in (*plan.row_direction, *plan.column_direction)]
    ds.FrameOfReferenceUID = plan.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ROWS
    ds.Columns = COLUMNS
    ds.PixelSpacing = [plan.pixel_spacing, plan.pixel_spacing]
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.WindowCenter = 500
    ds.WindowWidth = 1000
    ds.RescaleIntercept = plan.rescale_intercept
    ds.RescaleSlope = plan.rescale_slope
    ds.RescaleType = "US"
    return ds


def set_slice(ds: FileDataset, plan: SeriesPlan, k: int, pixels: npt.NDArray[np.uint16]) -> None:
    """Make `ds` the k-th instance by position (InstanceNumber k + 1)."""
    position = plan.image_position(k)
    ds.file_meta.MediaStorageSOPInstanceUID = UID(plan.sop_uids[k])
    ds.SOPInstanceUID = plan.sop_uids[k]
    ds.InstanceNumber = k + 1
    ds.ImagePositionPatient = [_ds_number(v) for v in position]
    ds.SliceLocation = _ds_number(sum(p * n for p, n in zip(position, plan.normal, strict=True)))
    ds.PixelData = pixels.astype("<u2").tobytes()


@dataclass(frozen=True)
class SeriesTruth:
    series_uid: str
    study_uid: str
    slices: int
    lesion_mask_volume_mm3: float
    hippocampus_mask_volume_mm3: float
    tilt_degrees: float
    rescale_slope: float
    rescale_intercept: float


def write_series(
    out_dir: Path, masks_dir: Path, seed: int, patient: Patient, identity: Identity
) -> SeriesTruth:
    """Write imaging/<patient>/<series>/<n>.dcm and the series' label map."""
    plan = plan_series(seed, patient)
    image, mask = render_volume(plan, patient, rng_for(seed, Stream.IMAGING_PIXELS, patient.index))
    stored = to_stored_values(image, plan)
    series_dir = out_dir / patient.id / plan.series_uid
    series_dir.mkdir(parents=True, exist_ok=True)
    dataset = series_dataset(plan, patient, identity)
    for k in range(plan.slices):
        set_slice(dataset, plan, k, stored[k])
        dataset.save_as(series_dir / f"{plan.file_numbers[k]}.dcm", enforce_file_format=True)
    masks_dir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        masks_dir / f"{plan.series_uid}.npz",
        mask=mask,
        spacing_mm=np.array([plan.slice_spacing, plan.pixel_spacing, plan.pixel_spacing]),
        origin_mm=np.array(plan.image_position(0)),
        orientation=np.array([*plan.row_direction, *plan.column_direction]),
    )
    return SeriesTruth(
        series_uid=plan.series_uid,
        study_uid=plan.study_uid,
        slices=plan.slices,
        lesion_mask_volume_mm3=round(
            float(np.count_nonzero(mask == LABEL_LESION)) * plan.voxel_volume_mm3, 1
        ),
        hippocampus_mask_volume_mm3=round(
            float(np.count_nonzero(mask == LABEL_HIPPOCAMPUS)) * plan.voxel_volume_mm3, 1
        ),
        tilt_degrees=plan.tilt_degrees,
        rescale_slope=plan.rescale_slope,
        rescale_intercept=plan.rescale_intercept,
    )
