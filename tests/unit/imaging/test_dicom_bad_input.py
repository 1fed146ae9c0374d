"""read_instance on bad files: every failure reason from a real file, each detail naming what is wrong, and
no personal value in any detail, log record or warning."""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom import uid
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.filereader import data_element_generator

from mmhealth.errors import InvalidInputError
from mmhealth.imaging.dicom import read_instance
from tests.unit.imaging.dicom_files import (
    PERSONAL_VALUES,
    SyntheticSeries,
    instance_dataset,
    write_instance,
    write_parts,
    write_synthetic_series,
)

LINEAGE = {"source_key": "incoming/d1/imaging/bad.dcm", "object_id": "0123456789abcdef", "run_id": "run-1"}
REASONS = {
    "empty-file",
    "not-dicom",
    "dicom-truncated",
    "dicom-no-pixels",
    "dicom-missing-tag",
    "dicom-unsupported-transfer-syntax",
    "dicom-invalid-value",
}


def rejection(path: Path) -> InvalidInputError:
    with pytest.raises(InvalidInputError) as caught:
        read_instance(path, **LINEAGE)
    assert caught.value.reason in REASONS
    return caught.value


def cut(path: Path, size: int, out: Path) -> Path:
    out.write_bytes(path.read_bytes()[:size])
    return out


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> SyntheticSeries:
    return write_synthetic_series(tmp_path_factory.mktemp("synthetic"), tilted=True)


# ------------------------------------------------------------------------------------- not a DICOM image


def test_an_empty_file_is_empty_file(tmp_path: Path) -> None:
    # Given a 0-byte .dcm
    path = tmp_path / "empty.dcm"
    path.touch()

    # When it is indexed, Then it is rejected as empty
    error = rejection(path)
    assert (error.reason, error.detail) == ("empty-file", "the file is empty (0 bytes)")


@pytest.mark.parametrize(
    "content",
    [
        b"PatientName,PatientID\nQuillfeatherzz^Marigoldqq,PID-SECRET-0042\n",  # a CSV export named .dcm
        b"\x89PNG\r\n\x1a\n" + bytes(300),  # an image of another format
        bytes(128) + b"DIC",  # a preamble and a cut marker
    ],
    ids=["text", "png", "cut-marker"],
)
def test_a_file_without_dicm_marker_or_file_meta_is_not_dicom(tmp_path: Path, content: bytes) -> None:
    # Given a file named .dcm that is no DICOM Part 10 file
    path = tmp_path / "image.dcm"
    path.write_bytes(content)

    # When it is indexed, Then it is not-dicom, with the reason spelled out
    error = rejection(path)
    assert error.reason == "not-dicom"
    assert "no 'DICM' marker at byte 128 and no File Meta Information at byte 0" in error.detail


def test_a_bare_data_set_without_file_meta_is_not_dicom(tmp_path: Path) -> None:
    # Given a valid data set written without preamble and without file meta (ACR-NEMA style)
    path = write_parts(tmp_path / "bare.dcm", instance_dataset(), None, implicit_vr=True, preamble=False)
    assert path.read_bytes().startswith(b"\x08\x00\x05\x00")  # (0008,0005) first

    # When it is indexed, Then it is not-dicom: without file meta there is no transfer syntax to trust
    assert rejection(path).reason == "not-dicom"


def test_a_dicom_marker_followed_by_garbage_is_not_dicom(tmp_path: Path, synthetic: SyntheticSeries) -> None:
    # Given a file whose file meta is followed by bytes that are no data set
    good = synthetic.files[0].read_bytes()
    meta_end = good.index(b"\x08\x00\x05\x00")  # (0008,0005), the first data set element
    path = tmp_path / "garbage.dcm"
    path.write_bytes(good[:meta_end] + b"\x08\x00\x05\x00ZZ" + bytes(range(256)) * 8)

    # When it is indexed, Then pydicom's failure is a reason, not a crash
    assert rejection(path).reason in {"not-dicom", "dicom-truncated"}


