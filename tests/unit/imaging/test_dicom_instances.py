"""read_instance on good files: synthetic axial and oblique MR series, every encoding, large files read
without their pixel data, and the transfer syntaxes it accepts."""

from __future__ import annotations

import re
import time
import tracemalloc
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from pydicom import uid
from pydicom.encaps import encapsulate
from pydicom.pixels import get_decoder
from pydicom.pixels.decoders import pylibjpeg as pylibjpeg_decoders
from pydicom.pixels.decoders import rle as rle_decoders

from mmhealth.imaging.dicom import SUPPORTED_TRANSFER_SYNTAXES, read_instance
from mmhealth.lakehouse.imaging_tables import IMAGING_INSTANCES
from tests.unit.imaging.dicom_files import (
    DELIVERY,
    PATIENT_ID,
    SERIES_UID,
    STUDY_UID,
    SyntheticSeries,
    index_files,
    instance_dataset,
    object_id_of,
    write_instance,
    write_parts,
    write_synthetic_series,
)

LINEAGE = {"source_key": "incoming/d1/imaging/1.dcm", "object_id": "0123456789abcdef", "run_id": "run-1"}
# The packages the radiomics container installs next to pydicom to decode compressed pixel data.
CONTAINER_DECODERS = {"pylibjpeg", "pylibjpeg-libjpeg", "pylibjpeg-openjpeg"}


@pytest.fixture(scope="module")
def axial(tmp_path_factory: pytest.TempPathFactory) -> SyntheticSeries:
    return write_synthetic_series(tmp_path_factory.mktemp("axial"), tilted=False)


@pytest.fixture(scope="module")
def oblique(tmp_path_factory: pytest.TempPathFactory) -> SyntheticSeries:
    return write_synthetic_series(tmp_path_factory.mktemp("oblique"), tilted=True)


def test_a_synthetic_slice_becomes_one_row_with_the_plans_identity_and_geometry(
    axial: SyntheticSeries,
) -> None:
    # Given the 4th slice (by position) of a synthetic axial MR series
    plan, k = axial.plan, 3
    path = axial.file_of_slice(k)

    # When it is indexed
    table = read_instance(path, **LINEAGE)

    # Then one row carries the plan's identity, geometry and rescale, and the file's lineage
    assert table.schema == IMAGING_INSTANCES
    row = table.to_pylist()[0]
    assert row == {
        "patient_id": axial.patient.id,
        "study_uid": plan.study_uid,
        "series_uid": plan.series_uid,
        "sop_uid": plan.sop_uids[k],
        "sop_class_uid": uid.MRImageStorage,
        "modality": "MR",
        "body_part": "BRAIN",
        "study_date": plan.study_date,
        "series_description": "AX T2 FLAIR",
        "instance_number": k + 1,
        "rows": 64,
        "columns": 64,
        "number_of_frames": 1,
        "pixel_spacing": [plan.pixel_spacing, plan.pixel_spacing],
        "slice_thickness": plan.slice_thickness,
        "image_orientation": pytest.approx([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]),
        "image_position": pytest.approx(list(plan.image_position(k)), abs=1e-5),
        "frame_of_reference_uid": plan.frame_of_reference_uid,
        "transfer_syntax_uid": uid.ExplicitVRLittleEndian,
        "bits_allocated": 16,
        "photometric_interpretation": "MONOCHROME2",
        "rescale_slope": plan.rescale_slope,
        "rescale_intercept": plan.rescale_intercept,
        "file_size": path.stat().st_size,
        **LINEAGE,
    }


def test_an_oblique_slice_keeps_its_tilted_orientation(oblique: SyntheticSeries) -> None:
    # Given a slice of a synthetic series tilted about the left-right axis
    plan = oblique.plan
    assert plan.tilt_degrees != 0

    # When it is indexed
    row = read_instance(oblique.file_of_slice(0), **LINEAGE).to_pylist()[0]

    # Then the orientation is the plan's row and (tilted) column direction, the position the plan's
    assert row["image_orientation"] == pytest.approx([*plan.row_direction, *plan.column_direction], abs=1e-6)
    assert row["image_position"] == pytest.approx(list(plan.image_position(0)), abs=1e-5)


def test_personal_attributes_are_not_indexed(axial: SyntheticSeries) -> None:
    # Given a synthetic slice whose PatientName and PatientBirthDate look real
    identity, patient = axial.identity, axial.patient

    # When it is indexed
    table = read_instance(axial.files[0], **LINEAGE)

    # Then neither the name nor the birth date appear anywhere in the row
    text = repr(table.to_pylist())
    assert identity.family not in text
    assert identity.given not in text
    assert f"{patient.birth_date:%Y%m%d}" not in text
    assert str(patient.birth_date) not in text


