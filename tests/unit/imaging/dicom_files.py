"""DICOM files for the imaging tests, written for real: synthetic MR series (the mmpipe synth writer, axial
and oblique) and small instances built with pydicom, good ones and every kind of bad one.

A plain module rather than a conftest: the tests import these helpers by name. Every instance built here
carries the personal values in PERSONAL_VALUES, which no error detail may quote.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.filebase import DicomFileLike
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, MRImageStorage, generate_uid

from mmhealth.imaging.dicom import read_instance
from mmpipe.synth.cohort import Patient, draw_patient
from mmpipe.synth.identity import Identity, identity_of
from mmpipe.synth.imaging import SeriesPlan, plan_series, write_series

SEED = 20240607
RUN_ID = "run-1"
DELIVERY = "incoming/d1/imaging/"

# Personal attributes of every instance built here (a real-looking name, birth date, patient id).
PATIENT_NAME = "Quillfeatherzz^Marigoldqq^^Mrs."
BIRTH_DATE = "19370412"
PATIENT_ID = "PID-SECRET-0042"
PERSONAL_VALUES = ("Quillfeatherzz", "Marigoldqq", BIRTH_DATE, "1937", PATIENT_ID)

STUDY_UID = generate_uid(entropy_srcs=["imaging-tests", "study"])
SERIES_UID = generate_uid(entropy_srcs=["imaging-tests", "series"])
FRAME_OF_REFERENCE_UID = generate_uid(entropy_srcs=["imaging-tests", "frame-of-reference"])
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def object_id_of(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------------- synthetic MR series


@dataclass(frozen=True)
class SyntheticSeries:
    plan: SeriesPlan
    patient: Patient
    identity: Identity
    files: tuple[Path, ...]  # sorted by file name: a shuffled slice order

    def file_of_slice(self, k: int) -> Path:
        """The file of the k-th slice by position (0-based)."""
        return self.files[0].parent / f"{self.plan.file_numbers[k]}.dcm"


def synthetic_patient(*, tilted: bool) -> Patient:
    """The first patient of SEED whose brain MR is oblique (tilted) or axial."""
    for index in range(1, 200):
        patient = draw_patient(SEED, index)
        if (plan_series(SEED, patient).tilt_degrees != 0) == tilted:
            return patient
    raise AssertionError("no such patient")


def write_synthetic_series(out: Path, *, tilted: bool) -> SyntheticSeries:
    patient = synthetic_patient(tilted=tilted)
    identity = identity_of(patient, SEED)
    write_series(out, out / ".masks", SEED, patient, identity)
    plan = plan_series(SEED, patient)
    files = tuple(sorted((out / patient.id / plan.series_uid).glob("*.dcm")))
    return SyntheticSeries(plan, patient, identity, files)


def index_files(
    paths: Iterable[Path], *, run_id: str = RUN_ID, delivery: str = DELIVERY, root: Path | None = None
) -> pa.Table:
    """imaging.instances rows of the files, keyed like a delivery: `<delivery><path relative to root>`."""
    tables = []
    for path in paths:
        key = delivery + str(path.relative_to(root) if root else path.name)
        tables.append(read_instance(path, source_key=key, object_id=object_id_of(key), run_id=run_id))
    return pa.concat_tables(tables)


# --------------------------------------------------------------------------------- instances from pydicom


def instance_dataset(
    *,
    number: int = 1,
    position: Sequence[float] = (0.0, 0.0, 0.0),
    orientation: Sequence[float] = AXIAL,
    spacing: Sequence[float] = (0.5, 0.5),
    rows: int = 8,
    columns: int = 8,
    series_uid: str = SERIES_UID,
    sop_uid: str | None = None,
    patient_id: str = PATIENT_ID,
    transfer_syntax: str = ExplicitVRLittleEndian,
) -> FileDataset:
    """A small, valid MR Image Storage instance (8 x 8, 16 bits) with personal attributes filled in."""
    sop_uid = sop_uid or generate_uid(entropy_srcs=["imaging-tests", series_uid, str(number)])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = transfer_syntax
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = FileDataset("", Dataset(), file_meta=meta, preamble=b"\0" * 128)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = "20160102"
    ds.Modality = "MR"
    ds.SeriesDescription = "AX T1"
    ds.PatientName = PATIENT_NAME
    ds.PatientID = patient_id
    ds.PatientBirthDate = BIRTH_DATE
    ds.BodyPartExamined = "BRAIN"
    ds.SliceThickness = 1.0
    ds.StudyInstanceUID = STUDY_UID
    ds.SeriesInstanceUID = series_uid
    ds.InstanceNumber = number
    ds.ImagePositionPatient = list(position)
    ds.ImageOrientationPatient = list(orientation)
    ds.FrameOfReferenceUID = FRAME_OF_REFERENCE_UID
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = columns
    ds.PixelSpacing = list(spacing)
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = np.arange(rows * columns, dtype="<u2").tobytes()
    return ds


def write_instance(path: Path, ds: FileDataset) -> Path:
    """Save as a DICOM Part 10 file (preamble, DICM, file meta) in the meta's transfer syntax."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_parts(
    path: Path,
    ds: Dataset,
    meta: FileMetaDataset | None,
    *,
    little_endian: bool = True,
    implicit_vr: bool = False,
    preamble: bool = True,
) -> Path:
    """Write the file meta and the data set exactly as given, for files pydicom's save_as refuses to make
    (a meta without TransferSyntaxUID, a big endian data set, pixel data that does not match the syntax,
    no file meta at all when `meta` is None)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as raw:
        if preamble:
            raw.write(b"\0" * 128 + b"DICM")
        fp = DicomFileLike(raw)
        fp.is_little_endian = little_endian
        fp.is_implicit_VR = implicit_vr
        if meta is not None:
            write_file_meta_info(fp, meta, enforce_standard=False)
        write_dataset(fp, ds)
    return path


def write_stack(
    out: Path,
    positions: Sequence[Sequence[float]],
    *,
    orientation: Sequence[float] = AXIAL,
    series_uid: str = SERIES_UID,
    **attributes: object,
) -> list[Path]:
    """One instance per position (files named in reverse, so the file order is not the slice order)."""
    paths = []
    for k, position in enumerate(positions):
        ds = instance_dataset(number=k + 1, position=position, orientation=orientation, series_uid=series_uid)
        for keyword, value in attributes.items():
            setattr(ds, keyword, value)
        paths.append(write_instance(out / series_uid / f"{len(positions) - k:04d}.dcm", ds))
    return paths


def axial_positions(count: int, spacing: float, *, start: float = -20.0) -> list[tuple[float, float, float]]:
    return [(-2.0, -2.0, start + k * spacing) for k in range(count)]