# ---------------------------------------------------------------------------------------- cut files


def test_a_synthetic_slice_cut_in_half_is_truncated(tmp_path: Path, synthetic: SyntheticSeries) -> None:
    # Given a synthetic slice with its second half missing
    whole = synthetic.files[0]
    path = cut(whole, whole.stat().st_size // 2, tmp_path / "half.dcm")

    # When it is indexed, Then the pixel data is found to run past the end of the file
    error = rejection(path)
    assert error.reason == "dicom-truncated"
    assert "PixelData (7FE0,0010) declares 8192 bytes but the file ends" in error.detail


def test_a_cut_anywhere_is_a_clean_reason_and_a_cut_inside_a_value_is_truncated(
    tmp_path: Path, synthetic: SyntheticSeries
) -> None:
    # Given a synthetic slice, where each element's value starts and ends
    whole = synthetic.files[0]
    with whole.open("rb") as fp:
        fp.seek(132)  # after the preamble and DICM: file meta and data set are explicit VR little endian
        values = [
            (e.value_tell, e.value_tell + e.length)
            for e in data_element_generator(fp, False, True, defer_size=0)
            if isinstance(e, RawDataElement) and e.length > 0
        ]
    pixel_start = max(start for start, _ in values)
    size = whole.stat().st_size

    # When it is cut at every byte of the file meta and the first elements, at every 5th byte of the rest
    # of the header, and at a few points in the pixel data
    ends = [*range(400), *range(400, pixel_start + 2, 5), pixel_start + 1, size // 2, size - 2, size - 1]
    outcomes = {end: rejection(cut(whole, end, tmp_path / "cut.dcm")).reason for end in ends}

    # Then each cut gives a reason, and every cut strictly inside a value is dicom-truncated
    assert set(outcomes.values()) <= {"empty-file", "not-dicom", "dicom-truncated", "dicom-no-pixels"}
    inside = {end for end in outcomes if any(start < end < stop for start, stop in values)}
    assert len(inside) > 300
    assert {outcomes[end] for end in inside} == {"dicom-truncated"}
    assert outcomes[0] == "empty-file"
    assert outcomes[131] == "not-dicom"


def test_a_cut_deflated_instance_is_truncated(tmp_path: Path) -> None:
    # Given a deflated instance cut short
    whole = write_instance(
        tmp_path / "i.dcm", instance_dataset(transfer_syntax=uid.DeflatedExplicitVRLittleEndian)
    )
    path = cut(whole, whole.stat().st_size - 40, tmp_path / "cut.dcm")

    # When it is indexed, Then the deflate stream is found cut
    error = rejection(path)
    assert (error.reason, error.detail) == (
        "dicom-truncated",
        "the deflated data set ends before its deflate stream does",
    )


def test_a_cut_encapsulated_instance_is_truncated(tmp_path: Path) -> None:
    # Given a JPEG 2000 instance whose last fragment and sequence delimiter are cut off
    ds = instance_dataset(transfer_syntax=uid.JPEG2000Lossless)
    ds.PixelData = encapsulate([bytes(400), bytes(400)])
    whole = write_instance(tmp_path / "i.dcm", ds)
    path = cut(whole, whole.stat().st_size - 100, tmp_path / "cut.dcm")

    # When it is indexed, Then the fragments are found to end before their delimiter
    error = rejection(path)
    assert error.reason == "dicom-truncated"
    assert error.detail.startswith("encapsulated PixelData (7FE0,0010) ends before its sequence delimiter")


# ------------------------------------------------------------------------------------------ no pixels


def _without_pixels() -> Dataset:
    ds = instance_dataset()
    del ds.PixelData
    return ds


def _empty_pixels() -> Dataset:
    ds = instance_dataset()
    ds.PixelData = b""
    return ds


def _offset_table_only() -> Dataset:
    ds = instance_dataset(transfer_syntax=uid.JPEG2000Lossless)
    ds.PixelData = encapsulate([])
    return ds


def _empty_fragment() -> Dataset:
    ds = instance_dataset(transfer_syntax=uid.JPEG2000Lossless)
    ds.PixelData = b"\xfe\xff\x00\xe0\x00\x00\x00\x00" * 2  # the offset table, then one empty fragment
    return ds


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (_without_pixels, "no PixelData (7FE0,0010), FloatPixelData (7FE0,0008) or DoubleFloatPixelData"),
        (_empty_pixels, "PixelData (7FE0,0010) is empty (length 0)"),
        (
            _offset_table_only,
            "encapsulated PixelData (7FE0,0010) holds no fragment after its Basic Offset Table",
        ),
        (_empty_fragment, "encapsulated PixelData (7FE0,0010) holds 1 fragment(s), all empty"),
    ],
    ids=["absent", "empty", "offset-table-only", "empty-fragment"],
)
def test_an_instance_without_pixel_data_is_no_pixels(
    tmp_path: Path, make: Callable[[], Dataset], expected: str
) -> None:
    # Given an instance whose pixel data is absent or empty
    path = write_instance(tmp_path / "i.dcm", make())

    # When it is indexed, Then it is dicom-no-pixels, saying which way
    error = rejection(path)
    assert error.reason == "dicom-no-pixels"
    assert expected in error.detail


