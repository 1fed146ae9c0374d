"""DICOM files -> one `imaging.instances` row each (lakehouse/imaging_tables.py). Pure, no S3, never reads pixel bytes.

`read_instance` indexes one DICOM Part 10 file, the header only, and returns exactly one row or raises
`InvalidInputError`. The checks run in this order and the first that fails gives the reason:

    empty-file                         the file has 0 bytes
    not-dicom                          no 128-byte preamble + "DICM" and no File Meta Information group at
                                       byte 0 (a text file named .dcm, a bare data set without file meta);
                                       or pydicom cannot parse the data set at all
    dicom-truncated                    the file ends inside an element: a header value or sequence, or the
                                       pixel data (its declared length runs past the end of the file, or
                                       encapsulated fragments end before their sequence delimiter)
    dicom-no-pixels                    no PixelData, FloatPixelData or DoubleFloatPixelData, or an empty one
                                       (length 0; encapsulated: no fragment after the Basic Offset Table, or
                                       only empty fragments)
    dicom-missing-tag                  every absent or empty required attribute, all listed at once:
                                       REQUIRED_ATTRIBUTES and the file meta's TransferSyntaxUID
    dicom-unsupported-transfer-syntax  a transfer syntax outside SUPPORTED_TRANSFER_SYNTAXES
    dicom-invalid-value                every value that makes the geometry or the pixel data impossible, all
                                       listed at once: Rows/Columns/BitsAllocated 0 or unusable, a value
                                       that is not a number, a wrong multiplicity (PixelSpacing 2,
                                       ImageOrientationPatient 6, ImagePositionPatient 3), non-positive
                                       pixel spacing, an orientation that is not two orthogonal unit vectors
                                       within ORIENTATION_TOLERANCE, RescaleSlope 0, native pixel data
                                       shorter than Rows x Columns x NumberOfFrames x SamplesPerPixel x
                                       BitsAllocated, encapsulated pixel data under a native transfer syntax
                                       or the reverse
A detail names attributes by keyword and tag ("PixelSpacing (0028,0030)") and UIDs by their registered
name; it never quotes the value of a personal attribute (not even PatientID): only geometry, sizes, byte
offsets and UIDs' names appear in it. Nothing is logged. pydicom warns, and logs each warning, when a
value breaks its VR's rules, quoting the value: while a file is indexed its warnings are captured and
its log records dropped (a filter on the "pydicom" logger, scoped by a context variable).

Decisions
- Preamble-less files are accepted when they start with the File Meta Information (group 0002 at byte
  0; some archives strip the preamble), read with pydicom's `force`. A file with neither preamble nor
  file meta is not-dicom: without the meta there is no transfer syntax to trust, and force-parsing
  arbitrary bytes "succeeds" on text files.
- A file cut short is dicom-truncated whenever the cut falls inside an element (a tag, a length or a
  value), which is where nearly all cuts land: the pixel data is almost the whole file. pydicom reads a
  value cut by the end of the file short without complaint, so the file is handed to it through a thin
  reader (`_CutWatch`) that notes a read ending part-way or a seek past the end. A cut inside the first
  132 bytes removes the DICM marker (not-dicom); a cut exactly between two elements cannot be told from
  a complete file that lacks the rest, and reads as dicom-no-pixels.
- Geometry is read from the top-level attributes only. An enhanced multi-frame instance (geometry per
  frame in its functional groups) is dicom-missing-tag, with a note that says so. A legacy multi-frame
  instance with top-level geometry is indexed (`number_of_frames`); series.py decides what to do with it.
- Optional attributes with a malformed value are indexed as null rather than rejecting the image:
  StudyDate (not YYYYMMDD or YYYY.MM.DD), InstanceNumber (not an integer), SliceThickness (not a positive
  number). RescaleSlope/RescaleIntercept default to 1/0 when absent or empty.

How pixel data stays on disk. pydicom's `read_partial` parses the header with a `stop_when` callback
that stops before the first top-level pixel data element, noting how it is encoded; pydicom's
`data_element_generator` then reads that element with `defer_size=0`: a defined length is seeked over
(and compared with the file size), an encapsulated value is walked item header by item header to its
sequence delimiter (pydicom seeks over each fragment), and `pydicom.encaps.parse_fragments` counts the
fragments. Header values over 1 KiB (private blobs, icon images) are deferred too. The one exception is
Deflated Explicit VR Little Endian: pydicom inflates the whole data set in memory, so such a file costs
its inflated size (a cut deflate stream is dicom-truncated). Otherwise memory and time do not depend on
the image size: a 64 MiB native instance (2048 x 2048 x 8 frames) and a 32 MiB JPEG 2000 one (8
fragments) each index in ~1.2 ms with a peak of 28 KiB of Python allocations (tracemalloc; tested < 1 MiB).

Speed, measured on the development VM (2-core x86_64 shared with other jobs, Python 3.11, pydicom
3.0.2; the 167 ~9.8 KB instances of 7 synthetic MR series, page cache warm, one process, CPU time
(process_time), best of 5):
    read_instance                  ~870 instances/s of one core   1.15 ms each
      of which pydicom's parse up to the pixel data              0.37 ms
               the pixel element, the cut watch                   0.15 ms
               converting and checking ~30 values                 0.45 ms
               the one-row Arrow table (from_pylist)              0.20 ms
The cost is per header element, not per byte. An S3 download (tens of ms per object), not this, bounds a
Lambda's indexing rate.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from struct import error as StructError
from typing import Any, BinaryIO, cast

import pyarrow as pa
from pydicom import uid
from pydicom.datadict import keyword_for_tag, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileDataset
from pydicom.encaps import parse_fragments
from pydicom.filereader import data_element_generator, read_partial
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag, Tag

from mmhealth.errors import InvalidInputError
from mmhealth.lakehouse.imaging_tables import IMAGING_INSTANCES

__all__ = [
    "ORIENTATION_TOLERANCE",
    "REQUIRED_ATTRIBUTES",
    "SUPPORTED_TRANSFER_SYNTAXES",
    "read_instance",
]

# What the radiomics container decodes with pydicom 3.0 + pylibjpeg (-libjpeg, -openjpeg), per pydicom's
# own decoder tables (pydicom.pixels.decoders): native encodings with pydicom itself, RLE with pydicom's
# RLE decoder, JPEG and JPEG-LS with pylibjpeg-libjpeg, JPEG 2000 and HTJ2K with pylibjpeg-openjpeg.
# Not decodable there, so not accepted: JPEG 2000 Part 2 multi-component (.92/.93, no pydicom decoder at
# all), JPIP referenced syntaxes (no pixel data in the file), MPEG-2/MPEG-4/HEVC video, SMPTE ST 2110.
SUPPORTED_TRANSFER_SYNTAXES: frozenset[str] = frozenset(
    {
        uid.ImplicitVRLittleEndian,
        uid.ExplicitVRLittleEndian,
        uid.ExplicitVRBigEndian,
        uid.DeflatedExplicitVRLittleEndian,
        uid.RLELossless,
        uid.JPEGBaseline8Bit,
        uid.JPEGExtended12Bit,
        uid.JPEGLossless,  # process 14
        uid.JPEGLosslessSV1,  # process 14, selection value 1
        uid.JPEGLSLossless,
        uid.JPEGLSNearLossless,
        uid.JPEG2000Lossless,
        uid.JPEG2000,
        uid.HTJ2KLossless,
        uid.HTJ2KLosslessRPCL,
        uid.HTJ2K,
    }
)
_NATIVE_SYNTAXES = frozenset(
    {
        uid.ImplicitVRLittleEndian,
        uid.ExplicitVRLittleEndian,
        uid.ExplicitVRBigEndian,
        uid.DeflatedExplicitVRLittleEndian,
    }
)

# Type 1 for this index (a row cannot exist without them), besides the file meta's TransferSyntaxUID.
REQUIRED_ATTRIBUTES: tuple[str, ...] = (
    "PatientID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "SOPClassUID",
    "Modality",
    "Rows",
    "Columns",
    "PixelSpacing",
    "ImageOrientationPatient",
    "ImagePositionPatient",
    "BitsAllocated",
    "PhotometricInterpretation",
)
_GEOMETRY = ("PixelSpacing", "ImageOrientationPatient", "ImagePositionPatient")
_FUNCTIONAL_GROUPS = ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence")

# Largest deviation from unit length, and from orthogonality (the dot product), of the row and column
# direction cosines. nibabel rejects 5e-5; 1e-3 still accepts writers that keep only 4 decimals. The same
# number bounds the spread of each cosine over a series (series.py's geometry rule, with its sources) and the
# radiomics container's checks (radiomics_job/volume.py; tests/unit/imaging/test_geometry_rule.py).
ORIENTATION_TOLERANCE = 1e-3

_PIXEL_ELEMENTS = {0x7FE00008: "FloatPixelData", 0x7FE00009: "DoubleFloatPixelData", 0x7FE00010: "PixelData"}
_BITS_ALLOCATED = frozenset({1, 8, 16, 32, 64})
_DEFER_SIZE = 1024  # header values larger than this stay on disk unless asked for
_UNDEFINED_LENGTH = 0xFFFFFFFF
_META_GROUP_LE = b"\x02\x00"  # (0002,xxxx) little endian: the File Meta Information at byte 0
_INT32_MAX = 2**31 - 1


# ---------------------------------------------------------------------------------------------- public API


def read_instance(path: Path, *, source_key: str, object_id: str, run_id: str) -> pa.Table:
    """One `IMAGING_INSTANCES` row for the DICOM file at `path`, read without touching its pixel bytes.

    Raises InvalidInputError (empty-file, not-dicom, dicom-truncated, dicom-no-pixels, dicom-missing-tag,
    dicom-unsupported-transfer-syntax, dicom-invalid-value); see the module docstring for each.
    """
    with _quiet_pydicom() as caught:
        header = _read_header(path, caught)
        attributes = _Attributes(header.dataset)
        if header.pixels is None:
            raise InvalidInputError("dicom-no-pixels", _no_pixels_detail(attributes))
        if header.pixels.data_bytes == 0:
            raise InvalidInputError("dicom-no-pixels", header.pixels.empty_detail())
        transfer_syntax = _require_attributes(attributes, header.dataset)
        if transfer_syntax not in SUPPORTED_TRANSFER_SYNTAXES:
            raise InvalidInputError(
                "dicom-unsupported-transfer-syntax",
                f"transfer syntax {_uid_name(transfer_syntax)} is not one the radiomics job can decode "
                f"(SUPPORTED_TRANSFER_SYNTAXES lists the {len(SUPPORTED_TRANSFER_SYNTAXES)} it can)",
            )
        row = _InstanceRow(attributes, header.pixels, transfer_syntax).build()
    row |= {"file_size": header.file_size, "source_key": source_key, "object_id": object_id, "run_id": run_id}
    return pa.Table.from_pylist([row], schema=IMAGING_INSTANCES)


# ------------------------------------------------------------------------------------- reading the header


@dataclass(frozen=True)
class _Pixels:
    """Where the pixel data element is and how much it holds; its value is never read."""

    keyword: str
    tag: int
    encapsulated: bool
    data_bytes: int  # the value length; encapsulated: the bytes of all fragments after the offset table
    fragments: int  # encapsulated only: items after the Basic Offset Table

    @property
    def name(self) -> str:
        return f"{self.keyword} {Tag(self.tag)}"

    def empty_detail(self) -> str:
        if not self.encapsulated:
            return f"{self.name} is empty (length 0)"
        if self.fragments == 0:
            return f"encapsulated {self.name} holds no fragment after its Basic Offset Table"
        return f"encapsulated {self.name} holds {self.fragments} fragment(s), all empty"


@dataclass(frozen=True)
class _Header:
    dataset: FileDataset
    pixels: _Pixels | None
    file_size: int


class _PixelProbe:
    """A pydicom `stop_when`: stop before the first top-level pixel data element, noting its encoding."""

    def __init__(self) -> None:
        self.tag: int | None = None
        self.implicit_vr = False

    def __call__(self, tag: BaseTag, vr: str | None, length: int) -> bool:
        if tag not in _PIXEL_ELEMENTS:
            return False
        self.tag = int(tag)
        self.implicit_vr = vr is None  # pydicom passes no VR for an implicit VR element
        return True


class _WhileIndexing(logging.Filter):
    """Drops pydicom's log records while this thread (context) indexes a file: pydicom logs each of its
    warnings too, and a value warning quotes the value ("Invalid value for VR ...: '<value>'")."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not _INDEXING.get()


