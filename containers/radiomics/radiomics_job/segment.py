"""The segmenter: a MONAI 3-D UNet (background, lesion, hippocampus) at the series' native voxel grid.

Preprocessing (the same in training and inference, `prepare`):
1. intensity: divide by the median of the voxels brighter than the volume mean (the head), so tissue is
   about 1 whatever the scanner's units, then clip to [0, 4];
2. shape: zero-pad each axis (slice, row, col) symmetrically to a multiple of 16 (the network halves each
   axis four times), and the slice axis to at least 32, so a 20-28 slice, 64 x 64 series is 32 x 64 x 64.
Training used the acquired voxels of the synthetic series (about 1 mm in-plane, 3-6 mm between slices). At
inference (`segmentations`) a series is first resampled onto the network's canonical grid (grid.py: its spacing
clamped into that training range, at most 192 x 192 x 64 voxels; synthetic series are already on it and
are not resampled), and the predicted label map is brought back onto the assembled volume's grid by
nearest neighbour, so it has exactly the volume's geometry. Prediction is the argmax of the logits,
cropped back to the volume. A constant volume (e.g. all zeros) is not passed to the network: its label map
is empty. When the network finds no region (foreground.py), the label map holds the fallback region
(label 3, "foreground") instead.

The weights file is a `torch.save` dict {"format", "architecture", "preprocessing", "labels", "state_dict"}
loaded with `weights_only=True` (no pickled code runs). model_version = file name + ":" + sha256[:12].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from monai.networks.nets.unet import UNet

from radiomics_job import LABEL_NAMES
from radiomics_job.foreground import (
    FOREGROUND_LABEL,
    MAX_PLAUSIBLE_ML,
    foreground,
    implausible,
    network_found_nothing,
)
from radiomics_job.grid import Grid, Spacing, canonical, to_grid
from radiomics_job.storage import file_version

CHECKPOINT_FORMAT = 1
ARCHITECTURE: dict[str, Any] = {
    "name": "monai.networks.nets.UNet",
    "spatial_dims": 3,
    "in_channels": 1,
    "out_channels": 3,
    "channels": [8, 16, 32, 64, 128],
    "strides": [2, 2, 2, 2],
    "num_res_units": 1,
    "norm": "instance",
}
PREPROCESSING: dict[str, Any] = {
    "grid": "native voxel grid, no resampling; array order (slice, row, col)",
    "intensity": "divide by the median of voxels above the volume mean, clip to [0, 4]",
    "pad_multiple": 16,
    "min_slices": 32,
    "padding": "zeros, symmetric (the extra voxel at the end)",
}
LABELS = {"0": "background", "1": "lesion", "2": "hippocampus"}

# Network inputs per forward pass: 8 synthetic series (32 x 64 x 64), one of the largest canonical grids
# (64 x 192 x 192 padded), about 1 GB of activations for this UNet in float32.
MAX_BATCH_VOXELS = 2_400_000

FloatVolume = npt.NDArray[np.float32]
LabelVolume = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class Segmentation:
    """A label map on the volume's grid and why it differs from the network's answer (notes, may be empty)."""

    labels: LabelVolume
    notes: tuple[str, ...]


def normalise(volume: npt.NDArray[Any]) -> FloatVolume:
    """Scale intensities so the head's median is 1 (see module docstring); deterministic."""
    values = volume.astype(np.float32)
    head = values[values > values.mean()]
    scale = float(np.median(head)) if head.size else 0.0
    if scale <= 0:
        return np.zeros_like(values)
    return np.clip(values / scale, 0.0, 4.0).astype(np.float32)


