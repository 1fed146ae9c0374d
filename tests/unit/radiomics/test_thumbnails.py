"""thumbnails: the pictures of a segmented series - which slice, which way up, how wide, how bright, what the
overlay changes, how large the files are, and that a picture that fails never costs the features."""

from __future__ import annotations

import json
import logging
import struct
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import SimpleITK as sitk

from radiomics_job.pipeline import SeriesFiles, SeriesOutcome, Source, draw_pictures
from radiomics_job.storage import OutputSink
from radiomics_job.thumbnails import (
    CT_SOFT_TISSUE_HU,
    LONGEST_SIDE,
    OVERLAY_OPACITY,
    REGION_COLOURS,
    DisplayHints,
    PlaneView,
    Window,
    choose_window,
    largest_cross_section,
    picture_size,
    render,
    write_png,
)
from radiomics_job.volume import Geometry, assemble_series
from tests.unit.radiomics.dicom_series import SeriesSpec, dataset, known_volume, rotation

# Direction matrices (row-major; columns: the image's x, y and z axes in patient LPS coordinates).
HEAD_FIRST_AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)  # x -> left, y -> posterior, z -> superior
# Rows stored towards the patient's right, slices from head to feet (right-handed, as DICOM's normal is).
MIRRORED_AXIAL = (-1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, -1.0, 0.0)  # x -> left, y -> inferior, z -> posterior
SAGITTAL = (0.0, 0.0, -1.0, 1.0, 0.0, 0.0, 0.0, -1.0, 0.0)  # x -> posterior, y -> inferior, z -> right
MR = DisplayHints("MR")
FILE_SIZE_LIMIT = 60_000  # bytes


def geometry(
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
    direction: tuple[float, ...] = HEAD_FIRST_AXIAL,
) -> Geometry:
    """`shape` is the array's (slices, rows, columns); `spacing` SimpleITK's (x, y, z)."""
    extent = (np.array(shape[::-1]) - 1) * np.array(spacing)  # first to last voxel centre, x y z
    centre = -0.5 * (np.asarray(direction).reshape(3, 3) @ extent)  # the volume centred on the origin
    return Geometry(shape[0], spacing, (float(centre[0]), float(centre[1]), float(centre[2])), direction)


def patient_points(shape: tuple[int, int, int], where: Geometry) -> npt.NDArray[np.float64]:
    """The LPS position (mm) of every voxel, as an array (slices, rows, columns, 3)."""
    k, i, j = np.indices(shape, dtype=np.float64)
    index = np.stack([j, i, k], axis=-1) * np.array(where.spacing)
    return np.array(where.origin) + index @ np.asarray(where.direction).reshape(3, 3).T


def disk_phantom(
    shape: tuple[int, int, int], where: Geometry, radius_mm: float = 30.0, seed: int = 0
) -> npt.NDArray[np.float32]:
    """A cylinder of radius `radius_mm` along the patient's z axis: 800 inside, 20 outside, scanner-like
    noise (standard deviation 40 inside, 10 outside)."""
    points = patient_points(shape, where)
    inside = np.hypot(points[..., 0], points[..., 1]) <= radius_mm
    noise = np.random.default_rng(seed).normal(0.0, 1.0, shape)
    return np.where(inside, 800.0 + 40.0 * noise, 20.0 + 10.0 * np.abs(noise)).astype(np.float32)


def quadrant_means(picture: npt.NDArray[np.uint8]) -> dict[str, float]:
    """Mean gray of the picture's four quadrants, named by where they lie on screen."""
    half_rows, half_columns = picture.shape[0] // 2, picture.shape[1] // 2
    return {
        "top-left": float(picture[:half_rows, :half_columns].mean()),
        "top-right": float(picture[:half_rows, half_columns:].mean()),
        "bottom-left": float(picture[half_rows:, :half_columns].mean()),
        "bottom-right": float(picture[half_rows:, half_columns:].mean()),
    }


