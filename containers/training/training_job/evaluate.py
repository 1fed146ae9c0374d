"""Test-split metrics with percentile-bootstrap confidence intervals (pure numpy: no AutoGluon here).

Every metric is computed for all resamples at once on a (resamples x rows) matrix, so 1000 resamples of six
metrics cost milliseconds. Conventions:
- a patient is predicted positive when its probability of the outcome is >= THRESHOLD (0.5), whatever
  decision threshold AutoGluon would pick itself;
- precision and F1 are 0 when undefined (no predicted positive), as scikit-learn's zero_division=0;
- a resample holding one class only is dropped for every metric (AUC, recall and balanced accuracy are
  undefined on it), so all intervals of a predictor come from the same resamples;
- resamples come from `seed`, so predictors scored on the same test rows with the same seed share them: the
  per-set intervals and the multimodal gain are paired.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.stats import rankdata

THRESHOLD = 0.5
CONFIDENCE = 0.95
METRICS: tuple[str, ...] = ("accuracy", "balanced_accuracy", "precision", "recall", "f1", "roc_auc")
_CHUNK = 256  # resamples per block: bounds memory for large test splits

FloatArray = NDArray[np.float64]


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
    resamples: int,
    seed: int,
    threshold: float = THRESHOLD,
    confidence: float = CONFIDENCE,
) -> dict[str, Estimate]:
    """Each of METRICS on the whole test split, with its percentile-bootstrap interval (None when `resamples`
    is 0 or no resample holds both classes). ValueError when the split itself lacks a class."""
    y, score = _checked(y_true, y_score)
    point = _metric_rows(y[None, :], score[None, :], threshold)
    draws = _bootstrap(lambda idx: _metric_rows(y[idx], score[idx], threshold), len(y), resamples, seed)
    return {
        name: Estimate(float(point[name][0]), *_interval(draws.get(name), confidence)) for name in METRICS
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
    y, a = _checked(y_true, score_a)
    _, b = _checked(y_true, score_b)

    def difference(idx: NDArray[np.intp]) -> dict[str, FloatArray]:
        return {"gain": _auc_rows(y[idx], a[idx]) - _auc_rows(y[idx], b[idx])}

    value = float((_auc_rows(y[None, :], a[None, :]) - _auc_rows(y[None, :], b[None, :]))[0])
    draws = _bootstrap(difference, len(y), resamples, seed)
    return Estimate(value, *_interval(draws.get("gain"), confidence))


def roc_auc(y_true: NDArray[np.generic], y_score: NDArray[np.generic]) -> float:
    y, score = _checked(y_true, y_score)
    return float(_auc_rows(y[None, :], score[None, :])[0])


def roc_points(y_true: NDArray[np.generic], y_score: NDArray[np.generic]) -> tuple[list[float], list[float]]:
    """(false positive rates, true positive rates) of the ROC curve, from (0, 0) to (1, 1)."""
    y, score = _checked(y_true, y_score)
    order = np.argsort(-score, kind="mergesort")
    y_sorted, s_sorted = y[order], score[order]
    # One point per distinct score (ties move together), as sklearn.metrics.roc_curve without dropping.
    last_of_tie = np.r_[np.nonzero(np.diff(s_sorted))[0], len(y) - 1]
    tps = np.cumsum(y_sorted)[last_of_tie]
    fps = (last_of_tie + 1) - tps
    fpr = np.r_[0.0, fps / (len(y) - y.sum())]
    tpr = np.r_[0.0, tps / y.sum()]
    return [round(float(v), 6) for v in fpr], [round(float(v), 6) for v in tpr]


def _checked(
    y_true: NDArray[np.generic], y_score: NDArray[np.generic]
) -> tuple[NDArray[np.int8], FloatArray]:
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


def _metric_rows(y: NDArray[np.int8], score: FloatArray, threshold: float) -> dict[str, FloatArray]:
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
            "accuracy": (tp + tn) / y.shape[1],
            "balanced_accuracy": (recall + specificity) / 2,
            "precision": np.where(tp + fp > 0, tp / (tp + fp), 0.0),
            "recall": recall,
            "f1": np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0),
            "roc_auc": _auc_rows(y, score),
        }
    return {name: np.where(both, v, np.nan) for name, v in values.items()}


def _auc_rows(y: NDArray[np.int8], score: FloatArray) -> FloatArray:
    """ROC AUC per row as the Mann-Whitney U statistic (ties count one half); NaN for a row with one class."""
    positive = y == 1
    n_pos = positive.sum(axis=1).astype(np.float64)
    n_neg = y.shape[1] - n_pos
    ranks = rankdata(score, axis=1)  # average ranks for ties
    rank_sum = np.where(positive, ranks, 0.0).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)


def _round(value: float | None) -> float | None:
    # JSON has no NaN: an undefined value is null.
    return None if value is None or np.isnan(value) else round(value, 6)
