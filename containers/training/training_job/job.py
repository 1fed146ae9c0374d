"""The job's steps: per outcome one split; per modality set one predictor scored on it; the label-shuffle
control; feature importance and the multimodal gain for the full set; then every output."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from training_job import CONTROL
from training_job.dataset import (
    PATIENT_ID,
    Dataset,
    OutcomeCohort,
    ReferenceSets,
    outcome_cohort,
    trainable_columns,
)
from training_job.errors import JobError, NotTrainable
from training_job.evaluate import Estimate, classification_metrics, paired_auc_difference
from training_job.fit import (
    FittedPredictor,
    feature_importance,
    fit_predictor,
    leaderboard,
    positive_scores,
    shuffled_labels,
)
from training_job.parameters import TrainingParameters

log = logging.getLogger("training_job")


@dataclass
class Results:
    references: ReferenceSets
    metrics: dict[str, dict[str, dict[str, Estimate]]] = field(default_factory=dict)
    control: dict[str, dict[str, Estimate]] = field(default_factory=dict)
    gain: dict[str, Estimate] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    models: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    skipped: list[dict[str, str | None]] = field(default_factory=list)
    predictions: list[pd.DataFrame] = field(default_factory=list)
    leaderboards: list[pd.DataFrame] = field(default_factory=list)
    importance: list[pd.DataFrame] = field(default_factory=list)

    def skip(self, outcome: str, modality_set: str | None, reason: str) -> None:
        log.warning("skipped %s %s: %s", outcome, modality_set or "(all sets)", reason)
        self.skipped.append({"outcome": outcome, "set": modality_set, "reason": reason})


def train_and_evaluate(
    dataset: Dataset, parameters: TrainingParameters, references: ReferenceSets, model_dir: Path
) -> Results:
    """Every predictor under model_dir/<outcome>/<set> (the control under model_dir/<outcome>/control);
    JobError when no outcome could be trained at all."""
    results = Results(references)
    for outcome in parameters.outcomes:
        try:
            cohort = outcome_cohort(dataset, outcome, parameters.test_size, parameters.seed)
        except NotTrainable as reason:
            results.skip(outcome, None, str(reason))
            continue
        results.counts[outcome] = {
            "n_eligible": cohort.n_eligible,
            "n_train": len(cohort.train),
            "n_test": len(cohort.test),
            "positives_train": cohort.positives(cohort.train),
            "positives_test": cohort.positives(cohort.test),
        }
        scores: dict[str, NDArray[np.float64]] = {}
        for modality_set in parameters.modality_sets:
            try:
                columns = trainable_columns(dataset, cohort, modality_set)
            except NotTrainable as reason:
                results.skip(outcome, modality_set, str(reason))
                continue
            fitted = fit_predictor(
                cohort.train, outcome, columns, model_dir / outcome / modality_set, parameters
            )
            scores[modality_set] = _score(results, cohort, modality_set, fitted, parameters)
            if modality_set == results.references.full and parameters.importance_subsample > 0:
                table = feature_importance(fitted, cohort.test, outcome, parameters.importance_subsample)
                table.insert(0, "outcome", outcome)
                table.insert(1, "set", modality_set)
                table.insert(3, "modality", table["feature"].str.split("__").str[0])
                results.importance.append(table)
        if parameters.label_shuffle_control:
            _control(results, dataset, cohort, parameters, model_dir)
        _gain(results, cohort, scores, parameters)
    if not results.metrics:
        reasons = "; ".join(f"{s['outcome']}: {s['reason']}" for s in results.skipped)
        raise JobError(f"no outcome could be trained ({reasons})")
    return results


def _score(
    results: Results,
    cohort: OutcomeCohort,
    modality_set: str,
    fitted: FittedPredictor,
    parameters: TrainingParameters,
) -> NDArray[np.float64]:
    outcome = cohort.outcome
    started = time.perf_counter()
    y_score = positive_scores(fitted, cohort.test)
    y_true = cohort.test[outcome].to_numpy()
    estimates = classification_metrics(y_true, y_score, resamples=parameters.bootstrap, seed=parameters.seed)
    if modality_set == CONTROL:
        results.control[outcome] = estimates
    else:
        results.metrics.setdefault(outcome, {})[modality_set] = estimates
    results.models.setdefault(outcome, {})[modality_set] = {
        "path": f"{outcome}/{modality_set}",
        "best_model": fitted.best_model,
        "n_features": len(fitted.features),
        "fit_seconds": round(fitted.seconds, 2),
    }
    results.predictions.append(
        pd.DataFrame(
            {
                PATIENT_ID: cohort.test[PATIENT_ID].to_numpy(),
                "outcome": outcome,
                "set": modality_set,
                "y_true": y_true.astype("int8"),
                "y_score": y_score,
            }
        )
    )
    board = leaderboard(fitted, cohort.test, outcome)
    board.insert(0, "outcome", outcome)
    board.insert(1, "set", modality_set)
    results.leaderboards.append(board)
    auc = estimates["roc_auc"]
    log.info(
        "%s / %s: test AUC %.3f [%.3f, %.3f], %d features, fit %.1f s, scored in %.1f s",
        outcome,
        modality_set,
        auc.value,
        auc.ci_low if auc.ci_low is not None else float("nan"),
        auc.ci_high if auc.ci_high is not None else float("nan"),
        len(fitted.features),
        fitted.seconds,
        time.perf_counter() - started,
    )
    return y_score


def _control(
    results: Results,
    dataset: Dataset,
    cohort: OutcomeCohort,
    parameters: TrainingParameters,
    model_dir: Path,
) -> None:
    """The full set refit on permuted training labels: a test AUC far from 0.5 means leakage or a bug."""
    full = results.references.full
    try:
        columns = trainable_columns(dataset, cohort, full)
    except NotTrainable as reason:
        results.skip(cohort.outcome, CONTROL, f"{full}: {reason}")
        return
    train = cohort.train.copy()
    train[cohort.outcome] = shuffled_labels(train[cohort.outcome], parameters.seed)
    fitted = fit_predictor(train, cohort.outcome, columns, model_dir / cohort.outcome / CONTROL, parameters)
    _score(results, cohort, CONTROL, fitted, parameters)


def _gain(
    results: Results,
    cohort: OutcomeCohort,
    scores: dict[str, NDArray[np.float64]],
    parameters: TrainingParameters,
) -> None:
    full, baseline = results.references.full, results.references.baseline
    if baseline is None or baseline == full:
        return
    if full not in scores or baseline not in scores:
        results.skip(cohort.outcome, "gain", f"needs both {full} and {baseline} predictors")
        return
    results.gain[cohort.outcome] = paired_auc_difference(
        cohort.test[cohort.outcome].to_numpy(),
        scores[full],
        scores[baseline],
        resamples=parameters.bootstrap,
        seed=parameters.seed,
    )
