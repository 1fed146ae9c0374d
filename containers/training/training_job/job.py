"""The job's steps. Per outcome: one split; per modality set, and for the age + sex baseline, one bagged
predictor whose out-of-fold predictions choose its decision threshold and which is scored on the test split;
the label-shuffle permutations; feature importance of the full set; then the evaluation (assess.py).

Every predictor of every outcome is independent, so all fits are submitted at once to a pool of worker
processes (fit.py) and collected outcome by outcome."""

from __future__ import annotations

import logging
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from training_job import CONTROL
from training_job.assess import OutcomeAssessment, References, Scored, assess_outcome, modality_presence
from training_job.dataset import (
    AGE_SEX_SET,
    PATIENT_ID,
    Dataset,
    OutcomeCohort,
    ReferenceSets,
    age_sex_columns,
    outcome_cohort,
    trainable_columns,
)
from training_job.errors import JobError, NotTrainable
from training_job.evaluate import Estimate, classification_metrics, roc_auc
from training_job.fit import FitResult, FitTask, default_workers, fit_pool, run_fit
from training_job.parameters import TrainingParameters
from training_job.permutation import control_estimates, null_distribution, permutation_p_value
from training_job.thresholds import Threshold, max_f1_threshold

log = logging.getLogger("training_job")

PERMUTATION_SETTING = (
    "the full set's columns, learners and hyperparameters, fitted without bagging (AutoGluon holdout); "
    "scored at the full set's threshold"
)


@dataclass
class Results:
    references: ReferenceSets
    assessments: dict[str, OutcomeAssessment] = field(default_factory=dict)
    thresholds: dict[str, dict[str, Threshold]] = field(default_factory=dict)
    control: dict[str, dict[str, Estimate]] = field(default_factory=dict)
    permutation: dict[str, dict[str, Any]] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    training_patients: dict[str, list[str]] = field(
        default_factory=dict
    )  # outcome -> the training split's ids
    models: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    skipped: list[dict[str, str | None]] = field(default_factory=list)
    predictions: list[pd.DataFrame] = field(default_factory=list)
    leaderboards: list[pd.DataFrame] = field(default_factory=list)
    importance: list[pd.DataFrame] = field(default_factory=list)

    def skip(self, outcome: str, modality_set: str | None, reason: str) -> None:
        log.warning("skipped %s %s: %s", outcome, modality_set or "(all sets)", reason)
        self.skipped.append({"outcome": outcome, "set": modality_set, "reason": reason})


@dataclass
class _Submitted:
    """One outcome's fits, running in the pool."""

    cohort: OutcomeCohort
    folds: int  # bagging folds of its predictors (bag_folds)
    predictors: dict[str, Future[FitResult]] = field(default_factory=dict)
    permutations: list[Future[FitResult]] = field(default_factory=list)