_INDEXING: ContextVar[bool] = ContextVar("mmhealth_imaging_indexing", default=False)
logging.getLogger("pydicom").addFilter(_WhileIndexing())


@contextmanager
def _quiet_pydicom() -> Iterator[list[warnings.WarningMessage]]:
    """Silence pydicom while indexing: its warnings are captured (an end-of-file warning means a cut
    file), its log records dropped. (`catch_warnings` is process-wide: fine for one Lambda invocation at
    a time; concurrent threads may see each other's warnings suppressed, never emitted.)"""
    token = _INDEXING.set(True)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield caught
    finally:
        _INDEXING.reset(token)


def _read_header(path: Path, caught: list[warnings.WarningMessage]) -> _Header:
    with path.open("rb") as raw:
        file_size = os.fstat(raw.fileno()).st_size
        if file_size == 0:
            raise InvalidInputError("empty-file", "the file is empty (0 bytes)")
        head = raw.read(132)
        raw.seek(0)
        has_preamble = len(head) == 132 and head[128:] == b"DICM"
        if not has_preamble and not head.startswith(_META_GROUP_LE):
            raise InvalidInputError(
                "not-dicom",
                f"no 'DICM' marker at byte 128 and no File Meta Information at byte 0 ({file_size} bytes): "
                "not a DICOM Part 10 file",
            )
        fp = _CutWatch(raw, file_size)
        probe = _PixelProbe()
        ds = _parse(fp, probe, has_preamble)
        if fp.cut_at is not None:
            raise InvalidInputError(
                "dicom-truncated",
                f"the file ends inside an element: reading on from byte {fp.cut_at} needs more than the "
                f"{file_size} bytes of the file",
            )
        if any("end of file" in str(w.message).lower() for w in caught):
            # pydicom swallowed an EOFError, kept a partial data set, and only warned
            raise InvalidInputError("dicom-truncated", "the file ends inside an undefined-length element")
        if probe.tag is None:
            return _Header(ds, None, file_size)
        # Deflated: pydicom inflated the data set into a buffer, positioned like the file would be.
        stream = cast(BinaryIO, ds.buffer) if ds.buffer is not None else cast(BinaryIO, fp)
        little_endian = ds.original_encoding[1] is not False
        return _Header(ds, _pixel_element(stream, probe, little_endian, _size_of(stream)), file_size)


