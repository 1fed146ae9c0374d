"""Curve points for the report and metrics.json (pure numpy): ROC, precision-recall, reliability.

Points are rounded to 6 decimals. The reliability curve uses RELIABILITY_BINS bins of (nearly) equal count
by predicted probability (quantile bins), so every point rests on about the same number of patients.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from training_job.evaluate import checked

RELIABILITY_BINS = 10


def roc_points(y_true: NDArray[np.generic], y_score: NDArray[np.generic]) -> tuple[list[float], list[float]]:
    """(false positive rates, true positive rates) of the ROC curve, from (0, 0) to (1, 1)."""
    y, tps, fps = _cumulative_counts(y_true, y_score)
    fpr = np.r_[0.0, fps / (len(y) - y.sum())]
    tpr = np.r_[0.0, tps / y.sum()]
    return _rounded(fpr), _rounded(tpr)


def pr_points(y_true: NDArray[np.generic], y_score: NDArray[np.generic]) -> tuple[list[float], list[float]]:
    """(recalls, precisions) of the precision-recall curve, one point per distinct score from the highest,
    starting at (0, 1) as scikit-learn's precision_recall_curve (read in reverse)."""
    y, tps, fps = _cumulative_counts(y_true, y_score)
    recall = np.r_[0.0, tps / y.sum()]
    precision = np.r_[1.0, tps / (tps + fps)]
    return _rounded(recall), _rounded(precision)


def reliability_bins(
    y_true: NDArray[np.generic], y_score: NDArray[np.generic], bins: int = RELIABILITY_BINS
) -> list[dict[str, Any]]:
    """Per quantile bin of the predicted probability (lowest first): mean predicted, observed rate, n."""
    y, score = checked(y_true, y_score)
    order = np.argsort(score, kind="mergesort")
    groups = [g for g in np.array_split(order, min(bins, len(order))) if len(g)]
    return [
        {
            "mean_predicted": round(float(score[g].mean()), 6),
            "observed": round(float(y[g].mean()), 6),
            "n": len(g),
        }
        for g in groups
    ]


def _cumulative_counts(
    y_true: NDArray[np.generic], y_score: NDArray[np.generic]
) -> tuple[NDArray[np.int8], NDArray[np.float64], NDArray[np.float64]]:
    """Labels, and true / false positives when predicting positive down to each distinct score (ties move
    together), highest score first."""
    y, score = checked(y_true, y_score)
    order = np.argsort(-score, kind="mergesort")
    y_sorted, s_sorted = y[order], score[order]
    last_of_tie = np.r_[np.nonzero(np.diff(s_sorted))[0], len(y) - 1]
    tps = np.cumsum(y_sorted)[last_of_tie].astype(np.float64)
    fps = (last_of_tie + 1) - tps
    return y, tps, fps


def _rounded(values: NDArray[np.float64]) -> list[float]:
    return [round(float(v), 6) for v in values]
