"""AutoGluon: one TabularPredictor per outcome x modality set, its scores, leaderboard and feature importance.

The only module that imports AutoGluon (slow to import: the CLI loads it after the inputs are checked).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from autogluon.tabular import TabularPredictor
from numpy.typing import NDArray

from training_job.parameters import TrainingParameters

# Warnings and errors only: the job logs one line per predictor itself.
VERBOSITY = 1
IMPORTANCE_SHUFFLE_SETS = 3


@dataclass(frozen=True)
class FittedPredictor:
    predictor: TabularPredictor
    features: list[str]
    seconds: float

    @property
    def best_model(self) -> str:
        return str(self.predictor.model_best)


def fit_predictor(
    train: pd.DataFrame, label: str, features: list[str], path: Path, parameters: TrainingParameters
) -> FittedPredictor:
    """Fit on `train[features]` (NaN = modality missing: AutoGluon's models take missing values) to predict
    `label` (0/1, positive class 1), optimising ROC AUC. A predictor already at `path` is replaced."""
    if path.exists():
        shutil.rmtree(path)
    started = time.perf_counter()
    predictor = TabularPredictor(
        label=label,
        problem_type="binary",
        eval_metric="roc_auc",
        positive_class=1,
        path=str(path),
        verbosity=VERBOSITY,
    )
    predictor.fit(
        train[[*features, label]],
        time_limit=parameters.time_limit,
        presets=parameters.presets,
        hyperparameters=parameters.hyperparameters,
    )
    return FittedPredictor(predictor, features, time.perf_counter() - started)


def shuffled_labels(labels: pd.Series, seed: int) -> pd.Series:
    """The labels permuted with `seed`: the control keeps the prevalence and loses every link to the features."""
    permuted = np.random.default_rng(seed).permutation(labels.to_numpy())
    return pd.Series(permuted, index=labels.index, name=labels.name)


def positive_scores(fitted: FittedPredictor, frame: pd.DataFrame) -> NDArray[np.float64]:
    """The predicted probability of the outcome (class 1) for each row of `frame`."""
    scores = fitted.predictor.predict_proba(frame[fitted.features], as_multiclass=False)
    return np.asarray(scores, dtype=np.float64)


def leaderboard(fitted: FittedPredictor, test: pd.DataFrame, label: str) -> pd.DataFrame:
    """Every model AutoGluon trained, scored on the test split (score_test = ROC AUC)."""
    board: pd.DataFrame = fitted.predictor.leaderboard(test[[*fitted.features, label]])
    return board


def feature_importance(
    fitted: FittedPredictor, test: pd.DataFrame, label: str, subsample: int
) -> pd.DataFrame:
    """Permutation importance (drop in test ROC AUC) on up to `subsample` test rows: columns feature,
    importance, stddev, p_value, n."""
    table = fitted.predictor.feature_importance(
        test[[*fitted.features, label]],
        subsample_size=min(subsample, len(test)),
        num_shuffle_sets=IMPORTANCE_SHUFFLE_SETS,
        include_confidence_band=False,
        silent=True,
    )
    table = table.rename_axis("feature").reset_index()
    return table[["feature", "importance", "stddev", "p_value", "n"]]