def train_and_evaluate(
    dataset: Dataset,
    parameters: TrainingParameters,
    references: ReferenceSets,
    model_dir: Path,
    workers: int | None = None,
) -> Results:
    """Every predictor under model_dir/<outcome>/<set> (the age + sex baseline under .../age_sex, the first
    permutation of the control under .../control); JobError when no outcome could be trained at all."""
    results = Results(references)
    workers = workers or default_workers()
    num_cpus = max(1, default_workers() // workers)
    with fit_pool(workers) as pool:
        try:
            submitted = [
                s
                for outcome in parameters.outcomes
                if (s := _submit(pool, results, dataset, outcome, parameters, model_dir, num_cpus))
            ]
            for outcome in submitted:
                _collect(results, dataset, outcome, parameters)
        except BaseException:
            pool.shutdown(cancel_futures=True)  # a failed fit fails the job: drop the fits still queued
            raise
    if not results.assessments:
        reasons = "; ".join(f"{s['outcome']}: {s['reason']}" for s in results.skipped)
        raise JobError(f"no outcome could be trained ({reasons})")
    return results


def _submit(
    pool: Executor,
    results: Results,
    dataset: Dataset,
    outcome: str,
    parameters: TrainingParameters,
    model_dir: Path,
    num_cpus: int,
) -> _Submitted | None:
    try:
        cohort = outcome_cohort(dataset, outcome, parameters.test_size, parameters.seed)
    except NotTrainable as reason:
        results.skip(outcome, None, str(reason))
        return None
    results.counts[outcome] = {
        "n_eligible": cohort.n_eligible,
        "n_train": len(cohort.train),
        "n_test": len(cohort.test),
        "positives_train": cohort.positives(cohort.train),
        "positives_test": cohort.positives(cohort.test),
    }
    results.training_patients[outcome] = cohort.train[PATIENT_ID].astype(str).tolist()
    submitted = _Submitted(cohort, bag_folds(parameters.oof_folds, results.counts[outcome]))
    full = results.references.full

    def task(columns: list[str], path: Path | None, **options: Any) -> FitTask:
        return FitTask(
            outcome, columns, cohort.train, cohort.test, parameters, path, num_cpus=num_cpus, **options
        )

    for name in (*parameters.modality_sets, AGE_SEX_SET):
        try:
            columns = (
                age_sex_columns(dataset, cohort)
                if name == AGE_SEX_SET
                else trainable_columns(dataset, cohort, name)
            )
        except NotTrainable as reason:
            results.skip(outcome, name, str(reason))
            continue
        importance = parameters.importance_subsample if name == full else 0
        submitted.predictors[name] = pool.submit(
            run_fit,
            task(
                columns,
                model_dir / outcome / name,
                bag_folds=submitted.folds,
                importance_subsample=importance,
            ),
        )
    if parameters.label_shuffle_control and full in submitted.predictors:
        columns = trainable_columns(dataset, cohort, full)
        submitted.permutations = [
            pool.submit(
                run_fit,
                task(
                    columns,
                    model_dir / outcome / CONTROL if i == 0 else None,
                    bag_folds=0,
                    permutation_seed=parameters.seed + i,
                    with_leaderboard=i == 0,
                ),
            )
            for i in range(parameters.label_shuffle_permutations)
        ]
    return submitted if submitted.predictors else None


def bag_folds(requested: int, counts: dict[str, int]) -> int:
    """Stratified bagging folds: at most the training split's minority class count, so every fold's held-out
    part holds both classes (AutoGluon scores each fold by ROC AUC), and at least 2."""
    minority = min(counts["positives_train"], counts["n_train"] - counts["positives_train"])
    return max(2, min(requested, minority))


def _collect(
    results: Results, dataset: Dataset, submitted: _Submitted, parameters: TrainingParameters
) -> None:
    """Wait for the outcome's fits; thresholds, records, the permutation summary and the evaluation."""
    cohort = submitted.cohort
    outcome = cohort.outcome
    scored: dict[str, Scored] = {}
    for name, future in submitted.predictors.items():
        try:
            fitted = future.result()
        except Exception as error:  # one predictor AutoGluon could not fit never fails the others
            results.skip(outcome, name, f"the fit failed: {type(error).__name__}: {str(error)[:200]}")
            continue
        assert fitted.oof_scores is not None  # bagged
        threshold = max_f1_threshold(cohort.train[outcome].to_numpy(), fitted.oof_scores, submitted.folds)
        results.thresholds.setdefault(outcome, {})[name] = threshold
        _record(results, cohort, name, fitted)
        scored[name] = Scored(fitted.test_scores, threshold.value)
        log.info(
            "%s / %s: fit %.1f s (%d-fold bagged), threshold %.3f (out-of-fold F1 %.3f), test AUC %.3f",
            outcome,
            name,
            fitted.seconds,
            submitted.folds,
            threshold.value,
            threshold.oof_f1,
            roc_auc(cohort.test[outcome].to_numpy(), fitted.test_scores),
        )
    full = results.references.full
    if full not in scored:
        results.skip(outcome, None, f"the full set ({full}) could not be fitted")
        return
    if submitted.permutations:
        try:
            permuted = [f.result() for f in submitted.permutations]
        except Exception as error:  # the control is lost, the outcome's models stand
            results.skip(
                outcome, CONTROL, f"a permutation fit failed: {type(error).__name__}: {str(error)[:200]}"
            )
        else:
            _permutations(results, cohort, permuted, scored[full])
    results.assessments[outcome] = assess_outcome(
        outcome,
        cohort.test,
        scored,
        modality_presence(cohort.test, dataset.columns),
        References(full, results.references.baseline, AGE_SEX_SET if AGE_SEX_SET in scored else None),
        resamples=parameters.bootstrap,
        seed=parameters.seed,
    )
    baseline = results.references.baseline
    if baseline and baseline != full and not {full, baseline} <= set(scored):
        results.skip(outcome, "gain", f"needs both {full} and {baseline} predictors")


def _record(results: Results, cohort: OutcomeCohort, name: str, fitted: FitResult) -> None:
    """The predictor's model entry, test predictions, leaderboard and feature importance."""
    outcome = cohort.outcome
    results.models.setdefault(outcome, {})[name] = {
        "path": f"{outcome}/{name}",
        "best_model": fitted.best_model,
        "n_features": fitted.n_features,
        "fit_seconds": round(fitted.seconds, 2),
    }
    results.predictions.append(
        pd.DataFrame(
            {
                PATIENT_ID: cohort.test[PATIENT_ID].to_numpy(),
                "outcome": outcome,
                "set": name,
                "y_true": cohort.test[outcome].to_numpy().astype("int8"),
                "y_score": fitted.test_scores,
            }
        )
    )
    if fitted.leaderboard is not None:
        results.leaderboards.append(
            fitted.leaderboard.assign(outcome=outcome, set=name)[
                ["outcome", "set", *fitted.leaderboard.columns]
            ]
        )
    if fitted.importance is not None:
        table = fitted.importance.copy()
        table.insert(0, "outcome", outcome)
        table.insert(1, "set", name)
        table.insert(3, "modality", table["feature"].str.split("__").str[0])
        results.importance.append(table)


def _permutations(
    results: Results, cohort: OutcomeCohort, permutations: list[FitResult], full: Scored
) -> None:
    """The control (see permutation.py): permutation 0 recorded as the `control` predictor; every
    permutation's test metrics at the full set's threshold summarised, and the real AUC's p-value."""
    outcome = cohort.outcome
    y_test = cohort.test[outcome].to_numpy()
    _record(results, cohort, CONTROL, permutations[0])
    per_permutation = [
        {
            m: e.value
            for m, e in classification_metrics(
                y_test, p.test_scores, threshold=full.threshold, resamples=0, seed=0
            ).items()
        }
        for p in permutations
    ]
    results.control[outcome] = control_estimates(per_permutation)
    real = roc_auc(y_test, full.y_score)
    aucs = [p["roc_auc"] for p in per_permutation]
    results.permutation[outcome] = {
        "set": results.references.full,
        "permutations": len(aucs),
        "setting": PERMUTATION_SETTING,
        "real_roc_auc": round(real, 6),
        "p_value": round(permutation_p_value(real, aucs), 6),
        "roc_auc": null_distribution(aucs),
        "fit_seconds": round(sum(p.seconds for p in permutations), 1),
    }
    results.models[outcome][CONTROL]["permutations"] = len(aucs)
    log.info(
        "%s / control: %d permutations, AUC mean %.3f (sd %.3f), real %.3f, p = %.3f",
        outcome,
        len(aucs),
        float(np.mean(aucs)),
        results.permutation[outcome]["roc_auc"]["sd"],
        real,
        results.permutation[outcome]["p_value"],
    )
