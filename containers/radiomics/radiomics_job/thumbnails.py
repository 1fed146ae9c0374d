"""Two pictures of a segmented series for the report's patient view: `thumbnail.png`, one slice of the
volume, and `overlay.png`, the same slice with the segmented regions drawn over it.

Conventions (a radiologist's reading of the slice, whatever the scanner's geometry):
- Plane: axial. For a series of a single slice, its own plane (the one nearest its normal: axial, coronal
  or sagittal), since an axial cut through one sagittal slice is a line.
- Orientation: the volume's axes are permuted and flipped - never resampled - onto the patient axes they are
  nearest to (each axis once, greedily by the largest direction cosine, as sitk.DICOMOrient does), and
  the plane is shown in the radiological convention: axial viewed from the feet, anterior up and the
  patient's left on the image's right; coronal superior up, the patient's left on the right; sagittal
  superior up, anterior on the left. An oblique acquisition is shown in its own tilted plane; a sagittal
  or coronal acquisition as an axial reformat (the slice spacing along one side).
- Slice: the one with the most region voxels, any label (the largest cross-section of the segmented
  region; of equal ones, the nearest the middle); the middle slice when the label map is empty. `slice_index`
  counts along the plane's normal from inferior (axial), anterior (coronal) or the patient's right
  (sagittal); for an axial acquisition it is the mask's slice index (slices in position order).
- Window: values are mapped linearly onto 0-255 between lower = centre - width / 2 (and below: black) and
  upper = centre + width / 2 (and above: white). CT: the DICOM WindowCenter / WindowWidth pair that is a
  soft-tissue window (its centre within CT_SOFT_TISSUE_HU; of several, the centre nearest 40 HU), else
  CT_SOFT_TISSUE_HU itself, [-160, 240] HU. MR and any other modality: the 1st and 99th percentiles of the
  volume's values (MR intensities have no absolute scale).
- Size: the longest side LONGEST_SIDE pixels, the other from the slice's physical extent (pixels x spacing
  per side), so anisotropic pixels and non-square matrices are not stretched. Values are resampled with a
  triangle filter as wide as one output pixel (bilinear when enlarging, an area-like average when reducing
  a 1024 matrix, so nothing aliases); labels by nearest neighbour.
- Overlay: each region blended with its colour (REGION_COLOURS, opacity OVERLAY_OPACITY) and its contour
  (region pixels with a 4-neighbour outside the region) in the full colour; every other pixel is the
  thumbnail's. The colours are colour-blind-distinguishable magenta, yellow and cyan.
- Content: pixels only. No text, nothing rendered from a DICOM attribute, no PNG text chunk: no PHI.
- Files: 8-bit grayscale (thumbnail) and 8-bit RGB (overlay) PNG, written by SimpleITK at zlib level 9;
  about 10-50 kB each.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from radiomics_job.volume import MODALITY_KEY, WINDOW_CENTER_KEY, WINDOW_WIDTH_KEY, Geometry

FloatArray = npt.NDArray[np.float64]
Gray = npt.NDArray[np.uint8]

LONGEST_SIDE = 256
CT_SOFT_TISSUE_HU = (-160.0, 240.0)  # centre 40, width 400
SOFT_TISSUE_CENTRE_HU = 40.0
PERCENTILES = (1.0, 99.0)
PERCENTILE_SAMPLE = 2_000_000  # voxels: percentiles of a 512 x 512 x 300 CT from every 39th value
OVERLAY_OPACITY = 0.4
REGION_COLOURS: dict[int, tuple[int, int, int]] = {
    1: (255, 0, 170),  # lesion: magenta
    2: (255, 220, 0),  # hippocampus: yellow
    3: (0, 200, 255),  # foreground (the fallback region): cyan
}
OTHER_COLOUR = (0, 255, 0)  # a label without a colour of its own
PNG_COMPRESSION = 9

# Patient axes (LPS: x to the patient's left, y posterior, z superior) and, per plane, the axis across
# the slices and the axes down the rows and along the columns, each signed: -1 when the picture runs
# against the axis (superior up = rows running towards inferior).
L, P, S = 0, 1, 2
PLANES: dict[str, tuple[int, tuple[int, int], tuple[int, int]]] = {
    "axial": (S, (P, +1), (L, +1)),
    "coronal": (P, (S, -1), (L, +1)),
    "sagittal": (L, (S, -1), (P, +1)),
}


@dataclass(frozen=True)
class DisplayHints:
    """How the series' headers ask to be displayed (volume.assemble_series keeps them on the image)."""

    modality: str | None = None
    windows: tuple[tuple[float, float], ...] = ()  # (WindowCenter, WindowWidth) pairs, as listed

    @classmethod
    def of(cls, image: sitk.Image) -> DisplayHints:
        def text(key: str) -> str:
            has = image.HasMetaDataKey(key)  # type: ignore[no-untyped-call, unused-ignore]
            return str(image.GetMetaData(key)).strip() if has else ""  # type: ignore[no-untyped-call, unused-ignore]

        centres, widths = text(WINDOW_CENTER_KEY).split("\\"), text(WINDOW_WIDTH_KEY).split("\\")
        try:
            windows = tuple((float(c), float(w)) for c, w in zip(centres, widths, strict=True))
        except ValueError:  # none, or not pairs of numbers: the default window (choose_window)
            windows = ()
        return cls(text(MODALITY_KEY).upper() or None, windows)