class _CutWatch:
    """The file as pydicom reads it, watching for a read that runs into the end of the file part-way.

    pydicom reads a value or tag cut by the end of the file short without complaint, and seeks past the
    end over a deferred value; either is how a cut file shows. A read that finds 0 bytes is the clean end.
    """

    def __init__(self, raw: BinaryIO, size: int) -> None:
        self._raw = raw
        self.size = size
        self.name = raw.name
        self.cut_at: int | None = None

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        if 0 < len(data) < size and self.cut_at is None:
            self.cut_at = self._raw.tell() - len(data)
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        start = self._raw.tell()
        position = self._raw.seek(offset, whence)
        if position > self.size and self.cut_at is None:
            self.cut_at = start
        return position

    def tell(self) -> int:
        return self._raw.tell()

    @property
    def closed(self) -> bool:
        return self._raw.closed

    def close(self) -> None:
        self._raw.close()


def _parse(fp: _CutWatch, probe: _PixelProbe, has_preamble: bool) -> FileDataset:
    """pydicom's header parse up to the pixel data, its failures turned into reasons."""
    try:
        return read_partial(
            cast(BinaryIO, fp), stop_when=probe, defer_size=_DEFER_SIZE, force=not has_preamble
        )
    except zlib.error as exc:
        if "incomplete" in str(exc) or "truncated" in str(exc):
            raise InvalidInputError(
                "dicom-truncated", "the deflated data set ends before its deflate stream does"
            ) from None
        raise InvalidInputError("not-dicom", "the deflated data set does not inflate (zlib error)") from None
    except MemoryError:
        raise  # the invocation ran out of memory: no fault of the file, no quarantine reason
    except Exception as exc:  # whatever pydicom cannot make sense of
        # The exception's message is left out: it may quote bytes of the file.
        where = f"{type(exc).__name__} at byte {fp.tell()} of {fp.size}"
        if fp.cut_at is not None or isinstance(exc, EOFError | OSError | StructError):
            # pydicom's ways of running out of bytes: a short value, a sequence item without its header
            raise InvalidInputError(
                "dicom-truncated", f"the file ends inside the data set ({where})"
            ) from None
        raise InvalidInputError("not-dicom", f"pydicom cannot parse the data set ({where})") from None


