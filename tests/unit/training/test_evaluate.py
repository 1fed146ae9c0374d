"""Metrics and bootstrap intervals on numpy arrays (no AutoGluon): the same values as scikit-learn (AUPRC and
Brier included), intervals that contain the estimate and narrow with more rows, paired differences, and the
ROC, precision-recall and reliability curves."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as sk

from training_job.curves import pr_points, reliability_bins, roc_points
from training_job.evaluate import (
    METRICS,
    classification_metrics,
    confusion_counts,
    paired_auc_difference,
    roc_auc,
)


def _scored(rows: int, seed: int, separation: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(rows) < 0.35).astype(int)
    score = 1 / (1 + np.exp(-(separation * (2 * y - 1) + rng.normal(0, 1.2, rows))))
    score[:10] = 0.5  # ties, and rows exactly on the threshold
    return y, score


def test_point_estimates_are_scikit_learns() -> None:
    y, score = _scored(300, 1)
    estimates = classification_metrics(y, score, threshold=0.5, resamples=0, seed=0)
    predicted = score >= 0.5
    expected = {
        "accuracy": sk.accuracy_score(y, predicted),
        "balanced_accuracy": sk.balanced_accuracy_score(y, predicted),
        "precision": sk.precision_score(y, predicted),
        "recall": sk.recall_score(y, predicted),
        "specificity": sk.recall_score(y, predicted, pos_label=0),
        "f1": sk.f1_score(y, predicted),
        "roc_auc": sk.roc_auc_score(y, score),
        "auprc": sk.average_precision_score(y, score),
        "brier": sk.brier_score_loss(y, score),
    }
    assert set(estimates) == set(METRICS) == set(expected)
    for name, value in expected.items():
        assert estimates[name].value == pytest.approx(value, abs=1e-12), name
        assert estimates[name].ci_low is None
        assert estimates[name].ci_high is None
    assert roc_auc(y, score) == pytest.approx(sk.roc_auc_score(y, score))


def test_precision_is_zero_when_nothing_is_predicted_positive() -> None:
    y = np.array([0, 1, 0, 1, 0])
    estimates = classification_metrics(y, np.full(5, 0.1), threshold=0.5, resamples=0, seed=0)
    assert estimates["precision"].value == 0.0
    assert estimates["f1"].value == 0.0
    assert estimates["roc_auc"].value == 0.5  # all tied


def test_the_interval_contains_the_estimate_and_narrows_with_more_rows() -> None:
    small = classification_metrics(*_scored(100, 2), threshold=0.5, resamples=1000, seed=42)
    large = classification_metrics(*_scored(1600, 2), threshold=0.5, resamples=1000, seed=42)
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
    first = classification_metrics(y, score, threshold=0.5, resamples=500, seed=42)
    assert classification_metrics(y, score, threshold=0.5, resamples=500, seed=42) == first
    assert (
        classification_metrics(y, score, threshold=0.5, resamples=500, seed=43)["roc_auc"] != first["roc_auc"]
    )


def test_resamples_with_one_class_are_dropped_not_counted() -> None:
    # Given 1 positive in 40 rows, about a third of the resamples hold no positive at all
    y = np.zeros(40, dtype=int)
    y[0] = 1
    score = np.linspace(1, 0, 40)
    estimate = classification_metrics(y, score, threshold=0.5, resamples=1000, seed=42)["roc_auc"]
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
        classification_metrics(np.ones(10), np.linspace(0, 1, 10), threshold=0.5, resamples=10, seed=0)


@pytest.mark.parametrize("seed", range(5))
def test_auprc_and_brier_are_scikit_learns_on_random_data_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    rows = int(rng.integers(20, 400))
    y = (rng.random(rows) < rng.uniform(0.05, 0.6)).astype(int)
    y[:2] = [0, 1]
    score = np.round(rng.random(rows) * 0.6 + 0.4 * y * rng.random(rows), int(rng.integers(1, 4)))  # ties
    estimates = classification_metrics(y, score, threshold=0.5, resamples=0, seed=0)
    assert estimates["auprc"].value == pytest.approx(sk.average_precision_score(y, score), abs=1e-12)
    assert estimates["brier"].value == pytest.approx(sk.brier_score_loss(y, score), abs=1e-12)


def test_auprc_and_brier_intervals_hold_each_resample_s_own_value() -> None:
    # The bootstrap of AUPRC and Brier is the vectorised metric on each resample: check one resample by hand.
    y, score = _scored(120, 8)
    draws = 300
    estimates = classification_metrics(y, score, threshold=0.5, resamples=draws, seed=42)
    index = np.random.default_rng(42).integers(0, len(y), size=(draws, len(y)))
    by_hand = [
        (sk.average_precision_score(y[i], score[i]), sk.brier_score_loss(y[i], score[i]))
        for i in index
        if 0 < y[i].sum() < len(y)
    ]
    auprc, brier = np.array(by_hand).T
    assert (estimates["auprc"].ci_low, estimates["auprc"].ci_high) == pytest.approx(
        tuple(np.percentile(auprc, [2.5, 97.5]))
    )
    assert (estimates["brier"].ci_low, estimates["brier"].ci_high) == pytest.approx(
        tuple(np.percentile(brier, [2.5, 97.5]))
    )


def test_the_confusion_matrix_counts_scores_at_or_above_the_threshold_as_positive() -> None:
    y = np.array([1, 1, 0, 0, 1, 0])
    score = np.array([0.9, 0.3, 0.3, 0.1, 0.2, 0.8])
    assert confusion_counts(y, score, 0.3) == {"tp": 2, "fp": 2, "tn": 1, "fn": 1}
    matrix = sk.confusion_matrix(y, score >= 0.3)
    assert confusion_counts(y, score, 0.3) == dict(
        zip(("tn", "fp", "fn", "tp"), map(int, matrix.ravel()), strict=True)
    )


def test_the_precision_recall_curve_is_scikit_learns() -> None:
    y, score = _scored(250, 9)
    recall, precision = pr_points(y, score)
    expected_precision, expected_recall, _ = sk.precision_recall_curve(y, score)
    # scikit-learn lists them from the lowest threshold, ending at (recall 0, precision 1).
    np.testing.assert_allclose(recall, expected_recall[::-1], atol=1e-6)
    np.testing.assert_allclose(precision, expected_precision[::-1], atol=1e-6)


def test_reliability_bins_are_quantile_bins_of_the_predicted_probability() -> None:
    rng = np.random.default_rng(10)
    score = rng.random(205)
    y = (rng.random(205) < score).astype(int)  # calibrated by construction
    y[:2] = [0, 1]
    bins = reliability_bins(y, score)
    assert [b["n"] for b in bins] == [21] * 5 + [20] * 5
    order = np.argsort(score)
    assert bins[0]["mean_predicted"] == pytest.approx(score[order[:21]].mean(), abs=1e-6)
    assert bins[0]["observed"] == pytest.approx(y[order[:21]].mean(), abs=1e-6)
    means = [b["mean_predicted"] for b in bins]
    assert means == sorted(means)
    assert sum(b["observed"] * b["n"] for b in bins) == pytest.approx(y.sum())