@dataclass(frozen=True)
class Window:
    """The value range mapped onto black-to-white; `source` says where it came from."""

    lower: float
    upper: float
    source: str  # "dicom" | "ct-soft-tissue-default" | "percentiles-1-99"

    def gray(self, values: FloatArray) -> Gray:
        span = max(self.upper - self.lower, 1e-6)
        scaled = np.clip((values - self.lower) / span, 0.0, 1.0) * 255.0
        return np.rint(scaled).astype(np.uint8)

    def as_json(self) -> dict[str, Any]:
        centre, width = (self.lower + self.upper) / 2, self.upper - self.lower
        return {"center": round(centre, 3), "width": round(width, 3), "source": self.source}


def choose_window(volume: npt.NDArray[np.floating[Any]], hints: DisplayHints) -> Window:
    """The display window of the series (module docstring: CT soft tissue, else percentiles 1-99)."""
    if hints.modality == "CT":
        low, high = CT_SOFT_TISSUE_HU
        soft = [(c, w) for c, w in hints.windows if w > 0 and low <= c <= high]
        if soft:
            centre, width = min(soft, key=lambda pair: abs(pair[0] - SOFT_TISSUE_CENTRE_HU))
            return Window(centre - width / 2, centre + width / 2, "dicom")
        return Window(low, high, "ct-soft-tissue-default")
    flat = volume.reshape(-1)
    sample = flat[:: max(1, flat.size // PERCENTILE_SAMPLE)]
    lower, upper = np.percentile(sample, PERCENTILES)
    return Window(float(lower), float(upper), f"percentiles-{PERCENTILES[0]:g}-{PERCENTILES[1]:g}")


def nearest_patient_axes(direction: tuple[float, ...]) -> dict[int, tuple[int, int]]:
    """Patient axis (L, P, S) -> (the image axis x, y or z nearest to it, +1 when it points along the
    patient axis, -1 when against); each image axis once, the largest |cosine| first."""
    matrix = np.asarray(direction, dtype=np.float64).reshape(3, 3)  # column j: image axis j in LPS
    cosines = np.abs(matrix)
    nearest: dict[int, tuple[int, int]] = {}
    for _ in range(3):
        patient, image_axis = (int(i) for i in np.unravel_index(np.argmax(cosines), cosines.shape))
        nearest[patient] = (image_axis, 1 if matrix[patient, image_axis] > 0 else -1)
        cosines[patient, :] = cosines[:, image_axis] = -1.0
    return nearest


@dataclass(frozen=True)
class PlaneView:
    """The volume and label map as slices of one plane in display order: array axes (across the slices,
    down the rows, along the columns, as PLANES says), with the spacing in mm along each. Views of the
    series' arrays: no copy."""

    plane: str
    volume: npt.NDArray[np.floating[Any]]
    labels: npt.NDArray[np.uint8]
    spacing: tuple[float, float, float]

    @classmethod
    def of(
        cls,
        volume: npt.NDArray[np.floating[Any]],
        labels: npt.NDArray[np.uint8],
        geometry: Geometry,
        plane: str = "axial",
    ) -> PlaneView:
        """`volume` and `labels` are SimpleITK arrays (slice, row, col) = image axes (z, y, x)."""
        nearest = nearest_patient_axes(geometry.direction)
        across, rows, columns = PLANES[plane]
        order, flips, spacing = [], [], []
        for patient, display_sign in ((across, 1), rows, columns):
            image_axis, sign = nearest[patient]
            order.append(2 - image_axis)  # array axes run z, y, x
            flips.append(sign * display_sign < 0)
            spacing.append(float(geometry.spacing[image_axis]))
        flipped = tuple(axis for axis, flip in enumerate(flips) if flip)

        def arrange(array: Any) -> Any:
            return np.flip(np.transpose(array, order), flipped) if flipped else np.transpose(array, order)

        return cls(plane, arrange(volume), arrange(labels), (spacing[0], spacing[1], spacing[2]))


def plane_for(geometry: Geometry) -> str:
    """Axial; a single slice's own plane (the patient axis nearest its normal, image axis z)."""
    if geometry.slices > 1:
        return "axial"
    nearest = nearest_patient_axes(geometry.direction)
    normal = next(patient for patient, (image_axis, _) in nearest.items() if image_axis == 2)
    return next(plane for plane, (across, _, _) in PLANES.items() if across == normal)


def largest_cross_section(labels: npt.NDArray[np.uint8]) -> int:
    """The index (axis 0) of the slice with the most labelled voxels, of equal ones the nearest the middle
    slice (the lower on a tie); the middle slice when none is labelled."""
    counts = np.count_nonzero(labels.reshape(labels.shape[0], -1), axis=1)
    largest = np.flatnonzero(counts == counts.max())
    middle = labels.shape[0] // 2
    return int(largest[np.argmin(np.abs(largest - middle))])


def picture_size(rows: int, columns: int, row_spacing: float, column_spacing: float) -> tuple[int, int]:
    """(height, width) in pixels: the longest side LONGEST_SIDE, the aspect ratio the physical one."""
    height_mm, width_mm = rows * row_spacing, columns * column_spacing
    scale = LONGEST_SIDE / max(height_mm, width_mm)
    return max(1, round(height_mm * scale)), max(1, round(width_mm * scale))


def _filter_weights(size_in: int, size_out: int) -> FloatArray:
    """(size_out, size_in) weights: each output pixel a triangle-weighted mean of the input pixels within one
    output pixel (when reducing) or one input pixel (when enlarging: linear interpolation) of its centre."""
    scale = size_in / size_out
    support = max(scale, 1.0)
    centres = (np.arange(size_out) + 0.5) * scale - 0.5
    weights = np.clip(1.0 - np.abs(np.arange(size_in)[None, :] - centres[:, None]) / support, 0.0, None)
    return weights / weights.sum(axis=1, keepdims=True)


def _nearest(size_in: int, size_out: int) -> npt.NDArray[np.intp]:
    return np.minimum(((np.arange(size_out) + 0.5) * size_in / size_out).astype(np.intp), size_in - 1)


def contour(regions: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
    """Region pixels with a 4-neighbour of another label (or beyond the picture's edge)."""
    padded = np.pad(regions, 1)
    centre = padded[1:-1, 1:-1]
    height, width = centre.shape
    edge = np.zeros(centre.shape, dtype=bool)
    for dr, dc in ((0, 1), (2, 1), (1, 0), (1, 2)):
        edge |= padded[dr : dr + height, dc : dc + width] != centre
    return edge & (centre > 0)


def overlay_of(thumbnail: Gray, regions: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """The thumbnail as RGB with each region blended with its colour and its contour in the full colour."""
    rgb = np.repeat(thumbnail[..., None], 3, axis=2).astype(np.float64)
    edges = contour(regions)
    for label in (int(v) for v in np.unique(regions) if v):
        colour = np.array(REGION_COLOURS.get(label, OTHER_COLOUR), dtype=np.float64)
        inside = regions == label
        rgb[inside] = (1.0 - OVERLAY_OPACITY) * rgb[inside] + OVERLAY_OPACITY * colour
        rgb[inside & edges] = colour
    return np.rint(rgb).astype(np.uint8)


@dataclass(frozen=True)
class Pictures:
    """The rendered pictures of one series and what they show."""

    thumbnail: Gray  # (height, width)
    overlay: npt.NDArray[np.uint8]  # (height, width, 3)
    regions: npt.NDArray[np.uint8]  # the label map of the slice at the pictures' size, as drawn
    plane: str
    slice_index: int
    slices: int
    window: Window

    def as_json(self, thumbnail: str, overlay: str) -> dict[str, Any]:
        """The features document's `images`, with the files' keys relative to the job's output."""
        height, width = self.thumbnail.shape
        return {
            "thumbnail": thumbnail,
            "overlay": overlay,
            "plane": self.plane,
            "slice_index": self.slice_index,
            "slices": self.slices,
            "width": int(width),
            "height": int(height),
            "window": self.window.as_json(),
        }


def render(
    volume: npt.NDArray[np.floating[Any]],
    labels: npt.NDArray[np.uint8],
    geometry: Geometry,
    hints: DisplayHints,
) -> Pictures:
    """The series' pictures (module docstring); `volume` and `labels` as SimpleITK arrays (z, y, x)."""
    view = PlaneView.of(volume, labels, geometry, plane_for(geometry))
    index = largest_cross_section(view.labels)
    values, slice_labels = view.volume[index], view.labels[index]
    rows, columns = values.shape
    height, width = picture_size(rows, columns, view.spacing[1], view.spacing[2])
    resized = _filter_weights(rows, height) @ values.astype(np.float64) @ _filter_weights(columns, width).T
    window = choose_window(volume, hints)
    thumbnail = window.gray(resized)
    regions = slice_labels[np.ix_(_nearest(rows, height), _nearest(columns, width))]
    return Pictures(
        thumbnail, overlay_of(thumbnail, regions), regions, view.plane, index, view.volume.shape[0], window
    )


def write_png(pixels: npt.NDArray[np.uint8], path: Path) -> None:
    """An 8-bit grayscale (2-D) or RGB (height, width, 3) PNG, whole or not at all (written beside, renamed)."""
    image = sitk.GetImageFromArray(pixels, isVector=pixels.ndim == 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.stem}.partial{path.suffix}")
    try:
        sitk.WriteImage(image, str(partial), useCompression=True, compressionLevel=PNG_COMPRESSION)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