def _size_of(stream: BinaryIO) -> int:
    here = stream.tell()
    size = stream.seek(0, os.SEEK_END)
    stream.seek(here)
    return size


def _pixel_element(stream: BinaryIO, probe: _PixelProbe, little_endian: bool, size: int) -> _Pixels:
    assert probe.tag is not None
    keyword, tag = _PIXEL_ELEMENTS[probe.tag], probe.tag
    name = f"{keyword} {Tag(tag)}"
    try:
        # defer_size=0: a defined length is seeked over; an undefined one is walked item by item.
        element = next(data_element_generator(stream, probe.implicit_vr, little_endian, defer_size=0))
    except EOFError:
        raise InvalidInputError(
            "dicom-truncated", f"encapsulated {name} ends before its sequence delimiter: the file is cut"
        ) from None
    except StopIteration:  # fewer bytes left than an element header
        raise InvalidInputError("dicom-truncated", f"the file ends inside the header of {name}") from None
    if not isinstance(element, RawDataElement):  # an undefined-length value made of data set items
        raise InvalidInputError("dicom-invalid-value", f"{name} is encoded as a sequence of data sets")
    if element.length != _UNDEFINED_LENGTH:
        end = element.value_tell + element.length
        if end > size:
            raise InvalidInputError(
                "dicom-truncated",
                f"{name} declares {element.length} bytes but the file ends {end - size} bytes short of them",
            )
        return _Pixels(keyword, tag, encapsulated=False, data_bytes=element.length, fragments=0)
    end = stream.tell()
    stream.seek(element.value_tell)
    try:
        items, offsets = parse_fragments(stream, endianness="<" if little_endian else ">")
    except ValueError:
        raise InvalidInputError(
            "dicom-invalid-value", f"encapsulated {name} is not a sequence of items (PS3.5 A.4)"
        ) from None
    # Item headers and values, then the 8-byte sequence delimiter: the item values add up to this.
    item_bytes = end - 8 - element.value_tell - 8 * items
    offset_table = offsets[1] - offsets[0] - 8 if items > 1 else item_bytes
    return _Pixels(keyword, tag, encapsulated=True, data_bytes=item_bytes - offset_table, fragments=items - 1)