# ------------------------------------------------------------------------------------------ slice choice


def test_the_slice_shown_is_the_largest_cross_section_of_all_regions_together() -> None:
    # Given a label map whose largest single region is on slice 5 (25 voxels), but whose regions together
    # cover most of slice 6 (two of 16), and a single lesion voxel elsewhere
    labels = np.zeros((10, 32, 32), dtype=np.uint8)
    labels[5, 5:10, 5:10] = 2
    labels[6, 0:4, 0:4] = 2
    labels[6, 20:24, 20:24] = 1
    labels[1, 30, 30] = 1
    # When the slice is chosen, Then it is slice 6; and with no region, the middle slice
    assert largest_cross_section(labels) == 6
    assert largest_cross_section(np.zeros((9, 4, 4), dtype=np.uint8)) == 4
    assert largest_cross_section(np.zeros((1, 4, 4), dtype=np.uint8)) == 0
    # and of equal cross-sections (a trunk as long as the series), the one nearest the middle
    trunk = np.zeros((10, 8, 8), dtype=np.uint8)
    trunk[2:, 2:6, 2:6] = 3
    assert largest_cross_section(trunk) == 5
    trunk[:, :, :] = 0
    trunk[[1, 8], 2:6, 2:6] = 3
    assert largest_cross_section(trunk) == 8


def test_the_slice_index_counts_from_inferior_whatever_the_stored_slice_order() -> None:
    # Given the same label map stored head first and stored feet first (slices from head to feet)
    labels = np.zeros((10, 16, 16), dtype=np.uint8)
    labels[6, 4:12, 4:12] = 1
    volume = np.ones(labels.shape, dtype=np.float32)
    # When each is rendered, Then the picture shows the region's slice, counted from the feet
    for direction, expected in ((HEAD_FIRST_AXIAL, 6), (MIRRORED_AXIAL, 3)):
        pictures = render(volume, labels, geometry(labels.shape, direction=direction), MR)
        assert (pictures.plane, pictures.slice_index, pictures.slices) == ("axial", expected, 10)
        assert np.count_nonzero(pictures.regions) == pytest.approx(LONGEST_SIDE**2 / 4, rel=0.05)


# ------------------------------------------------------------------------------------------ orientation


@pytest.mark.parametrize(
    "angles", [(0, 0, 0), (20, -12, 8), (0, 90, 0), (90, 0, 90), (180, 0, 0), (0, 180, 0), (0, 0, 90)]
)
def test_the_axial_view_is_what_sitk_dicom_orient_lps_gives(angles: tuple[float, float, float]) -> None:
    # Given a volume of distinct values in any orientation, oblique ones included
    volume = np.random.default_rng(1).random((5, 6, 7)).astype(np.float32)
    image = sitk.GetImageFromArray(volume)
    image.SetSpacing((0.5, 0.7, 3.0))
    image.SetDirection(tuple(float(v) for v in rotation(*angles).ravel()))
    # When it is viewed axially
    view = PlaneView.of(volume, np.zeros(volume.shape, dtype=np.uint8), Geometry.of(image))
    # Then the view is ITK's permutation and flip onto the nearest patient axes (z, y, x = S, P, L rising)
    oriented = sitk.DICOMOrient(image, "LPS")
    np.testing.assert_array_equal(view.volume, sitk.GetArrayFromImage(oriented))
    assert view.spacing == pytest.approx(oriented.GetSpacing()[::-1])