@pytest.mark.parametrize(
    ("transfer_syntax", "little_endian", "implicit_vr"),
    [
        (uid.ImplicitVRLittleEndian, True, True),
        (uid.ExplicitVRLittleEndian, True, False),
        (uid.ExplicitVRBigEndian, False, False),
    ],
)
def test_native_encodings_index_the_same_values(
    tmp_path: Path, transfer_syntax: str, little_endian: bool, implicit_vr: bool
) -> None:
    # Given the same instance written in each native encoding
    ds = instance_dataset(position=(1.5, -2.25, 30.0), spacing=(0.7, 0.8), transfer_syntax=transfer_syntax)
    path = write_parts(
        tmp_path / "i.dcm", ds, ds.file_meta, little_endian=little_endian, implicit_vr=implicit_vr
    )

    # When it is indexed
    row = read_instance(path, **LINEAGE).to_pylist()[0]

    # Then the values do not depend on the encoding
    assert (row["transfer_syntax_uid"], row["rows"], row["columns"], row["bits_allocated"]) == (
        transfer_syntax,
        8,
        8,
        16,
    )
    assert (row["pixel_spacing"], row["image_position"]) == ([0.7, 0.8], [1.5, -2.25, 30.0])
    assert (row["patient_id"], row["study_uid"], row["series_uid"]) == (PATIENT_ID, STUDY_UID, SERIES_UID)


def test_a_deflated_instance_is_indexed(tmp_path: Path) -> None:
    # Given an instance whose data set is deflated (pydicom compresses it on save)
    path = write_instance(
        tmp_path / "i.dcm", instance_dataset(transfer_syntax=uid.DeflatedExplicitVRLittleEndian)
    )
    assert b"MONOCHROME2" not in path.read_bytes()  # the data set really is compressed

    # When it is indexed
    row = read_instance(path, **LINEAGE).to_pylist()[0]

    # Then its values are read from the inflated data set
    assert (row["transfer_syntax_uid"], row["rows"], row["photometric_interpretation"]) == (
        uid.DeflatedExplicitVRLittleEndian,
        8,
        "MONOCHROME2",
    )


def test_an_encapsulated_instance_is_indexed_without_decoding(tmp_path: Path) -> None:
    # Given a JPEG 2000 instance (its fragments are not real codestreams: nothing may decode them)
    ds = instance_dataset(transfer_syntax=uid.JPEG2000Lossless)
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + bytes(60)])
    path = write_instance(tmp_path / "i.dcm", ds)

    # When it is indexed
    row = read_instance(path, **LINEAGE).to_pylist()[0]

    # Then it is a row like any other
    assert (row["transfer_syntax_uid"], row["rows"]) == (uid.JPEG2000Lossless, 8)


def test_a_file_without_preamble_but_with_file_meta_is_accepted(
    tmp_path: Path, axial: SyntheticSeries
) -> None:
    # Given a synthetic slice with its 128-byte preamble and DICM marker stripped (file meta first)
    whole = axial.files[0]
    stripped = tmp_path / "stripped.dcm"
    stripped.write_bytes(whole.read_bytes()[132:])

    # When both are indexed
    rows = [read_instance(p, **LINEAGE).to_pylist()[0] for p in (whole, stripped)]

    # Then they give the same row but for the file size
    assert rows[0] | {"file_size": 0} == rows[1] | {"file_size": 0}
    assert rows[0]["file_size"] - rows[1]["file_size"] == 132


def test_optional_attributes_absent_or_malformed_are_null_and_rescale_has_defaults(tmp_path: Path) -> None:
    # Given an instance without body part, description, frame of reference and rescale, whose study date,
    # instance number and slice thickness are malformed
    ds = instance_dataset()
    for keyword in ("BodyPartExamined", "SeriesDescription", "FrameOfReferenceUID"):
        delattr(ds, keyword)
    with pytest.warns(UserWarning, match="Invalid value for VR DA"):
        ds.StudyDate = "2016-01-02"  # not DA (pydicom warns, and writes it anyway)
    ds.SliceThickness = -1.0
    ds.add_new(0x00200013, "IS", None)  # InstanceNumber present but empty
    path = write_instance(tmp_path / "i.dcm", ds)

    # When it is indexed
    row = read_instance(path, **LINEAGE).to_pylist()[0]

    # Then those are null, rescale is 1/0, and the row is otherwise complete
    nulls = ("body_part", "series_description", "frame_of_reference_uid", "study_date", "instance_number")
    assert {k: row[k] for k in (*nulls, "slice_thickness")} == dict.fromkeys((*nulls, "slice_thickness"))
    assert (row["rescale_slope"], row["rescale_intercept"]) == (1.0, 0.0)


def test_an_acr_nema_study_date_is_read(tmp_path: Path) -> None:
    # Given a study date in the old YYYY.MM.DD form
    ds = instance_dataset()
    with pytest.warns(UserWarning, match="Invalid value for VR DA"):
        ds.StudyDate = "2016.01.02"
    path = write_instance(tmp_path / "i.dcm", ds)

    # When it is indexed, Then the date is read
    assert read_instance(path, **LINEAGE)["study_date"][0].as_py() == date(2016, 1, 2)