def test_a_non_image_object_is_named_by_its_sop_class(tmp_path: Path) -> None:
    # Given a structured report (no pixel data, no geometry)
    ds = _without_pixels()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = uid.UID("1.2.840.10008.5.1.4.1.1.88.11")
    path = write_instance(tmp_path / "sr.dcm", ds)

    # When it is indexed, Then the detail says what it is
    assert "a Basic Text SR Storage (1.2.840.10008.5.1.4.1.1.88.11) instance" in rejection(path).detail


# ------------------------------------------------------------------------------------------ missing tags


def test_every_missing_or_empty_required_attribute_is_listed(tmp_path: Path) -> None:
    # Given an instance without PatientID and PixelSpacing, and with an empty Modality
    ds = instance_dataset()
    del ds.PatientID
    del ds.PixelSpacing
    ds.Modality = ""
    path = write_instance(tmp_path / "i.dcm", ds)

    # When it is indexed, Then all three are named, by keyword and tag, in one detail
    error = rejection(path)
    assert (error.reason, error.detail) == (
        "dicom-missing-tag",
        "missing or empty: PatientID (0010,0020), Modality (0008,0060), PixelSpacing (0028,0030)",
    )


def test_a_file_meta_without_transfer_syntax_is_missing_tag(tmp_path: Path) -> None:
    # Given a Part 10 file whose file meta lacks TransferSyntaxUID
    ds = instance_dataset()
    meta = copy.deepcopy(ds.file_meta)
    del meta.TransferSyntaxUID
    path = write_parts(tmp_path / "i.dcm", ds, meta)

    # When it is indexed, Then the transfer syntax is named as missing
    error = rejection(path)
    assert (error.reason, error.detail) == (
        "dicom-missing-tag",
        "missing or empty: TransferSyntaxUID (0002,0010) (file meta)",
    )


def test_an_enhanced_multi_frame_instance_says_its_geometry_is_in_functional_groups(tmp_path: Path) -> None:
    # Given an enhanced multi-frame instance: geometry only in the functional groups
    ds = instance_dataset()
    for keyword in ("PixelSpacing", "ImageOrientationPatient", "ImagePositionPatient"):
        delattr(ds, keyword)
    ds.NumberOfFrames = 1
    ds.SharedFunctionalGroupsSequence = [Dataset()]
    path = write_instance(tmp_path / "i.dcm", ds)

    # When it is indexed, Then the geometry is listed as missing, with the reason why
    error = rejection(path)
    assert error.reason == "dicom-missing-tag"
    assert (
        "PixelSpacing (0028,0030), ImageOrientationPatient (0020,0037), ImagePositionPatient (0020,0032)"
        in (error.detail)
    )
    assert "enhanced multi-frame instance keeps its geometry in functional groups" in error.detail