# -------------------------------------------------------------------------------------------------- checks


class _Invalid:
    """A value pydicom could not convert (to its VR's type)."""


_INVALID: Any = _Invalid()


class _Attributes:
    """Top-level attribute values by keyword, each converted by pydicom once.

    `get` returns None for an absent or empty attribute and _INVALID for one pydicom cannot convert.
    """

    def __init__(self, ds: Dataset) -> None:
        self.ds = ds
        self._values: dict[str, Any] = {}

    def __contains__(self, keyword: str) -> bool:
        return _TAGS[keyword] in self.ds

    def get(self, keyword: str) -> Any:
        if keyword not in self._values:
            self._values[keyword] = self._convert(_TAGS[keyword])
        return self._values[keyword]

    def text(self, keyword: str) -> str | None:
        value = self.get(keyword)
        return None if value is _INVALID else _text(value)

    def vr(self, keyword: str) -> str:
        return str(getattr(self.ds.get_item(_TAGS[keyword]), "VR", None) or "?")

    def _convert(self, tag: int) -> Any:
        if tag not in self.ds:
            return None
        try:
            value = self.ds[tag].value
        except Exception:
            return _INVALID
        if isinstance(value, bytes):
            return value if value.strip(b" \0") else None
        if isinstance(value, str):
            return value if value.strip(" \0") else None
        if isinstance(value, MultiValue | list) and len(value) == 0:
            return None
        return value


def _no_pixels_detail(attributes: _Attributes) -> str:
    sop_class = attributes.text("SOPClassUID")
    what = f"a {_uid_name(sop_class)} instance" if sop_class else "an instance without SOPClassUID"
    return (
        "no PixelData (7FE0,0010), FloatPixelData (7FE0,0008) or DoubleFloatPixelData (7FE0,0009) at the "
        f"top level: {what}, not an image"
    )


def _require_attributes(attributes: _Attributes, ds: FileDataset) -> str:
    """The transfer syntax UID, once every required attribute is known to be present and non-empty."""
    missing = [_name(k) for k in REQUIRED_ATTRIBUTES if attributes.get(k) is None]
    transfer_syntax = _text(ds.file_meta.get("TransferSyntaxUID"))
    if not transfer_syntax:
        missing.append(f"TransferSyntaxUID {Tag(0x00020010)} (file meta)")
    if not missing:
        assert transfer_syntax is not None
        return transfer_syntax
    detail = "missing or empty: " + ", ".join(missing)
    if any(attributes.get(k) is None for k in _GEOMETRY) and any(k in attributes for k in _FUNCTIONAL_GROUPS):
        detail += (
            "; this enhanced multi-frame instance keeps its geometry in functional groups, which are not "
            "indexed (only top-level geometry is)"
        )
    raise InvalidInputError("dicom-missing-tag", detail)


