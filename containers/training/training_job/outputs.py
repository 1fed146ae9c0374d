"""The job's files: metrics.json, leaderboard.csv, feature_importance.csv, predictions.parquet (output data)
and model_card.json (beside the predictors). The report is report.py's."""

from __future__ import annotations

import json
import platform
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import pandas as pd

from training_job import __version__
from training_job.assess import AGE_BANDS, MIN_CASES, SMALL_SAMPLE_POSITIVES
from training_job.curves import RELIABILITY_BINS
from training_job.dataset import AGE_COLUMN, AGE_SEX_SET, PATIENT_ID, SEX_COLUMN, Dataset
from training_job.evaluate import CONFIDENCE, METRICS
from training_job.job import Results
from training_job.parameters import TrainingParameters
from training_job.thresholds import CRITERION, SOURCE

METRICS_FILE = "metrics.json"
LEADERBOARD_FILE = "leaderboard.csv"
IMPORTANCE_FILE = "feature_importance.csv"
PREDICTIONS_FILE = "predictions.parquet"
MODEL_CARD_FILE = "model_card.json"
VERSIONED = ("autogluon.tabular", "lightgbm", "scikit-learn", "pandas", "numpy", "scipy", "pyarrow", "plotly")

PREDICTION_COLUMNS = [PATIENT_ID, "outcome", "set", "y_true", "y_score"]
IMPORTANCE_COLUMNS = ["outcome", "set", "feature", "modality", "importance", "stddev", "p_value", "n"]

INTENDED_USE = "research, synthetic-data demo"
OUT_OF_SCOPE = "any clinical decision about a patient; any use on real patient data without a new validation"
LIMITATIONS = [
    "Trained and evaluated on a synthetic cohort: the figures show that the pipeline works, not that the "
    "models would predict these outcomes in real patients.",
    "One stratified train/test split per outcome, no external validation set; the 95% intervals are "
    "percentile bootstraps over the test rows and do not include the variability of training.",
    "Each predictor's decision threshold maximises F1 on its out-of-fold predictions of the training split; "
    "a different use (screening, triage) needs a threshold chosen for that use's costs.",
    "Patients without a modality stay in every set that includes it, with missing values, so a set's "
    "test-split score mixes patients with and without that modality; the available-case results score "
    "each set on the patients who have its modalities, and are withheld where they hold too few positives.",
    "The label-shuffle control's permutations are fitted without bagging (the evaluated predictors are "
    "bagged), so its null distribution is that of a slightly noisier learner.",
    "Feature importance is permutation importance on a test subsample with few shuffles: a ranking, "
    "not a causal effect.",
]


