"""Metrics and bootstrap intervals on numpy arrays (no AutoGluon): the same values as scikit-learn, intervals
that contain the estimate and narrow with more rows, paired differences, and the ROC curve."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as sk

from training_job.evaluate import (
    METRICS,
    classification_metrics,
    paired_auc_difference,
    roc_auc,
    roc_points,
)


def _scored(rows: int, seed: int, separation: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(rows) < 0.35).astype(int)
    score = 1 / (1 + np.exp(-(separation * (2 * y - 1) + rng.normal(0, 1.2, rows))))
    score[:10] = 0.5  # ties, and rows exactly on the threshold
    return y, score


def test_point_estimates_are_scikit_learns() -> None:
    y, score = _scored(300, 1)
    estimates = classification_metrics(y, score, resamples=0, seed=0)
    predicted = score >= 0.5
    expected = {
        "accuracy": sk.accuracy_score(y, predicted),
        "balanced_accuracy": sk.balanced_accuracy_score(y, predicted),
        "precision": sk.precision_score(y, predicted),
        "recall": sk.recall_score(y, predicted),
        "f1": sk.f1_score(y, predicted),
        "roc_auc": sk.roc_auc_score(y, score),
    }
    assert set(estimates) == set(METRICS) == set(expected)
    for name, value in expected.items():
        assert estimates[name].value == pytest.approx(value, abs=1e-12), name
        assert estimates[name].ci_low is None
        assert estimates[name].ci_high is None
    assert roc_auc(y, score) == pytest.approx(sk.roc_auc_score(y, score))


def test_precision_is_zero_when_nothing_is_predicted_positive() -> None:
    y = np.array([0, 1, 0, 1, 0])
    estimates = classification_metrics(y, np.full(5, 0.1), resamples=0, seed=0)
    assert estimates["precision"].value == 0.0
    assert estimates["f1"].value == 0.0
    assert estimates["roc_auc"].value == 0.5  # all tied


def test_the_interval_contains_the_estimate_and_narrows_with_more_rows() -> None:
    small = classification_metrics(*_scored(100, 2), resamples=1000, seed=42)
    large = classification_metrics(*_scored(1600, 2), resamples=1000, seed=42)
    for name in METRICS:
        for estimate in (small[name], large[name]):
            assert estimate.ci_low is not None
            assert estimate.ci_high is not None
            assert estimate.ci_low <= estimate.value <= estimate.ci_high, name
        # 16 x the rows: about a quarter of the width; at least halved whatever the draws.
        assert (large[name].ci_high - large[name].ci_low) < 0.5 * (
            small[name].ci_high - small[name].ci_low
        ), name


def test_intervals_are_reproducible_with_the_seed_and_differ_without_it() -> None:
    y, score = _scored(200, 3)
    first = classification_metrics(y, score, resamples=500, seed=42)
    assert classification_metrics(y, score, resamples=500, seed=42) == first
    assert classification_metrics(y, score, resamples=500, seed=43)["roc_auc"] != first["roc_auc"]


def test_resamples_with_one_class_are_dropped_not_counted() -> None:
    # Given 1 positive in 40 rows, about a third of the resamples hold no positive at all
    y = np.zeros(40, dtype=int)
    y[0] = 1
    score = np.linspace(1, 0, 40)
    estimate = classification_metrics(y, score, resamples=1000, seed=42)["roc_auc"]
    # Then the interval comes from the others (where the positive always ranks first): AUC 1, no NaN
    assert (estimate.value, estimate.ci_low, estimate.ci_high) == (1.0, 1.0, 1.0)


def test_the_paired_difference_uses_the_same_resamples_for_both_scores() -> None:
    y, good = _scored(400, 4, separation=1.5)
    rng = np.random.default_rng(5)
    noisy = good + rng.normal(0, 0.3, len(good))
    gain = paired_auc_difference(y, good, noisy, resamples=1000, seed=42)
    assert gain.value == pytest.approx(roc_auc(y, good) - roc_auc(y, noisy))
    assert gain.ci_low is not None
    assert gain.ci_high is not None
    assert 0 < gain.ci_low <= gain.value <= gain.ci_high
    # A predictor against itself: exactly zero on every resample.
    same = paired_auc_difference(y, good, good, resamples=200, seed=42)
    assert (same.value, same.ci_low, same.ci_high) == (0.0, 0.0, 0.0)


def test_the_roc_curve_is_scikit_learns_without_dropped_points() -> None:
    y, score = _scored(250, 6)
    fpr, tpr = roc_points(y, score)
    expected_fpr, expected_tpr, _ = sk.roc_curve(y, score, drop_intermediate=False)
    np.testing.assert_allclose(fpr, expected_fpr, atol=1e-6)
    np.testing.assert_allclose(tpr, expected_tpr, atol=1e-6)


def test_a_test_split_with_one_class_is_refused() -> None:
    with pytest.raises(ValueError, match="both classes"):
        classification_metrics(np.ones(10), np.linspace(0, 1, 10), resamples=10, seed=0)