class _InstanceRow:
    """The row's values, every invalid one collected before raising (dicom-invalid-value)."""

    def __init__(self, attributes: _Attributes, pixels: _Pixels, transfer_syntax: str) -> None:
        self.attributes = attributes
        self.pixels = pixels
        self.transfer_syntax = transfer_syntax
        self.problems: list[str] = []

    def build(self) -> dict[str, Any]:
        a = self.attributes
        rows = self._count("Rows", default=0)
        columns = self._count("Columns", default=0)
        bits = self._count("BitsAllocated", default=0)
        if bits and bits not in _BITS_ALLOCATED:
            self.problems.append(f"{_name('BitsAllocated')} is {bits}, not one of 1, 8, 16, 32, 64")
        frames = self._count("NumberOfFrames", default=1)
        samples = self._count("SamplesPerPixel", default=1)
        spacing = self._decimals("PixelSpacing", 2)
        if spacing is not None and any(v <= 0 for v in spacing):
            self.problems.append(f"{_name('PixelSpacing')} must be positive, is {_numbers(spacing)} mm")
        orientation = self._decimals("ImageOrientationPatient", 6)
        if orientation is not None:
            self._check_orientation(orientation)
        position = self._decimals("ImagePositionPatient", 3)
        slope = self._decimal("RescaleSlope", default=1.0)
        if slope == 0:
            self.problems.append(f"{_name('RescaleSlope')} is 0: every pixel would rescale to the intercept")
        intercept = self._decimal("RescaleIntercept", default=0.0)
        self._check_pixel_encoding(rows, columns, frames, samples, bits)
        if self.problems:
            raise InvalidInputError("dicom-invalid-value", "; ".join(self.problems))
        thickness = _lenient(a.get("SliceThickness"), float)
        instance_number = _lenient(a.get("InstanceNumber"), int)
        return {
            "patient_id": a.text("PatientID"),
            "study_uid": a.text("StudyInstanceUID"),
            "series_uid": a.text("SeriesInstanceUID"),
            "sop_uid": a.text("SOPInstanceUID"),
            "sop_class_uid": a.text("SOPClassUID"),
            "modality": a.text("Modality"),
            "body_part": a.text("BodyPartExamined"),
            "study_date": _study_date(a.text("StudyDate")),
            "series_description": a.text("SeriesDescription"),
            "instance_number": instance_number
            if instance_number and abs(instance_number) <= _INT32_MAX
            else None,
            "rows": rows,
            "columns": columns,
            "number_of_frames": frames,
            "pixel_spacing": spacing,
            "slice_thickness": thickness
            if thickness and thickness > 0 and math.isfinite(thickness)
            else None,
            "image_orientation": orientation,
            "image_position": position,
            "frame_of_reference_uid": a.text("FrameOfReferenceUID"),
            "transfer_syntax_uid": self.transfer_syntax,
            "bits_allocated": bits,
            "photometric_interpretation": a.text("PhotometricInterpretation"),
            "rescale_slope": slope,
            "rescale_intercept": intercept,
        }

    # -- value readers: each records a problem (never the value of a personal attribute)

    def _get(self, keyword: str) -> Any:
        value = self.attributes.get(keyword)
        if value is _INVALID:
            self.problems.append(f"{_name(keyword)} cannot be read as its VR {self.attributes.vr(keyword)}")
            return None
        return value

    def _count(self, keyword: str, *, default: int) -> int:
        value = self._get(keyword)
        if value is None:
            return default
        if isinstance(value, MultiValue | list):
            self.problems.append(f"{_name(keyword)} has {len(value)} values, needs 1")
            return default
        number = int(value)
        if not 1 <= number <= _INT32_MAX:
            self.problems.append(f"{_name(keyword)} is {number}, must be at least 1")
            return default
        return number

    def _decimals(self, keyword: str, count: int) -> list[float] | None:
        value = self._get(keyword)
        if value is None:
            return None
        values = list(value) if isinstance(value, MultiValue | list) else [value]
        if len(values) != count:
            self.problems.append(f"{_name(keyword)} has {len(values)} value(s), needs {count}")
            return None
        try:
            numbers = [float(v) for v in values]
        except ValueError:  # pydicom may keep a malformed DS as text
            self.problems.append(f"{_name(keyword)} cannot be read as its VR {self.attributes.vr(keyword)}")
            return None
        if not all(math.isfinite(v) for v in numbers):
            self.problems.append(f"{_name(keyword)} holds a non-finite number: {_numbers(numbers)}")
            return None
        return numbers

    def _decimal(self, keyword: str, *, default: float) -> float:
        numbers = self._decimals(keyword, 1)
        return numbers[0] if numbers else default

    # -- geometry and pixel data

    def _check_orientation(self, orientation: list[float]) -> None:
        row, column = orientation[:3], orientation[3:]
        name = _name("ImageOrientationPatient")
        for which, vector in (("row", row), ("column", column)):
            length = math.sqrt(sum(v * v for v in vector))
            if abs(length - 1.0) > ORIENTATION_TOLERANCE:
                self.problems.append(f"{name}: the {which} direction has length {length:.6g}, not 1")
        dot = sum(r * c for r, c in zip(row, column, strict=True))
        if abs(dot) > ORIENTATION_TOLERANCE:
            self.problems.append(f"{name}: the row and column directions are not orthogonal (dot {dot:.6g})")

    def _check_pixel_encoding(self, rows: int, columns: int, frames: int, samples: int, bits: int) -> None:
        pixels = self.pixels
        native = self.transfer_syntax in _NATIVE_SYNTAXES
        syntax = _uid_name(self.transfer_syntax)
        if pixels.encapsulated and native:
            self.problems.append(f"{pixels.name} is encapsulated but the transfer syntax {syntax} is native")
        elif not pixels.encapsulated and not native:
            self.problems.append(
                f"{pixels.name} is not encapsulated but the transfer syntax {syntax} requires it"
            )
        elif native and rows and columns and frames and samples and bits:
            needed = (rows * columns * frames * samples * bits + 7) // 8
            if pixels.data_bytes < needed:
                self.problems.append(
                    f"{pixels.name} holds {pixels.data_bytes} bytes; Rows x Columns x NumberOfFrames x "
                    f"SamplesPerPixel x BitsAllocated ({rows} x {columns} x {frames} x {samples} x {bits} "
                    f"bits) needs {needed}"
                )


