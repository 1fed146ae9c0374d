"""Test-split metrics with percentile-bootstrap confidence intervals (pure numpy: no AutoGluon here).

Every metric is computed for all resamples at once on a (resamples x rows) matrix, so 1000 resamples of nine
metrics cost milliseconds. Conventions:
- a patient is predicted positive when its probability of the outcome is >= the decision threshold; the job
  passes the threshold chosen on the training split's out-of-fold predictions (thresholds.py), never one
  chosen on the test split;
- precision and F1 are 0 when undefined (no predicted positive), as scikit-learn's zero_division=0;
- `auprc` is average precision (scikit-learn's `average_precision_score`: the step-wise area under the
  precision-recall curve, no interpolation); `brier` is the mean squared difference between the probability
  and the 0/1 label (lower is better);
- a resample holding one class only is dropped for every metric (AUC, recall and balanced accuracy are
  undefined on it), so all intervals of a predictor come from the same resamples;
- resamples come from `seed`, so predictors scored on the same test rows with the same seed share them: the
  per-set intervals and the paired AUC differences are paired.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.stats import rankdata

CONFIDENCE = 0.95
# Ranking and calibration first, then the metrics at the decision threshold.
METRICS: tuple[str, ...] = (
    "roc_auc",
    "auprc",
    "brier",
    "f1",
    "precision",
    "recall",
    "specificity",
    "balanced_accuracy",
    "accuracy",
)
THRESHOLD_FREE: frozenset[str] = frozenset({"roc_auc", "auprc", "brier"})
_CHUNK = 256  # resamples per block: bounds memory for large test splits

FloatArray = NDArray[np.float64]
Labels = NDArray[np.int8]


@dataclass(frozen=True)
class Estimate:
    value: float
    ci_low: float | None
    ci_high: float | None

    def as_dict(self) -> dict[str, float | None]:
        return {"value": _round(self.value), "ci_low": _round(self.ci_low), "ci_high": _round(self.ci_high)}


def classification_metrics(
    y_true: NDArray[np.generic],
    y_score: NDArray[np.generic],
    *,
    threshold: float,
    resamples: int,
    seed: int,
    confidence: float = CONFIDENCE,
) -> dict[str, Estimate]:
    """Each of METRICS on the given rows, with its percentile-bootstrap interval (None when `resamples` is 0
    or no resample holds both classes). ValueError when the rows lack a class."""
    y, score = checked(y_true, y_score)
    point = _metric_rows(y[None, :], score[None, :], threshold)
    draws = _bootstrap(lambda idx: _metric_rows(y[idx], score[idx], threshold), len(y), resamples, seed)
    return {
        name: Estimate(float(point[name][0]), *_interval(draws.get(name), confidence)) for name in METRICS
    }


def confusion_counts(
    y_true: NDArray[np.generic], y_score: NDArray[np.generic], threshold: float
) -> dict[str, int]:
    """tp, fp, tn, fn with a patient predicted positive when its score is >= threshold."""
    y = np.asarray(y_true).astype(bool)
    predicted = np.asarray(y_score, dtype=np.float64) >= threshold
    return {
        "tp": int((predicted & y).sum()),
        "fp": int((predicted & ~y).sum()),
        "tn": int((~predicted & ~y).sum()),
        "fn": int((~predicted & y).sum()),
    }


def paired_auc_difference(
    y_true: NDArray[np.generic],
    score_a: NDArray[np.generic],
    score_b: NDArray[np.generic],
    *,
    resamples: int,
    seed: int,
    confidence: float = CONFIDENCE,
) -> Estimate:
    """AUC(a) - AUC(b) on the same rows, its interval from resamples shared by both (a paired bootstrap)."""
    y, a = checked(y_true, score_a)
    _, b = checked(y_true, score_b)

    def difference(idx: NDArray[np.intp]) -> dict[str, FloatArray]:
        return {"difference": _auc_rows(y[idx], a[idx]) - _auc_rows(y[idx], b[idx])}

    value = float((_auc_rows(y[None, :], a[None, :]) - _auc_rows(y[None, :], b[None, :]))[0])
    draws = _bootstrap(difference, len(y), resamples, seed)
    return Estimate(value, *_interval(draws.get("difference"), confidence))


def roc_auc(y_true: NDArray[np.generic], y_score: NDArray[np.generic]) -> float:
    y, score = checked(y_true, y_score)
    return float(_auc_rows(y[None, :], score[None, :])[0])


def checked(y_true: NDArray[np.generic], y_score: NDArray[np.generic]) -> tuple[Labels, FloatArray]:
    """Labels as 0/1 int8 and scores as float64; ValueError unless 1-D, of one length, finite, both classes."""
    y = np.asarray(y_true).astype(np.int8)
    score = np.asarray(y_score, dtype=np.float64)
    if y.ndim != 1 or y.shape != score.shape:
        raise ValueError(f"y_true and y_score must be 1-D of one length (got {y.shape} and {score.shape})")
    if not set(np.unique(y).tolist()) == {0, 1}:
        raise ValueError("y_true must hold both classes, as 0/1")
    if not np.isfinite(score).all():
        raise ValueError("y_score holds NaN or infinite values")
    return y, score


def _bootstrap(
    statistic: Callable[[NDArray[np.intp]], dict[str, FloatArray]], n: int, resamples: int, seed: int
) -> dict[str, FloatArray]:
    if resamples <= 0:
        return {}
    rng = np.random.default_rng(seed)
    index = rng.integers(0, n, size=(resamples, n))
    blocks = [statistic(index[start : start + _CHUNK]) for start in range(0, resamples, _CHUNK)]
    return {name: np.concatenate([block[name] for block in blocks]) for name in blocks[0]}


def _interval(draws: FloatArray | None, confidence: float) -> tuple[float | None, float | None]:
    if draws is None:
        return None, None
    valid = draws[~np.isnan(draws)]
    if valid.size == 0:
        return None, None
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(valid, [tail, 100 - tail])
    return float(low), float(high)


def _metric_rows(y: Labels, score: FloatArray, threshold: float) -> dict[str, FloatArray]:
    """Every metric per row of (resamples x rows) labels and scores; NaN for a row with one class."""
    positive = y == 1
    predicted = score >= threshold
    tp = (predicted & positive).sum(axis=1).astype(np.float64)
    fp = (predicted & ~positive).sum(axis=1).astype(np.float64)
    fn = (~predicted & positive).sum(axis=1).astype(np.float64)
    tn = (~predicted & ~positive).sum(axis=1).astype(np.float64)
    n_pos, n_neg = tp + fn, tn + fp
    both = (n_pos > 0) & (n_neg > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = tp / n_pos
        specificity = tn / n_neg
        values = {
            "roc_auc": _auc_rows(y, score),
            "auprc": _average_precision_rows(y, score),
            "brier": ((score - y) ** 2).mean(axis=1),
            "f1": np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0),
            "precision": np.where(tp + fp > 0, tp / (tp + fp), 0.0),
            "recall": recall,
            "specificity": specificity,
            "balanced_accuracy": (recall + specificity) / 2,
            "accuracy": (tp + tn) / y.shape[1],
        }
    return {name: np.where(both, v, np.nan) for name, v in values.items()}


def _auc_rows(y: Labels, score: FloatArray) -> FloatArray:
    """ROC AUC per row as the Mann-Whitney U statistic (ties count one half); NaN for a row with one class."""
    positive = y == 1
    n_pos = positive.sum(axis=1).astype(np.float64)
    n_neg = y.shape[1] - n_pos
    ranks = rankdata(score, axis=1)  # average ranks for ties
    rank_sum = np.where(positive, ranks, 0.0).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)


def _average_precision_rows(y: Labels, score: FloatArray) -> FloatArray:
    """Average precision per row: sum over distinct scores (highest first) of the recall gained there times
    the precision there, as scikit-learn (tied scores form one step); NaN for a row without a positive."""
    order = np.argsort(-score, axis=1, kind="mergesort")
    y_sorted = np.take_along_axis(y, order, axis=1).astype(np.float64)
    s_sorted = np.take_along_axis(score, order, axis=1)
    tp = np.cumsum(y_sorted, axis=1)
    precision = tp / np.arange(1, y.shape[1] + 1)
    # The last row of each run of tied scores closes a step of the curve.
    step_end = np.ones_like(s_sorted, dtype=bool)
    step_end[:, :-1] = s_sorted[:, :-1] != s_sorted[:, 1:]
    tp_at_ends = np.maximum.accumulate(np.where(step_end, tp, 0.0), axis=1)  # tp is non-decreasing
    previous = np.concatenate([np.zeros((y.shape[0], 1)), tp_at_ends[:, :-1]], axis=1)
    gained = np.where(step_end, tp - previous, 0.0)
    n_pos = tp[:, -1]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n_pos > 0, (gained * precision).sum(axis=1) / n_pos, np.nan)


def _round(value: float | None) -> float | None:
    # JSON has no NaN: an undefined value is null.
    return None if value is None or np.isnan(value) else round(value, 6)