@pytest.mark.parametrize("direction", [HEAD_FIRST_AXIAL, MIRRORED_AXIAL, CORONAL, SAGITTAL])
def test_the_patients_left_is_on_the_right_and_anterior_is_up(direction: tuple[float, ...]) -> None:
    # Given a bright marker in the patient's left anterior quarter, all the way from feet to head, in series
    # acquired axially (head first, or mirrored and feet first), coronally and sagittally
    shape = (24, 40, 40)
    where = geometry(shape, (2.0, 2.0, 2.0), direction)
    points = patient_points(shape, where)
    marker = (points[..., 0] > 0) & (points[..., 1] < 0)  # x: towards the left, y: towards anterior
    volume = np.where(marker, 1000.0, 100.0).astype(np.float32)
    # When the thumbnail is drawn
    pictures = render(volume, np.zeros(shape, dtype=np.uint8), where, MR)
    # Then it is an axial view from the feet: anterior up, the patient's left on the image's right
    means = quadrant_means(pictures.thumbnail)
    assert pictures.plane == "axial"
    assert means["top-right"] > 200
    assert max(means["top-left"], means["bottom-left"], means["bottom-right"]) < 60, means


def test_a_single_sagittal_slice_is_shown_in_its_own_plane_superior_up_anterior_left() -> None:
    # Given one sagittal slice (rows towards inferior, columns towards posterior) with a bright
    # superior-anterior quarter
    shape = (1, 40, 40)
    where = geometry(shape, (1.0, 1.0, 3.0), SAGITTAL)
    points = patient_points(shape, where)
    volume = np.where((points[..., 2] > 0) & (points[..., 1] < 0), 1000.0, 100.0).astype(np.float32)
    # When drawn, Then it is shown as a sagittal image, superior up and anterior on the left
    pictures = render(volume, np.zeros(shape, dtype=np.uint8), where, MR)
    assert (pictures.plane, pictures.slice_index, pictures.slices) == ("sagittal", 0, 1)
    means = quadrant_means(pictures.thumbnail)
    assert means["top-left"] > 200
    assert max(means["top-right"], means["bottom-left"], means["bottom-right"]) < 60, means


# ------------------------------------------------------------------------------------------ size and aspect


def test_the_picture_has_the_physical_aspect_ratio_and_a_longest_side_of_256() -> None:
    # Given square matrices, non-square ones (1024 x 512) and anisotropic pixels, Then the longest side is
    # 256 pixels and the other follows the millimetres, not the matrix
    assert picture_size(256, 256, 0.86, 0.86) == (256, 256)
    assert picture_size(1024, 1024, 0.195, 0.195) == (256, 256)
    assert picture_size(1024, 512, 0.2, 0.2) == (256, 128)
    assert picture_size(160, 64, 0.5, 1.25) == (256, 256)  # 80 x 80 mm
    assert picture_size(64, 64, 1.1, 4.5) == (63, 256)  # an axial reformat of 4.5 mm slices
    assert picture_size(24, 24, 1.0, 1.0) == (256, 256)  # small matrices are enlarged


def test_a_round_object_stays_round_with_anisotropic_pixels() -> None:
    # Given a 30 mm radius disk imaged with 0.5 mm between rows and 1.25 mm between columns (160 x 64)
    shape = (3, 160, 64)
    where = geometry(shape, spacing=(1.25, 0.5, 3.0))
    volume = disk_phantom(shape, where)
    # When drawn, Then the picture is square (80 x 80 mm) and the disk as tall as it is wide
    pictures = render(volume, np.zeros(shape, dtype=np.uint8), where, MR)
    assert pictures.thumbnail.shape == (256, 256)
    bright = pictures.thumbnail > 128
    rows, columns = np.flatnonzero(bright.any(axis=1)), np.flatnonzero(bright.any(axis=0))
    height, width = rows[-1] - rows[0] + 1, columns[-1] - columns[0] + 1
    assert height == pytest.approx(width, abs=3)
    assert width == pytest.approx(60 / 80 * 256, abs=4)


# ------------------------------------------------------------------------------------------ window