# ------------------------------------------------------------------------------------------------- helpers

_KEYWORDS = (
    *REQUIRED_ATTRIBUTES,
    *_FUNCTIONAL_GROUPS,
    "BodyPartExamined",
    "StudyDate",
    "SeriesDescription",
    "InstanceNumber",
    "NumberOfFrames",
    "SamplesPerPixel",
    "SliceThickness",
    "FrameOfReferenceUID",
    "RescaleSlope",
    "RescaleIntercept",
)
_TAGS: dict[str, int] = {k: cast(int, tag_for_keyword(k)) for k in _KEYWORDS}


def _name(keyword: str) -> str:
    """'PixelSpacing (0028,0030)'."""
    return f"{keyword} {Tag(_TAGS[keyword])}"


def _name_of(tag: int) -> str:
    keyword = keyword_for_tag(tag)
    return f"{keyword} {Tag(tag)}" if keyword else f"{Tag(tag)}"


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, MultiValue | list):
        value = "\\".join(str(v) for v in value)
    text = str(value).strip(" \0")
    return text or None


def _uid_name(value: str | None) -> str:
    """A UID by its registered name: 'JPEG 2000 Image Compression (1.2.840.10008.1.2.4.91)'."""
    if not value:
        return "(none)"
    name = uid.UID(value).name
    return f"{name} ({value})" if name != value else f"unregistered UID {value}"


def _numbers(values: Iterable[float]) -> str:
    return "[" + ", ".join(f"{v:.6g}" for v in values) + "]"


def _lenient(value: Any, kind: type[int] | type[float]) -> Any:
    """An optional single number, or None when absent, unreadable or multi-valued."""
    if value is None or value is _INVALID or isinstance(value, MultiValue | list):
        return None
    try:
        return kind(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _study_date(text: str | None) -> date | None:
    if not text:
        return None
    for layout in ("%Y%m%d", "%Y.%m.%d"):  # DA, and the ACR-NEMA form some old archives still hold
        try:
            return datetime.strptime(text, layout).date()
        except ValueError:
            continue
    return None