# ------------------------------------------------------------------------------- transfer syntaxes


@pytest.mark.parametrize(
    ("transfer_syntax", "name"),
    [
        (uid.MPEG2MPML, "MPEG2 Main Profile / Main Level (1.2.840.10008.1.2.4.100)"),
        (uid.JPEG2000MC, "JPEG 2000 Part 2 Multi-component Image Compression (1.2.840.10008.1.2.4.93)"),
        ("1.2.826.0.1.3680043.8.498.1", "unregistered UID 1.2.826.0.1.3680043.8.498.1"),
    ],
    ids=["mpeg2", "jpeg2000-multi-component", "private"],
)
def test_a_transfer_syntax_the_radiomics_job_cannot_decode_is_unsupported(
    tmp_path: Path, transfer_syntax: str, name: str
) -> None:
    # Given an instance with encapsulated pixel data in a syntax outside SUPPORTED_TRANSFER_SYNTAXES
    ds = instance_dataset(transfer_syntax=transfer_syntax)
    ds.PixelData = encapsulate([b"\x00\x00\x01\xb3" + bytes(60)])
    path = write_parts(tmp_path / "i.dcm", ds, ds.file_meta)

    # When it is indexed, Then the syntax is named
    error = rejection(path)
    assert error.reason == "dicom-unsupported-transfer-syntax"
    assert error.detail.startswith(f"transfer syntax {name} is not one the radiomics job can decode")


# ------------------------------------------------------------------------------------------ bad values


def _set(**values: object) -> Callable[[Dataset], None]:
    def change(ds: Dataset) -> None:
        for keyword, value in values.items():
            setattr(ds, keyword, value)

    return change


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (_set(Rows=0, PixelData=b""), None),  # no pixels wins: checked first
        (_set(Rows=0), "Rows (0028,0010) is 0, must be at least 1"),
        (_set(Columns=0), "Columns (0028,0011) is 0, must be at least 1"),
        (_set(BitsAllocated=12), "BitsAllocated (0028,0100) is 12, not one of 1, 8, 16, 32, 64"),
        (_set(PixelSpacing=[0.0, 0.5]), "PixelSpacing (0028,0030) must be positive, is [0, 0.5] mm"),
        (_set(PixelSpacing=[-0.5, 0.5]), "PixelSpacing (0028,0030) must be positive, is [-0.5, 0.5] mm"),
        (_set(PixelSpacing=[0.5]), "PixelSpacing (0028,0030) has 1 value(s), needs 2"),
        (_set(ImagePositionPatient=[0.0, 0.0]), "ImagePositionPatient (0020,0032) has 2 value(s), needs 3"),
        (
            _set(ImageOrientationPatient=[1, 0, 0, 0, 1]),
            "ImageOrientationPatient (0020,0037) has 5 value(s), needs 6",
        ),
        (
            _set(ImageOrientationPatient=[1, 0, 0, 0.5, 0.8660254, 0]),
            "ImageOrientationPatient (0020,0037): the row and column directions are not orthogonal (dot 0.5)",
        ),
        (
            _set(ImageOrientationPatient=[2, 0, 0, 0, 1, 0]),
            "ImageOrientationPatient (0020,0037): the row direction has length 2, not 1",
        ),
        (
            _set(ImageOrientationPatient=[1, 0, 0, 0, 0.99, 0]),
            "ImageOrientationPatient (0020,0037): the column direction has length 0.99, not 1",
        ),
        (_set(RescaleSlope=0), "RescaleSlope (0028,1053) is 0: every pixel would rescale to the intercept"),
        (
            _set(Rows=16),
            "PixelData (7FE0,0010) holds 128 bytes; Rows x Columns x NumberOfFrames x SamplesPerPixel x "
            "BitsAllocated (16 x 8 x 1 x 1 x 16 bits) needs 256",
        ),
        (_set(NumberOfFrames=0), "NumberOfFrames (0028,0008) is 0, must be at least 1"),
    ],
    ids=[
        "no-pixels-first",
        "rows-0",
        "columns-0",
        "bits-12",
        "spacing-0",
        "spacing-negative",
        "spacing-one-value",
        "position-two-values",
        "orientation-five-values",
        "orientation-not-orthogonal",
        "orientation-row-not-unit",
        "orientation-column-not-unit",
        "rescale-slope-0",
        "pixel-data-short",
        "frames-0",
    ],
)
def test_values_that_make_the_geometry_or_the_pixels_impossible_are_invalid(
    tmp_path: Path, change: Callable[[Dataset], None], expected: str | None
) -> None:
    # Given an instance with one impossible value
    ds = instance_dataset()
    change(ds)
    path = write_instance(tmp_path / "i.dcm", ds)

    # When it is indexed, Then the value is named (and its value given: geometry is not personal)
    error = rejection(path)
    if expected is None:
        assert error.reason == "dicom-no-pixels"
        return
    assert (error.reason, error.detail) == ("dicom-invalid-value", expected)