@pytest.mark.parametrize(
    ("hints", "expected"),
    [
        # the soft-tissue pair of several (a bone window listed first)
        (DisplayHints("CT", ((400.0, 1800.0), (40.0, 400.0))), Window(-160.0, 240.0, "dicom")),
        (DisplayHints("CT", ((50.0, 350.0),)), Window(-125.0, 225.0, "dicom")),
        # of two soft-tissue pairs, the centre nearest 40 HU (a brain window beside a liver one)
        (DisplayHints("CT", ((60.0, 160.0), (35.0, 80.0))), Window(-5.0, 75.0, "dicom")),
        # only a lung window, or none: the default soft-tissue window
        (DisplayHints("CT", ((-600.0, 1500.0),)), Window(*CT_SOFT_TISSUE_HU, "ct-soft-tissue-default")),
        (DisplayHints("CT"), Window(*CT_SOFT_TISSUE_HU, "ct-soft-tissue-default")),
    ],
)
def test_a_ct_gets_a_soft_tissue_window(hints: DisplayHints, expected: Window) -> None:
    assert choose_window(np.zeros((2, 2, 2), dtype=np.float32), hints) == expected


def test_an_mr_gets_the_1st_to_99th_percentile_of_its_volume_whatever_its_header_window() -> None:
    volume = np.arange(10_000, dtype=np.float32).reshape(4, 50, 50)
    for hints in (MR, DisplayHints("MR", ((40.0, 400.0),)), DisplayHints()):
        window = choose_window(volume, hints)
        assert (window.lower, window.upper) == pytest.approx((99.99, 9899.01))
        assert window.source == "percentiles-1-99"


def test_the_window_maps_its_range_onto_black_to_white() -> None:
    window = Window(-160.0, 240.0, "dicom")
    gray = window.gray(np.array([-1000.0, -160.0, 40.0, 240.0, 3000.0]))
    assert gray.tolist() == [0, 0, 128, 255, 255]
    assert window.as_json() == {"center": 40.0, "width": 400.0, "source": "dicom"}


def test_the_headers_window_and_modality_reach_the_pictures(tmp_path: Path) -> None:
    # Given a CT series whose slices carry a soft-tissue and a bone window (one slice a different one)
    spec = SeriesSpec(known_volume((5, 8, 8)))
    paths = []
    for k in range(5):
        ds = dataset(spec, k)
        ds.Modality = "CT"
        ds.WindowCenter, ds.WindowWidth = ([40, 300], [400, 1500]) if k != 2 else (35, 350)
        paths.append(tmp_path / f"{k}.dcm")
        ds.save_as(paths[-1], enforce_file_format=True)
    # When it is assembled, Then the image says CT and the window pair most slices carry
    hints = DisplayHints.of(assemble_series(paths))
    assert hints == DisplayHints("CT", ((40.0, 400.0), (300.0, 1500.0)))
    # And a series without them (the test series are MR with no window) gets the modality only
    plain = [tmp_path / "plain" / f"{k}.dcm" for k in range(3)]
    for k, path in enumerate(plain):
        path.parent.mkdir(exist_ok=True)
        dataset(SeriesSpec(known_volume((3, 8, 8))), k).save_as(path, enforce_file_format=True)
    assert DisplayHints.of(assemble_series(plain)) == DisplayHints("MR", ())


# ------------------------------------------------------------------------------------------ overlay


