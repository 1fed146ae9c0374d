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
from training_job.dataset import PATIENT_ID, Dataset
from training_job.evaluate import CONFIDENCE, METRICS, THRESHOLD
from training_job.job import Results
from training_job.parameters import TrainingParameters

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
    "Classification metrics use a fixed threshold of 0.5 on the predicted probability, not a threshold "
    "tuned for the outcome's prevalence.",
    "Patients without a modality stay in every set that includes it, with missing values, so a set's "
    "score mixes patients with and without that modality.",
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
    """metrics.json: `metrics[outcome][set][metric]` and `control[outcome][metric]` = {value, ci_low,
    ci_high}; `gain[outcome]` = {full, baseline, metric, value, ci_low, ci_high}; `counts[outcome]`;
    `models[outcome][set]`; `skipped`; provenance (dataset, parameters, versions)."""
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
            "threshold": THRESHOLD,
            "ci": {
                "method": "percentile bootstrap over test rows; resamples with one class dropped",
                "level": CONFIDENCE,
                "resamples": parameters.bootstrap,
                "seed": parameters.seed,
            },
            "metrics": list(METRICS),
        },
        "reference_sets": {"full": results.references.full, "baseline": results.references.baseline},
        "counts": results.counts,
        "metrics": {
            outcome: {s: {m: e.as_dict() for m, e in estimates.items()} for s, estimates in by_set.items()}
            for outcome, by_set in results.metrics.items()
        },
        "control": {
            outcome: {m: e.as_dict() for m, e in estimates.items()}
            for outcome, estimates in results.control.items()
        },
        "gain": {
            outcome: {
                "full": results.references.full,
                "baseline": results.references.baseline,
                "metric": "roc_auc",
                **estimate.as_dict(),
            }
            for outcome, estimate in results.gain.items()
        },
        "models": results.models,
        "skipped": results.skipped,
    }


def model_card(document: dict[str, Any], dataset: Dataset) -> dict[str, Any]:
    manifest = dataset.manifest
    headline: dict[str, Any] = {}
    full = document["reference_sets"]["full"]
    for outcome, by_set in document["metrics"].items():
        headline[outcome] = {
            "set": full,
            "roc_auc": by_set.get(full, {}).get("roc_auc"),
            "balanced_accuracy": by_set.get(full, {}).get("balanced_accuracy"),
            "gain_over_clinical": document["gain"].get(outcome),
            "label_shuffle_control_roc_auc": document["control"].get(outcome, {}).get("roc_auc"),
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
        "loading": "autogluon.tabular.TabularPredictor.load(<model dir>/<outcome>/<set>); "
        "predict_proba(...)[1] is the probability of the outcome",
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