def test_every_invalid_value_is_listed_at_once(tmp_path: Path) -> None:
    # Given an instance with a zero-width image, a negative spacing and a skewed orientation
    ds = instance_dataset()
    ds.Columns = 0
    ds.PixelSpacing = [-1.0, 1.0]
    ds.ImageOrientationPatient = [1, 0, 0, 0.6, 0.8, 0]

    # When it is indexed
    error = rejection(write_instance(tmp_path / "i.dcm", ds))

    # Then one detail lists all three problems
    assert error.reason == "dicom-invalid-value"
    assert error.detail.split("; ") == [
        "Columns (0028,0011) is 0, must be at least 1",
        "PixelSpacing (0028,0030) must be positive, is [-1, 1] mm",
        "ImageOrientationPatient (0020,0037): the row and column directions are not orthogonal (dot 0.6)",
    ]


def test_a_decimal_string_that_is_no_number_is_invalid(tmp_path: Path) -> None:
    # Given an instance whose PixelSpacing bytes are not a decimal string
    ds = instance_dataset(spacing=(0.71234, 0.71234))
    path = write_instance(tmp_path / "i.dcm", ds)
    path.write_bytes(path.read_bytes().replace(b"0.71234\\0.71234", b"x.71234\\0.71234"))

    # When it is indexed, Then the attribute is named, not its bytes
    error = rejection(path)
    assert (error.reason, error.detail) == (
        "dicom-invalid-value",
        "PixelSpacing (0028,0030) cannot be read as its VR DS",
    )


def test_encapsulated_pixel_data_under_a_native_syntax_and_the_reverse_are_invalid(tmp_path: Path) -> None:
    # Given encapsulated pixel data declared Explicit VR Little Endian, and native pixel data declared JPEG 2000
    encapsulated = instance_dataset()
    encapsulated.PixelData = encapsulate([bytes(160)])
    encapsulated["PixelData"].VR = "OB"
    encapsulated["PixelData"].is_undefined_length = True
    native = instance_dataset()
    meta = copy.deepcopy(native.file_meta)
    meta.TransferSyntaxUID = uid.JPEG2000Lossless

    # When both are indexed
    errors = [
        rejection(write_parts(tmp_path / "a.dcm", encapsulated, encapsulated.file_meta)),
        rejection(write_parts(tmp_path / "b.dcm", native, meta)),
    ]

    # Then each is invalid, saying what the syntax demands
    assert [(e.reason, e.detail) for e in errors] == [
        (
            "dicom-invalid-value",
            "PixelData (7FE0,0010) is encapsulated but the transfer syntax Explicit VR Little Endian "
            "(1.2.840.10008.1.2.1) is native",
        ),
        (
            "dicom-invalid-value",
            "PixelData (7FE0,0010) is not encapsulated but the transfer syntax JPEG 2000 Image Compression "
            "(Lossless Only) (1.2.840.10008.1.2.4.90) requires it",
        ),
    ]