def padded_shape(shape: tuple[int, ...], multiple: int, min_slices: int) -> tuple[int, int, int]:
    padded = [-(-size // multiple) * multiple for size in shape]
    padded[0] = max(padded[0], -(-min_slices // multiple) * multiple)
    return (padded[0], padded[1], padded[2])


def pad_slices(shape: tuple[int, ...], target: tuple[int, ...]) -> tuple[slice, slice, slice]:
    """Where a volume of `shape` sits inside the zero-padded `target` (symmetric padding)."""
    starts = [(t - s) // 2 for s, t in zip(shape, target, strict=True)]
    return (
        slice(starts[0], starts[0] + shape[0]),
        slice(starts[1], starts[1] + shape[1]),
        slice(starts[2], starts[2] + shape[2]),
    )


def pad(volume: npt.NDArray[Any], target: tuple[int, ...]) -> npt.NDArray[Any]:
    out = np.zeros(target, dtype=volume.dtype)
    out[pad_slices(volume.shape, target)] = volume
    return out


def prepare(volume: npt.NDArray[Any], preprocessing: dict[str, Any] | None = None) -> FloatVolume:
    """The network input for one (slice, row, col) volume: normalised and padded."""
    settings = preprocessing or PREPROCESSING
    target = padded_shape(volume.shape, int(settings["pad_multiple"]), int(settings["min_slices"]))
    return pad(normalise(volume), target)


def build_network(architecture: dict[str, Any]) -> UNet:
    return UNet(
        spatial_dims=int(architecture["spatial_dims"]),
        in_channels=int(architecture["in_channels"]),
        out_channels=int(architecture["out_channels"]),
        channels=tuple(int(c) for c in architecture["channels"]),
        strides=tuple(int(s) for s in architecture["strides"]),
        num_res_units=int(architecture["num_res_units"]),
        norm=str(architecture["norm"]),
    )


def save_weights(path: Path, network: torch.nn.Module) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().clone() for k, v in network.state_dict().items()}
    torch.save(
        {
            "format": CHECKPOINT_FORMAT,
            "architecture": ARCHITECTURE,
            "preprocessing": PREPROCESSING,
            "labels": LABELS,
            "state_dict": state,
        },
        path,
    )


def resolve_device(requested: str) -> torch.device:
    """auto -> cuda when available, else cpu; cuda without a GPU is a ValueError."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda, but torch sees no CUDA device")
    if requested not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {requested!r}")
    return torch.device(requested)


class Segmenter:
    """Loaded weights on one device; `segmentation(s)` map (slice, row, col) volumes to uint8 label maps."""

    def __init__(self, weights: Path, device: torch.device) -> None:
        """Raises ValueError when the file is not a segmenter checkpoint of a known format."""
        try:
            checkpoint = torch.load(weights, map_location=device, weights_only=True)
        except Exception as error:  # torch raises pickle, zip and runtime errors for a bad file
            raise ValueError(f"cannot read weights {weights}: {error}") from error
        if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{weights} is not a segmenter checkpoint (format {CHECKPOINT_FORMAT})")
        self.architecture: dict[str, Any] = checkpoint["architecture"]
        self.preprocessing: dict[str, Any] = checkpoint["preprocessing"]
        self.network = build_network(self.architecture).to(device)
        self.network.load_state_dict(checkpoint["state_dict"])
        self.network.eval()
        self.device = device
        self.version = file_version(weights)

    @torch.inference_mode()
    def segmentation(self, volume: npt.NDArray[Any], spacing: Spacing) -> Segmentation:
        """The label map of a (slice, row, col) volume whose voxels are `spacing` (x, y, z) mm apart, with
        the notes that say which network regions were dropped and why."""
        return self.segmentations([(volume, spacing)])[0]

    @torch.inference_mode()
    def segmentations(self, series: Sequence[tuple[npt.NDArray[Any], Spacing]]) -> list[Segmentation]:
        """`segmentation` of several series at once: those whose network input has the same shape go
        through the network together, up to MAX_BATCH_VOXELS per forward pass (a batch on a GPU)."""
        on_grid: dict[int, tuple[Grid, Grid, npt.NDArray[Any]]] = {}
        inputs: dict[int, FloatVolume] = {}
        for index, (volume, spacing) in enumerate(series):
            # A constant volume has no structure to find; the network, never trained on one, would answer
            # with a few stray voxels, so it is not asked: its label map is empty.
            if volume.size and not np.all(volume == volume.flat[0]):
                native = Grid.of_array(volume, spacing)
                grid = canonical(native)
                on_grid[index] = (native, grid, to_grid(volume, native, grid, labels=False))
                inputs[index] = prepare(on_grid[index][2], self.preprocessing)
        labels = self._forward_batches(inputs, {i: g[2].shape for i, g in on_grid.items()})
        return [
            self._judge(labels[i], *on_grid[i])
            if i in on_grid
            else Segmentation(np.zeros(v.shape, np.uint8), ())
            for i, (v, _) in enumerate(series)
        ]

    def _forward_batches(
        self, inputs: dict[int, FloatVolume], shapes: dict[int, tuple[int, ...]]
    ) -> dict[int, LabelVolume]:
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for index, network_input in inputs.items():
            by_shape.setdefault(network_input.shape, []).append(index)
        labels: dict[int, LabelVolume] = {}
        for shape, indices in by_shape.items():
            per_batch = max(1, MAX_BATCH_VOXELS // int(np.prod(shape)))
            for start in range(0, len(indices), per_batch):
                chunk = indices[start : start + per_batch]
                tensor = torch.from_numpy(np.stack([inputs[i] for i in chunk]))[:, None].to(self.device)
                predicted = torch.argmax(self.network(tensor), dim=1).to(torch.uint8).cpu().numpy()
                for i, answer in zip(chunk, predicted, strict=True):
                    labels[i] = np.ascontiguousarray(answer[pad_slices(shapes[i], shape)])
        return labels

    def _judge(
        self, labels: LabelVolume, native: Grid, grid: Grid, resampled: npt.NDArray[Any]
    ) -> Segmentation:
        """The network's labels on its grid -> plausible regions or the fallback, on the native grid."""
        notes = []
        for label, ml in implausible(labels, voxel_ml=float(np.prod(grid.spacing)) / 1000.0).items():
            labels[labels == label] = 0
            notes.append(
                f"network {LABEL_NAMES[label]} of {ml} ml not kept (over {MAX_PLAUSIBLE_ML[label]} ml)"
            )
        if network_found_nothing(labels):
            labels = foreground(resampled) * np.uint8(FOREGROUND_LABEL)
            notes.append("no network region: the fallback region 'foreground' instead")
        back = np.ascontiguousarray(to_grid(labels, grid, native, labels=True), dtype=np.uint8)
        return Segmentation(back, tuple(notes))