def test_the_overlay_differs_from_the_thumbnail_exactly_where_the_regions_are() -> None:
    # Given an MR with a lesion and a hippocampus on the same slice
    shape = (6, 64, 48)
    where = geometry(shape, spacing=(1.0, 1.2, 4.0))
    volume = disk_phantom(shape, where)
    labels = np.zeros(shape, dtype=np.uint8)
    labels[3, 20:30, 10:20] = 1
    labels[3, 35:50, 25:40] = 2
    # When the pictures are drawn
    pictures = render(volume, labels, where, MR)
    thumbnail, overlay = pictures.thumbnail, pictures.overlay
    # Then the overlay is the thumbnail in RGB outside the regions, and differs at every region pixel
    assert overlay.shape == (*thumbnail.shape, 3)
    changed = np.any(overlay != thumbnail[..., None], axis=2)
    np.testing.assert_array_equal(changed, pictures.regions > 0)
    assert set(np.unique(pictures.regions)) == {0, 1, 2}
    # each region is its colour blended at OVERLAY_OPACITY inside, and the full colour on its contour
    for label in (1, 2):
        colour = np.array(REGION_COLOURS[label])
        pixels = overlay[pictures.regions == label].astype(np.int64)
        gray = thumbnail[pictures.regions == label].astype(np.float64)[:, None]
        blended = np.rint((1 - OVERLAY_OPACITY) * gray + OVERLAY_OPACITY * colour)
        on_contour = np.all(pixels == colour, axis=1)
        assert 0 < on_contour.sum() < len(pixels)
        np.testing.assert_array_equal(pixels[~on_contour], blended[~on_contour])


def test_the_region_lies_on_the_picture_where_it_lies_on_the_slice() -> None:
    # Given a region in the top-left quarter of an axial slice (anterior, patient's right)
    shape = (3, 100, 100)
    labels = np.zeros(shape, dtype=np.uint8)
    labels[1, 10:40, 10:40] = 2
    pictures = render(np.ones(shape, dtype=np.float32), labels, geometry(shape), MR)
    # Then the drawn region covers the same fraction of the picture, in the same place
    drawn = np.argwhere(pictures.regions == 2)
    scale = LONGEST_SIDE / 100
    assert drawn.min(axis=0).tolist() == pytest.approx([10 * scale, 10 * scale], abs=1.5)
    assert (drawn.max(axis=0) + 1).tolist() == pytest.approx([40 * scale, 40 * scale], abs=1.5)


# ------------------------------------------------------------------------------------------ files


def png_chunks(path: Path) -> list[str]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, offset = [], 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        chunks.append(data[offset + 4 : offset + 8].decode("ascii"))
        offset += 12 + length
    return chunks


