"""The fallback region: the imaged body (a head on a brain MR) when the network finds nothing.

The segmenter was trained on synthetic phantoms only; on a real series it may find no lesion and no
hippocampus, or mark scattered tissue that is neither (on real and realistic MR and CT it labelled tens to
hundreds of millilitres). Two rules, on the network's grid:
- a network region larger than MAX_PLAUSIBLE_ML for its label is not that structure and is not kept
  (both hippocampi of an adult together are about 6-9 ml, so 12 ml; the training lesions were 0.15-6 ml
  and white-matter lesion loads beyond 100 ml are exceptional, so 100 ml);
- a series left with no network region of MIN_NETWORK_VOXELS voxels gets one region instead, label
  FOREGROUND_LABEL ("foreground"), computed from the intensities alone:

1. Otsu's threshold over the whole volume (SimpleITK OtsuThreshold, 128 histogram bins) separates the body
   from the air around it (MR and CT alike: air is the darkest class);
2. the largest connected component (face connectivity) - the body, not the noise, the table or a marker;
3. closed (binary closing, radius 1 voxel) and its holes filled slice by slice (BinaryFillhole in 2-D: in
   3-D the dark structures inside - ventricles, sinuses, airways, lungs - reach the open first and last
   slices and would not count as holes): they belong to the body.
It runs on the network's (canonical) grid, where it is cheap, and goes back to the native grid with the
network's labels. Stray network voxels below the threshold are overwritten by it: they are not a region.
A constant volume has no foreground (nothing to separate): its label map stays empty.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from radiomics_job import FALLBACK_LABEL_NAMES

FOREGROUND_LABEL = next(iter(FALLBACK_LABEL_NAMES))  # 3
MIN_NETWORK_VOXELS = 27  # 3 x 3 x 3: below this the network found nothing a texture can be computed on
OTSU_BINS = 128


MAX_PLAUSIBLE_ML = {1: 100.0, 2: 12.0}  # lesion, hippocampus (see the module docstring)


def implausible(labels: npt.NDArray[np.uint8], voxel_ml: float) -> dict[int, float]:
    """The network labels whose volume (ml) exceeds MAX_PLAUSIBLE_ML: {label: volume}."""
    counts = np.bincount(labels.ravel(), minlength=FOREGROUND_LABEL)
    return {
        label: round(float(counts[label]) * voxel_ml, 1)
        for label, limit in MAX_PLAUSIBLE_ML.items()
        if counts[label] * voxel_ml > limit
    }


def network_found_nothing(labels: npt.NDArray[np.uint8]) -> bool:
    """True when no network label (1, 2, ...) has MIN_NETWORK_VOXELS voxels."""
    counts = np.bincount(labels.ravel(), minlength=FOREGROUND_LABEL)
    return bool(counts[1:].max(initial=0) < MIN_NETWORK_VOXELS)


def foreground(volume: npt.NDArray[Any]) -> npt.NDArray[np.uint8]:
    """1 on the body, 0 elsewhere; (slice, row, col) like `volume`."""
    values = np.asarray(volume, dtype=np.float32)
    if values.size == 0 or float(values.max()) <= float(values.min()):
        return np.zeros(values.shape, dtype=np.uint8)
    image = sitk.GetImageFromArray(values)
    above = sitk.OtsuThreshold(image, 0, 1, OTSU_BINS)  # inside (<= threshold) 0, outside (brighter) 1
    components = sitk.ConnectedComponent(above, False)  # face connectivity
    largest = sitk.RelabelComponent(components, sortByObjectSize=True) == 1
    closed = sitk.BinaryMorphologicalClosing(largest, [1, 1, 1], sitk.sitkBall, 1)
    mask = sitk.GetArrayFromImage(closed).astype(np.uint8)
    for k in range(mask.shape[0]):
        filled = sitk.BinaryFillhole(sitk.GetImageFromArray(mask[k]), False, 1)
        mask[k] = sitk.GetArrayFromImage(filled)
    return np.ascontiguousarray(mask)
