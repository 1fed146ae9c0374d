"""AutoGluon: one TabularPredictor per fit task, its test and out-of-fold scores, leaderboard and feature
importance.

The only module that imports AutoGluon, and only inside `run_fit`, which the job runs in worker processes
(`fit_pool`): every predictor of the job is independent of the others, and an AutoGluon fit on a few hundred
rows is mostly single-threaded Python (feature preprocessing, saving), so the fits run side by side, one
per CPU, each model restricted to its share of the CPUs.

Bagging: the predictors that are evaluated are fitted with `bag_folds`-fold bagging (AutoGluon's
`num_bag_folds`, one bagging set, no stacking), which gives every training row an out-of-fold probability
for choosing the decision threshold, then refit on all training rows (AutoGluon's `refit_full`: each model
refit once, LightGBM with the boosting rounds its folds chose). The refit models become the predictor's best
model: they score the test split, give the feature importance and are what `TabularPredictor.load(...)`
predicts with; the out-of-fold scores come from their bagged parents, AutoGluon's own pairing when it
calibrates a refit model's threshold. (Scoring with the bagged ensemble instead costs 5x per prediction:
the permutation feature importance of the full set went from 5 to 19 s.) The label-shuffle permutations
are fitted without bagging (`bag_folds=0`: one model per family, AutoGluon's own holdout for early
stopping), several times cheaper; they need no threshold of their own.

Every fit runs under joblib's threading backend. scikit-learn's LogisticRegression (AutoGluon's `LR`) goes
through joblib, whose default process backend memory-maps arrays over 1 MB and then waits up to a second
per call for the workers to release the temporary folder before deleting it: measured on the
1,000-patient demo's 312-column full set, 2 of its 3.3 s fit (and 10 s of a 5-fold bagged fit) were that
wait. The threading backend gives the same model (identical predictions) without it.

AutoGluon writes the version of every installed distribution into each predictor's metadata.json, scanning
them anew on every save (twice per fit): 0.7 s per fit over the dev venv's 688 distributions, half of a
permutation's fit. A worker scans once (`_scan_packages_once`); the files written are the same.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from training_job.parameters import TrainingParameters

# Warnings and errors only: the job logs one line per predictor itself.
VERBOSITY = 1
IMPORTANCE_SHUFFLE_SETS = 3
MAX_WORKERS = 8  # each worker holds AutoGluon (about 0.5 GB)


@dataclass(frozen=True)
class FitTask:
    """One predictor: fit on `train[features]` (NaN = modality missing: AutoGluon's models take missing
    values) to predict `label` (0/1, positive class 1), optimising ROC AUC; score `test`."""

    label: str
    features: list[str]
    train: pd.DataFrame
    test: pd.DataFrame
    parameters: TrainingParameters
    path: Path | None
    """Where the predictor is kept (replaced if present); None = a scratch folder, deleted after scoring."""
    bag_folds: int
    """0 = no bagging (no out-of-fold scores)."""
    permutation_seed: int | None = None
    """Fit on the training labels permuted with this seed (the label-shuffle control)."""
    importance_subsample: int = 0
    """Test rows for permutation feature importance; 0 = none."""
    with_leaderboard: bool = True
    num_cpus: int | None = None


@dataclass(frozen=True)
class FitResult:
    test_scores: NDArray[np.float64]
    """The probability of the outcome for each test row, in `test` order."""
    oof_scores: NDArray[np.float64] | None
    """The out-of-fold probability for each training row, in `train` order (bagged fits only)."""
    best_model: str
    n_features: int
    seconds: float
    leaderboard: pd.DataFrame | None
    """Every model AutoGluon trained, scored on the test split (score_test = ROC AUC)."""
    importance: pd.DataFrame | None
    """feature, importance, stddev, p_value, n: the drop in test ROC AUC when the feature is shuffled."""


def fit_pool(workers: int | None = None) -> ProcessPoolExecutor:
    """Worker processes for run_fit (spawned: AutoGluon and LightGBM's OpenMP do not survive a fork)."""
    return ProcessPoolExecutor(
        max_workers=workers or default_workers(), mp_context=multiprocessing.get_context("spawn")
    )


def default_workers() -> int:
    return max(1, min(MAX_WORKERS, len(os.sched_getaffinity(0))))


def shuffled_labels(labels: pd.Series, seed: int) -> pd.Series:
    """The labels permuted with `seed`: the control keeps the prevalence and loses every link to the features."""
    permuted = np.random.default_rng(seed).permutation(labels.to_numpy())
    return pd.Series(permuted, index=labels.index, name=labels.name)


def run_fit(task: FitTask) -> FitResult:
    """Fit, score and describe one predictor (in a worker process)."""
    import joblib
    from autogluon.tabular import TabularPredictor

    _scan_packages_once()
    train = task.train[[*task.features, task.label]]
    if task.permutation_seed is not None:
        train = train.assign(**{task.label: shuffled_labels(train[task.label], task.permutation_seed)})
    scratch = None if task.path else tempfile.mkdtemp(prefix="predictor-")
    path = task.path or Path(str(scratch))
    if path.exists():
        shutil.rmtree(path)
    bagging: dict[str, Any] = (
        {"num_bag_folds": task.bag_folds, "num_bag_sets": 1, "num_stack_levels": 0, "dynamic_stacking": False}
        if task.bag_folds >= 2
        else {}
    )
    started = time.perf_counter()
    try:
        predictor = TabularPredictor(
            label=task.label,
            problem_type="binary",
            eval_metric="roc_auc",
            positive_class=1,
            path=str(path),
            verbosity=VERBOSITY,
        )
        with joblib.parallel_config(backend="threading"):
            predictor.fit(
                train,
                time_limit=task.parameters.time_limit,
                presets=task.parameters.presets,
                hyperparameters=task.parameters.hyperparameters,
                num_cpus=task.num_cpus or "auto",
                **bagging,
            )
            oof = None
            if bagging:
                oof = np.asarray(
                    predictor.predict_proba_oof(as_multiclass=False).reindex(train.index), dtype=np.float64
                )
                predictor.refit_full(
                    model="best", set_best_to_refit_full=True, num_cpus=task.num_cpus or "auto"
                )
        seconds = time.perf_counter() - started
        test = task.test[[*task.features, task.label]]
        return FitResult(
            test_scores=np.asarray(predictor.predict_proba(test, as_multiclass=False), dtype=np.float64),
            oof_scores=oof,
            best_model=str(predictor.model_best),
            n_features=len(task.features),
            seconds=seconds,
            leaderboard=predictor.leaderboard(test) if task.with_leaderboard else None,
            importance=_importance(predictor, test, task.importance_subsample),
        )
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)


def _scan_packages_once() -> None:
    from autogluon.tabular.predictor import predictor as module

    if not hasattr(module.get_autogluon_metadata, "cache_info"):
        module.get_autogluon_metadata = functools.cache(module.get_autogluon_metadata)


def _importance(predictor: Any, test: pd.DataFrame, subsample: int) -> pd.DataFrame | None:
    if subsample <= 0:
        return None
    table = predictor.feature_importance(
        test,
        subsample_size=min(subsample, len(test)),
        num_shuffle_sets=IMPORTANCE_SHUFFLE_SETS,
        include_confidence_band=False,
        silent=True,
    )
    table = table.rename_axis("feature").reset_index()
    return table[["feature", "importance", "stddev", "p_value", "n"]]