def versions() -> dict[str, str]:
    found = {"training_job": __version__, "python": platform.python_version()}
    for name in VERSIONED:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def metrics_document(
    results: Results, dataset: Dataset, parameters: TrainingParameters, seconds: float
) -> dict[str, Any]:
    """metrics.json. `metrics[outcome][set][metric]` and `control[outcome][metric]` = {value, ci_low,
    ci_high} (the age + sex baseline is the set `age_sex`; the control's value is the mean over its
    permutations, its interval their central 95 %); `gain[outcome]`; `counts[outcome]`; `models`; `skipped`;
    and per outcome `thresholds`, `confusion`, `curves`, `age_sex_baseline`, `available_case`,
    `permutation`, `subgroups`, plus the flat list `warnings`. Provenance: dataset, parameters, versions."""
    references = results.references
    assessments = results.assessments
    return {
        "job_version": __version__,
        "dataset_id": dataset.dataset_id,
        "run_id": dataset.manifest.get("run_id"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "wall_seconds": round(seconds, 1),
        "parameters": parameters.as_dict(),
        "versions": versions(),
        "evaluation": {
            "split": "stratified train/test per outcome, the same for every modality set (paired)",
            "threshold": {
                "criterion": CRITERION,
                "source": SOURCE,
                "folds": parameters.oof_folds,
                "rule": "predicted positive when the probability is >= the predictor's threshold "
                "(thresholds[outcome][set]), chosen on the training split only",
            },
            "ci": {
                "method": "percentile bootstrap over test rows; resamples with one class dropped",
                "level": CONFIDENCE,
                "resamples": parameters.bootstrap,
                "seed": parameters.seed,
            },
            "metrics": list(METRICS),
            "min_cases_per_class": MIN_CASES,
            "small_sample_positives": SMALL_SAMPLE_POSITIVES,
            "age_bands": [band for band, _, _ in AGE_BANDS],
            "reliability_bins": f"{RELIABILITY_BINS} bins of equal count by predicted probability",
        },
        "reference_sets": {"full": references.full, "baseline": references.baseline, "age_sex": AGE_SEX_SET},
        "counts": results.counts,
        "metrics": {
            outcome: {
                name: {m: e.as_dict() for m, e in scope.metrics.items()}
                for name, scope in a.test.items()
                if scope.metrics
            }
            for outcome, a in assessments.items()
        },
        "thresholds": {
            outcome: {name: t.as_dict() for name, t in by_set.items()}
            for outcome, by_set in results.thresholds.items()
        },
        "confusion": {
            outcome: {
                name: {**(scope.confusion or {}), "no_positive_predicted": scope.no_positive_predicted}
                for name, scope in a.test.items()
            }
            for outcome, a in assessments.items()
        },
        "curves": {outcome: a.curves for outcome, a in assessments.items()},
        "age_sex_baseline": {
            outcome: {
                "set": AGE_SEX_SET,
                "features": [AGE_COLUMN, SEX_COLUMN],
                "roc_auc_difference": {name: e.as_dict() for name, e in a.versus_age_sex.items()},
            }
            for outcome, a in assessments.items()
            if a.versus_age_sex
        },
        "available_case": {outcome: a.available_case for outcome, a in assessments.items()},
        "control": {
            outcome: {m: e.as_dict() for m, e in estimates.items()}
            for outcome, estimates in results.control.items()
        },
        "permutation": results.permutation,
        "gain": {
            outcome: {
                "full": references.full,
                "baseline": references.baseline,
                "metric": "roc_auc",
                **a.gain.as_dict(),
            }
            for outcome, a in assessments.items()
            if a.gain is not None
        },
        "subgroups": {outcome: a.subgroups for outcome, a in assessments.items() if a.subgroups},
        "warnings": [w for a in assessments.values() for w in a.warnings],
        "models": results.models,
        "skipped": results.skipped,
    }


def model_card(
    document: dict[str, Any], dataset: Dataset, training_patients: dict[str, list[str]] | None = None
) -> dict[str, Any]:
    """The model card; `training_patients` (outcome -> ids of its training split) lets the scoring job mark
    in-sample scores."""
    manifest = dataset.manifest
    headline: dict[str, Any] = {}
    full = document["reference_sets"]["full"]
    for outcome, by_set in document["metrics"].items():
        metrics = by_set.get(full, {})
        headline[outcome] = {
            "set": full,
            **{m: metrics.get(m) for m in ("roc_auc", "auprc", "brier", "f1", "precision", "recall")},
            "balanced_accuracy": metrics.get("balanced_accuracy"),
            "threshold": document["thresholds"].get(outcome, {}).get(full, {}).get("threshold"),
            "age_sex_roc_auc": by_set.get(AGE_SEX_SET, {}).get("roc_auc"),
            "gain_over_clinical": document["gain"].get(outcome),
            "label_shuffle_control_roc_auc": document["control"].get(outcome, {}).get("roc_auc"),
            "label_shuffle_p_value": document["permutation"].get(outcome, {}).get("p_value"),
            **document["counts"][outcome],
        }
    return {
        "model": "Outcome classifiers: one AutoGluon TabularPredictor per outcome x modality set",
        "job_version": document["job_version"],
        "created_at": document["finished_at"],
        "dataset": {
            "dataset_id": dataset.dataset_id,
            "run_id": manifest.get("run_id"),
            "created_at": manifest.get("created_at"),
            "rows": manifest.get("rows", len(dataset.frame)),
            "outcomes": manifest.get("outcomes"),
            "patients_per_modality": manifest.get("patients_per_modality"),
            "feature_columns": {m: len(c) for m, c in dataset.columns.items()},
            "prevalence": manifest.get("prevalence"),
        },
        "predictors": {
            outcome: {s: info["path"] for s, info in by_set.items()}
            for outcome, by_set in document["models"].items()
        },
        "training_patients": training_patients or {},
        "thresholds": {
            outcome: {
                name: {"threshold": t["threshold"], "criterion": t["criterion"], "source": t["source"]}
                for name, t in by_set.items()
            }
            for outcome, by_set in document["thresholds"].items()
        },
        "loading": "autogluon.tabular.TabularPredictor.load(<model dir>/<outcome>/<set>); "
        "predict_proba(...)[1] is the probability of the outcome; the decision is positive when it is "
        ">= thresholds[<outcome>][<set>].threshold",
        "parameters": document["parameters"],
        "versions": document["versions"],
        "evaluation": document["evaluation"],
        "headline": headline,
        "intended_use": INTENDED_USE,
        "out_of_scope": OUT_OF_SCOPE,
        "limitations": LIMITATIONS,
    }


def predictions_frame(results: Results) -> pd.DataFrame:
    if not results.predictions:
        return pd.DataFrame(columns=PREDICTION_COLUMNS)
    return pd.concat(results.predictions, ignore_index=True)[PREDICTION_COLUMNS]


def importance_frame(results: Results) -> pd.DataFrame:
    if not results.importance:
        return pd.DataFrame(columns=IMPORTANCE_COLUMNS)
    return pd.concat(results.importance, ignore_index=True)[IMPORTANCE_COLUMNS]


def leaderboard_frame(results: Results) -> pd.DataFrame:
    if not results.leaderboards:
        return pd.DataFrame(columns=["outcome", "set", "model"])
    return pd.concat(results.leaderboards, ignore_index=True)


def write_json(path: Path, document: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n")


def write_tables(
    output_dir: Path, predictions: pd.DataFrame, importance: pd.DataFrame, leaderboard: pd.DataFrame
) -> None:
    output_dir.mkdir(parents=True, exist_ok=True)
    predictions.to_parquet(output_dir / PREDICTIONS_FILE, index=False)
    importance.to_csv(output_dir / IMPORTANCE_FILE, index=False)
    leaderboard.to_csv(output_dir / LEADERBOARD_FILE, index=False)
