"""The decision threshold: the F1-maximising cut of the out-of-fold predictions, chosen on the training split
only (changing the test split's labels cannot move it), recorded with its criterion."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as sk

from tests.unit.training.cohort import synthetic_frame
from training_job.fit import FitResult, FitTask, run_fit
from training_job.parameters import parse_parameters
from training_job.thresholds import CRITERION, SOURCE, max_f1_threshold


@pytest.mark.parametrize("seed", range(4))
def test_the_threshold_is_the_out_of_fold_score_with_the_highest_f1(seed: int) -> None:
    rng = np.random.default_rng(seed)
    # Calibrated probabilities of a rare outcome (about 15 %), rounded: ties
    score = np.round(1 / (1 + np.exp(-(-2.3 + 1.5 * rng.normal(0, 1, 300)))), 2)
    y = (rng.random(300) < score).astype(int)
    y[:2] = [0, 1]
    threshold = max_f1_threshold(y, score, folds=5)
    f1 = {t: sk.f1_score(y, score >= t) for t in np.unique(score)}
    best = max(f1.values())
    assert threshold.oof_f1 == pytest.approx(best)
    assert threshold.value == max(t for t, v in f1.items() if v == pytest.approx(best))  # highest of equals
    assert (threshold.criterion, threshold.source, threshold.folds) == (CRITERION, SOURCE, 5)
    assert (threshold.n, threshold.positives) == (300, y.sum())
    # Calibrated and rare: it sits below 0.5 (near half the best F1, Lipton et al.), where 0.5 flags few.
    assert threshold.value < 0.5


def test_the_threshold_does_not_depend_on_the_test_labels() -> None:
    # Given one tiny bagged fit, and the same fit with every test label flipped
    frame = synthetic_frame(240, 3)
    frame = frame[frame["stroke"].notna()].reset_index(drop=True)
    frame["stroke"] = frame["stroke"].astype(bool).astype(np.int8)
    train, test = frame.iloc[:160].reset_index(drop=True), frame.iloc[160:].reset_index(drop=True)
    flipped = test.assign(stroke=1 - test["stroke"])
    parameters = parse_parameters({"hyperparameters": '{"GBM": {"num_boost_round": 10}}', "time_limit": "30"})
    features = ["clinical__sbp", "genomic__prs", "clinical__bmi"]

    def fit(test_split: pd.DataFrame) -> FitResult:
        return run_fit(FitTask("stroke", features, train, test_split, parameters, None, bag_folds=3))

    first, second = fit(test), fit(flipped)
    # Then the out-of-fold scores, and so the threshold, are the same
    assert first.oof_scores is not None
    assert second.oof_scores is not None
    assert len(first.oof_scores) == len(train)
    np.testing.assert_array_equal(first.oof_scores, second.oof_scores)
    y_train = train["stroke"].to_numpy()
    assert max_f1_threshold(y_train, first.oof_scores, 3) == max_f1_threshold(y_train, second.oof_scores, 3)
    # ...while the test split was scored (the same scores, other labels: other test metrics)
    np.testing.assert_array_equal(first.test_scores, second.test_scores)
    assert first.leaderboard is not None
    assert second.leaderboard is not None
    assert not first.leaderboard["score_test"].equals(second.leaderboard["score_test"])


def test_bagging_folds_never_exceed_the_training_minority_class() -> None:
    """Every stratified fold's held-out part must hold both classes (AutoGluon scores each fold by AUC):
    a 60-patient delivery with 3 training positives failed the whole job with 5 folds."""
    from training_job.job import bag_folds

    assert bag_folds(5, {"positives_train": 3, "n_train": 42}) == 3
    assert bag_folds(5, {"positives_train": 40, "n_train": 42}) == 2
    assert bag_folds(5, {"positives_train": 100, "n_train": 700}) == 5
