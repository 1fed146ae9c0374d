"""The scoring job: a trained model (model.tar.gz) and a dataset snapshot in, one risk score per eligible
patient and outcome out (`python -m training_job score`, a SageMaker Processing job with the training image).

For each outcome of the model card, the full modality set's predictor (the model card's headline set) scores
every patient of the snapshot who is eligible for the outcome (label not null: not already diagnosed at the
index date). A patient without a modality has nulls in its columns, as in training (the predictors were
trained with missing modalities). The decision is `probability >= threshold`, the threshold the training job
chose on out-of-fold predictions (model card `thresholds`); a model card without one uses 0.5 and says so in
`threshold_criterion`.

`in_training_split` marks patients the predictor was fitted on (model card `training_patients`; null when
the card does not list them): their scores are in-sample and optimistic, and a reader should know that.

Output: `predictions.parquet` (PREDICTION_COLUMNS) and `scoring.json` (counts per outcome, the model and the
dataset) in the output folder.
"""

from __future__ import annotations

import json
import logging
import tarfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from training_job import CONTROL
from training_job.dataset import DATASET_FILE, MANIFEST_FILE, PATIENT_ID
from training_job.errors import JobError

log = logging.getLogger("training_job")

MODEL_CARD_FILE = "model_card.json"
MODEL_ARCHIVE = "model.tar.gz"
PREDICTIONS_FILE = "predictions.parquet"
SUMMARY_FILE = "scoring.json"
DEFAULT_THRESHOLD = 0.5
PREDICTION_COLUMNS = [
    PATIENT_ID,
    "outcome",
    "probability",
    "decision",
    "threshold",
    "threshold_criterion",
    "modality_set",
    "modalities",
    "in_training_split",
    "model_id",
    "dataset_id",
    "scored_at",
]