@pytest.mark.parametrize(
    ("shape", "spacing"),
    [
        ((3, 1024, 1024), (0.195, 0.195, 6.6)),  # a 1024 x 1024 MR slice, reduced
        ((24, 64, 64), (1.1, 1.1, 4.5)),  # a synthetic series, enlarged
        ((20, 256, 256), (0.86, 0.86, 7.0)),  # a clinical brain MR
        ((5, 512, 384), (0.7, 0.9, 2.5)),  # non-square, anisotropic
    ],
)
def test_the_png_files_are_small_8_bit_and_carry_no_text(
    tmp_path: Path, shape: tuple[int, int, int], spacing: tuple[float, float, float]
) -> None:
    # Given a noisy disk phantom with a region, at a scanner's matrix and spacing
    where = geometry(shape, spacing)
    volume = disk_phantom(shape, where, radius_mm=min(shape[1] * spacing[1], shape[2] * spacing[0]) / 3)
    labels = np.zeros(shape, dtype=np.uint8)
    labels[shape[0] // 2, shape[1] // 3 : shape[1] // 2, shape[2] // 3 : shape[2] // 2] = 1
    pictures = render(volume, labels, where, MR)
    # When both pictures are written
    write_png(pictures.thumbnail, tmp_path / "thumbnail.png")
    write_png(pictures.overlay, tmp_path / "overlay.png")
    # Then they read back as 8-bit grayscale and 8-bit RGB with the same pixels, within the size budget,
    # with no text (nor any chunk beyond the image's own and its scale), and no partial file is left
    for name, pixels, components in (
        ("thumbnail.png", pictures.thumbnail, 1),
        ("overlay.png", pictures.overlay, 3),
    ):
        path = tmp_path / name
        image = sitk.ReadImage(str(path))
        pixel_type = sitk.sitkUInt8 if components == 1 else sitk.sitkVectorUInt8
        assert (image.GetPixelID(), image.GetNumberOfComponentsPerPixel()) == (pixel_type, components)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(image), pixels)
        assert max(image.GetSize()) == LONGEST_SIDE
        assert path.stat().st_size < FILE_SIZE_LIMIT, (name, path.stat().st_size)
        assert set(png_chunks(path)) <= {"IHDR", "IDAT", "IEND", "sCAL", "pHYs"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["overlay.png", "thumbnail.png"]


# ------------------------------------------------------------------------------------------ failures


def _segmented(tmp_path: Path, uid: str = "1.2.3") -> SeriesOutcome:
    shape = (4, 32, 32)
    outcome = SeriesOutcome(Source(uid, str(tmp_path / f"{uid}.json")))
    outcome.geometry = geometry(shape)
    outcome.volume = disk_phantom(shape, outcome.geometry)
    outcome.labels = np.zeros(shape, dtype=np.uint8)
    outcome.labels[2, 10:20, 10:20] = 1
    outcome.regions = [{"label": 1, "name": "lesion", "voxels": 100}]
    return outcome


def test_a_segmented_series_gets_both_pictures_beside_its_document(tmp_path: Path) -> None:
    outcome = _segmented(tmp_path)
    draw_pictures(outcome, tmp_path)
    files = SeriesFiles("1.2.3")
    assert outcome.images is not None
    assert outcome.images_error is None
    assert (outcome.images["thumbnail"], outcome.images["overlay"]) == (files.thumbnail, files.overlay)
    assert files.thumbnail == "features/1.2.3/thumbnail.png"
    assert (tmp_path / files.thumbnail).is_file()
    assert (tmp_path / files.overlay).is_file()
    assert outcome.images["plane"] == "axial"
    assert outcome.images["slice_index"] == 2
    assert (outcome.images["width"], outcome.images["height"]) == (256, 256)


def test_a_picture_that_cannot_be_drawn_leaves_the_features_and_says_why(tmp_path: Path) -> None:
    # Given a segmented series whose pictures cannot be drawn (a geometry that is not a 3 x 3 direction)
    outcome = _segmented(tmp_path)
    outcome.geometry = Geometry(4, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1.0, 0.0))
    regions = list(outcome.regions)
    # When they are drawn, Then there are none - no file, images null, the cause recorded - and the
    # series keeps its regions and its status
    draw_pictures(outcome, tmp_path)
    assert outcome.images is None
    assert outcome.images_error is not None
    assert outcome.images_error.startswith("the pictures could not be drawn: ValueError")
    assert not (tmp_path / "features").exists()
    assert (outcome.regions, outcome.error) == (regions, None)


class _PicturesCannotBeUploaded(OutputSink):
    def publish(self, relative: str) -> None:
        if relative.endswith(".png"):
            raise OSError("upload refused")


def test_pictures_that_cannot_be_published_cost_the_document_nothing_but_the_pictures(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from radiomics_job.cli import _write
    from radiomics_job.pipeline import record

    # Given a drawn series whose pictures the output refuses
    sink = _PicturesCannotBeUploaded(str(tmp_path / "out"), tmp_path / "scratch")
    outcome = _segmented(tmp_path)
    draw_pictures(outcome, sink.local_root)
    document: dict[str, Any] = record(outcome, {"model_version": "m", "params_version": "p", "device": "cpu"})
    # When the series is written
    with caplog.at_level(logging.WARNING, logger="radiomics_job"):
        assert _write(sink, document)
    # Then its document is ok with its regions, images null and the cause; the log names the series only
    written = json.loads((tmp_path / "out" / "features" / "1.2.3.json").read_text())
    assert written["status"] == "ok"
    assert written["regions"] == outcome.regions
    assert written["images"] is None
    assert "upload refused" in written["images_error"]
    assert any("series 1.2.3: no pictures" in r.getMessage() for r in caplog.records)