def test_a_multi_frame_instance_with_top_level_geometry_is_indexed_with_its_frame_count(
    tmp_path: Path,
) -> None:
    # Given a legacy multi-frame instance: 5 frames, geometry at the top level
    ds = instance_dataset()
    ds.NumberOfFrames = 5
    ds.PixelData = bytes(8 * 8 * 2 * 5)
    path = write_instance(tmp_path / "i.dcm", ds)

    # When it is indexed, Then the row counts its frames
    assert read_instance(path, **LINEAGE)["number_of_frames"][0].as_py() == 5


@pytest.mark.parametrize("encapsulated", [False, True], ids=["native-64MiB", "encapsulated-32MiB"])
def test_a_large_instance_is_indexed_without_reading_its_pixel_data(
    tmp_path: Path, encapsulated: bool
) -> None:
    # Given a 64 MiB native instance (2048 x 2048 x 8 frames x 16 bits) or a 32 MiB encapsulated one
    ds = instance_dataset(rows=2048, columns=2048)
    ds.NumberOfFrames = 8
    if encapsulated:
        ds.file_meta.TransferSyntaxUID = uid.JPEG2000Lossless
        ds.PixelData = encapsulate([bytes(4 << 20)] * 8)
    else:
        ds.PixelData = bytes(2048 * 2048 * 2 * 8)
    path = write_instance(tmp_path / "large.dcm", ds)
    del ds
    assert path.stat().st_size > 32 << 20

    # When it is indexed under tracemalloc
    tracemalloc.start()
    started = time.perf_counter()
    row = read_instance(path, **LINEAGE).to_pylist()[0]
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    # Then Python never held more than a fraction of a MiB (the pixel data stayed on disk), and it was quick
    assert (row["rows"], row["number_of_frames"]) == (2048, 8)
    assert peak < 1 << 20, f"peak {peak} bytes"
    assert elapsed < 0.5


def test_many_instances_index_at_hundreds_per_second(tmp_path: Path, axial: SyntheticSeries) -> None:
    # Given a synthetic series (a few dozen ~10 KB files)
    files = list(axial.files)

    # When it is indexed three times over
    started = time.perf_counter()
    for _ in range(3):
        table = index_files(files)
    rate = 3 * len(files) / (time.perf_counter() - started)

    # Then every file gave its row, well above 100 instances/s even on a loaded CI machine (~1,000 here)
    assert table.num_rows == len(files)
    assert table["source_key"].to_pylist() == [DELIVERY + p.name for p in files]
    assert table["object_id"].to_pylist() == [object_id_of(DELIVERY + p.name) for p in files]
    assert rate > 100, f"{rate:.0f} instances/s"


def _container_can_decode(transfer_syntax: str) -> bool:
    """What pydicom + pylibjpeg(-libjpeg, -openjpeg) decode, per pydicom's own decoder tables."""
    try:
        decoder = get_decoder(transfer_syntax)
    except NotImplementedError:
        return False
    if decoder.is_native or transfer_syntax in rle_decoders.DECODER_DEPENDENCIES:
        return True
    needs = pylibjpeg_decoders.DECODER_DEPENDENCIES.get(uid.UID(transfer_syntax))
    return needs is not None and {re.split(r"[<>=]", n)[0] for n in needs} <= CONTAINER_DECODERS


def test_the_supported_transfer_syntaxes_are_exactly_those_the_radiomics_container_decodes() -> None:
    # Given every transfer syntax pydicom knows
    known = set(uid.AllTransferSyntaxes)

    # When each is checked against pydicom's decoder tables for the container's decoder packages
    decodable = {ts for ts in known if _container_can_decode(ts)}

    # Then the supported set is exactly the decodable one (16 syntaxes, JPEG-LS and HTJ2K included)
    assert set(SUPPORTED_TRANSFER_SYNTAXES) == decodable
    assert {uid.JPEGLSLossless, uid.HTJ2K, uid.RLELossless} <= SUPPORTED_TRANSFER_SYNTAXES
    assert uid.JPEG2000MC not in SUPPORTED_TRANSFER_SYNTAXES
    assert uid.MPEG2MPML not in SUPPORTED_TRANSFER_SYNTAXES


def test_rows_of_many_files_concatenate_into_one_table(tmp_path: Path) -> None:
    # Given two different instances
    paths = [
        write_instance(tmp_path / f"{n}.dcm", instance_dataset(number=n, position=(0.0, 0.0, float(n))))
        for n in (1, 2)
    ]

    # When both are indexed
    table = index_files(paths)

    # Then the rows stack under the one schema, with their own values
    assert table.schema == IMAGING_INSTANCES
    assert isinstance(table, pa.Table)
    assert table.num_rows == 2
    assert np.array(table["image_position"].to_pylist())[:, 2].tolist() == [1.0, 2.0]