# --------------------------------------------------------------------------------------- personal data


def _bad_files(out: Path, synthetic: SyntheticSeries) -> dict[str, Path]:
    """One file per reason (and more), every one carrying PERSONAL_VALUES or a synthetic identity."""
    files: dict[str, Path] = {}
    empty = out / "empty.dcm"
    empty.touch()
    files["empty-file"] = empty
    text = out / "text.dcm"
    text.write_text("Quillfeatherzz^Marigoldqq 19370412 PID-SECRET-0042\n", encoding="utf-8")
    files["not-dicom"] = text
    whole = synthetic.files[0]
    files["dicom-truncated"] = cut(whole, whole.stat().st_size // 2, out / "half.dcm")
    header_only = instance_dataset()
    del header_only.PixelData
    files["dicom-no-pixels"] = write_instance(out / "no-pixels.dcm", header_only)
    missing = instance_dataset()
    del missing.PatientID, missing.StudyInstanceUID
    files["dicom-missing-tag"] = write_instance(out / "missing.dcm", missing)
    unsupported = instance_dataset(transfer_syntax=uid.MPEG2MPML)
    unsupported.PixelData = encapsulate([bytes(64)])
    files["dicom-unsupported-transfer-syntax"] = write_parts(
        out / "mpeg.dcm", unsupported, unsupported.file_meta
    )
    invalid = instance_dataset()
    invalid.Rows = 0
    invalid.ImageOrientationPatient = [1, 0, 0, 1, 0, 0]
    files["dicom-invalid-value"] = write_instance(out / "invalid.dcm", invalid)
    return files


def test_no_error_detail_log_or_warning_quotes_a_personal_value(
    tmp_path: Path,
    synthetic: SyntheticSeries,
    caplog: pytest.LogCaptureFixture,
    recwarn: pytest.WarningsRecorder,
) -> None:
    # Given a bad file for every reason, all carrying a real-looking name, birth date and patient id
    files = _bad_files(tmp_path, synthetic)
    personal = (
        *PERSONAL_VALUES,
        synthetic.identity.family,
        synthetic.identity.given,
        f"{synthetic.patient.birth_date:%Y%m%d}",
        synthetic.patient.id,
    )

    # When each is indexed with every log record captured
    caplog.set_level(logging.DEBUG)
    errors = {expected: rejection(path) for expected, path in files.items()}

    # Then each gets its reason, and no detail, message, log record or warning quotes a personal value
    assert {expected: e.reason for expected, e in errors.items()} == {r: r for r in files}
    said = [str(e) for e in errors.values()] + [e.detail for e in errors.values()]
    said += [r.getMessage() for r in caplog.records] + [str(w.message) for w in recwarn]
    leaks = [(value, text) for value in personal for text in said if value in text]
    assert leaks == []
    assert [w for w in recwarn if "pydicom" in str(w.filename)] == []  # pydicom's warnings stay inside


def test_pydicom_neither_logs_nor_warns_while_a_file_is_indexed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given an instance with a malformed UID and study date: reading the UID, pydicom warns and logs the
    # warning, quoting the value
    ds = instance_dataset()
    with pytest.warns(UserWarning, match="Invalid value for VR UI"):
        ds.FrameOfReferenceUID = "1.2.840.x-not-a-uid"
    with pytest.warns(UserWarning, match="Invalid value for VR DA"):
        ds.StudyDate = "12.04.1937"
    path = write_instance(tmp_path / "i.dcm", ds)
    caplog.set_level(logging.DEBUG)
    caplog.clear()  # pydicom logged the warnings above while the test wrote the file

    # When it is indexed
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        row = read_instance(path, **LINEAGE).to_pylist()[0]

    # Then the row is made (the malformed date is null), and nothing was logged or warned
    assert (row["study_date"], row["frame_of_reference_uid"]) == (None, "1.2.840.x-not-a-uid")
    assert [r.getMessage() for r in caplog.records if r.name.startswith("pydicom")] == []
    assert [str(w.message) for w in seen] == []
