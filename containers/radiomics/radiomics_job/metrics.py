"""Overlap metrics for label maps (numpy only, shared by training, tests and the benchmark)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt


def dice(predicted: npt.NDArray[Any], truth: npt.NDArray[Any], label: int) -> float | None:
    """Dice of one label; None when the label is in neither map (nothing to overlap)."""
    p = predicted == label
    t = truth == label
    total = int(p.sum()) + int(t.sum())
    if total == 0:
        return None
    return 2.0 * float(np.logical_and(p, t).sum()) / total