def score(model_dir: Path, dataset_dir: Path, output_dir: Path, model_id: str) -> dict[str, Any]:
    """Score the snapshot with the model; writes the outputs and returns the summary. JobError when the
    model or the dataset cannot be read."""
    model_root = unpacked_model(model_dir)
    card = _read_json(model_root / MODEL_CARD_FILE, "the model card")
    frame, manifest = _read_dataset(dataset_dir)
    scored_at = datetime.now(UTC)
    parts: list[pd.DataFrame] = []
    counts: dict[str, dict[str, Any]] = {}
    for outcome, modality_set in scored_sets(card).items():
        if outcome not in frame.columns:
            counts[outcome] = {"skipped": f"the dataset has no {outcome} column"}
            continue
        eligible = frame[frame[outcome].notna()]
        part = _score_outcome(model_root, card, outcome, modality_set, eligible)
        part["model_id"] = model_id
        part["dataset_id"] = str(manifest.get("dataset_id", ""))
        part["scored_at"] = scored_at
        parts.append(part)
        counts[outcome] = {
            "set": modality_set,
            "patients": len(part),
            "decided_positive": int(part["decision"].sum()),
            "threshold": float(part["threshold"].iloc[0]) if len(part) else None,
        }
        log.info("%s: %d eligible patients scored with %s", outcome, len(part), modality_set)
    if not parts:
        raise JobError("the model card lists no predictor this dataset can be scored with")
    predictions = pd.concat(parts, ignore_index=True)[PREDICTION_COLUMNS]
    output_dir.mkdir(parents=True, exist_ok=True)
    predictions.to_parquet(output_dir / PREDICTIONS_FILE, index=False)
    summary = {
        "model_id": model_id,
        "model_dataset_id": (card.get("dataset") or {}).get("dataset_id"),
        "dataset_id": manifest.get("dataset_id"),
        "scored_at": scored_at.isoformat(),
        "rows": len(predictions),
        "outcomes": counts,
    }
    (output_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
    return summary


def unpacked_model(model_dir: Path) -> Path:
    """The folder holding model_card.json: `model_dir` itself, or model.tar.gz inside it, unpacked there."""
    if (model_dir / MODEL_CARD_FILE).is_file():
        return model_dir
    archive = model_dir / MODEL_ARCHIVE
    if not archive.is_file():
        raise JobError(f"no {MODEL_CARD_FILE} or {MODEL_ARCHIVE} in {model_dir}")
    target = model_dir / "unpacked"
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            tar.extractall(target, filter="data")  # refuses absolute paths and links out of the folder
    except (tarfile.TarError, OSError) as error:
        raise JobError(f"cannot unpack {archive.name}: {error}") from error
    if not (target / MODEL_CARD_FILE).is_file():
        raise JobError(f"{archive.name} holds no {MODEL_CARD_FILE}")
    return target


def scored_sets(card: dict[str, Any]) -> dict[str, str]:
    """Outcome -> the modality set whose predictor scores it: the card's headline set (the full set)."""
    chosen = {}
    for outcome, by_set in (card.get("predictors") or {}).items():
        headline = (card.get("headline") or {}).get(outcome) or {}
        candidates = [s for s in by_set if s != CONTROL]
        modality_set = headline.get("set") if headline.get("set") in by_set else None
        if modality_set is None and candidates:
            modality_set = max(candidates, key=lambda s: len(s.split("+")))
        if modality_set is not None:
            chosen[outcome] = modality_set
    return chosen


def threshold_of(card: dict[str, Any], outcome: str, modality_set: str) -> tuple[float, str]:
    entry = ((card.get("thresholds") or {}).get(outcome) or {}).get(modality_set) or {}
    if isinstance(entry.get("threshold"), int | float):
        return float(entry["threshold"]), str(entry.get("criterion") or "chosen by the training job")
    return DEFAULT_THRESHOLD, "0.5 (the model card has no threshold for this predictor)"


def _score_outcome(
    model_root: Path, card: dict[str, Any], outcome: str, modality_set: str, eligible: pd.DataFrame
) -> pd.DataFrame:
    from autogluon.tabular import TabularPredictor  # slow to import: only once the inputs are good

    path = model_root / card["predictors"][outcome][modality_set]
    try:
        predictor = TabularPredictor.load(str(path), require_py_version_match=False)
    except Exception as error:  # AutoGluon raises several types for a missing or incompatible predictor
        raise JobError(f"cannot load the {outcome} predictor at {path.name}: {error}") from error
    features = list(predictor.features())
    rows = eligible.reindex(columns=[PATIENT_ID, *features])  # a column the snapshot lacks is all null
    probability = (
        np.asarray(predictor.predict_proba(rows[features], as_multiclass=False), dtype=np.float64)
        if len(rows)
        else np.array([], dtype=np.float64)
    )
    threshold, criterion = threshold_of(card, outcome, modality_set)
    listed = (card.get("training_patients") or {}).get(outcome)
    patient_ids = rows[PATIENT_ID].astype(str)
    # Unknown (null) when the card does not list the training split (cards written before it did).
    in_training = patient_ids.isin(set(listed)).to_numpy() if listed is not None else [None] * len(rows)
    return pd.DataFrame(
        {
            PATIENT_ID: patient_ids.to_numpy(),
            "outcome": outcome,
            "probability": probability,
            "decision": probability >= threshold,
            "threshold": threshold,
            "threshold_criterion": criterion,
            "modality_set": modality_set,
            "modalities": _modalities_present(eligible, features),
            "in_training_split": in_training,
        }
    )


def _modalities_present(frame: pd.DataFrame, features: list[str]) -> list[str]:
    """Per row, the modalities with at least one non-null feature ("clinical+genomic")."""
    by_modality: dict[str, list[str]] = {}
    for column in features:
        by_modality.setdefault(column.split("__", 1)[0], []).append(column)
    present = {
        m: frame.reindex(columns=cols).notna().any(axis=1).to_numpy() for m, cols in by_modality.items()
    }
    return ["+".join(m for m in present if present[m][i]) for i in range(len(frame))]


def _read_dataset(dataset_dir: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    manifest = _read_json(dataset_dir / MANIFEST_FILE, "the dataset manifest")
    try:
        frame = pd.read_parquet(dataset_dir / DATASET_FILE)
    except (OSError, ValueError) as error:
        raise JobError(f"cannot read {DATASET_FILE}: {error}") from error
    if PATIENT_ID not in frame.columns:
        raise JobError(f"{DATASET_FILE} has no {PATIENT_ID} column")
    return frame, manifest


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise JobError(f"cannot read {what} ({path.name}): {error}") from error
    if not isinstance(document, dict):
        raise JobError(f"{what} ({path.name}) is not a JSON object")
    return document
