"""The dataset snapshot (the `dataset` channel) and each outcome's cohort with its one train/test split."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from training_job import MODALITIES
from training_job.errors import JobError, NotTrainable
from training_job.parameters import TrainingParameters, modalities_of

DATASET_FILE = "dataset.parquet"
MANIFEST_FILE = "manifest.json"
PATIENTS_FILE = "patients.json"
PATIENT_ID = "patient_id"
# Each class needs a case in the test split and at least two in the training split (AutoGluon holds some of
# the training rows out for its own validation).
MIN_CASES_PER_CLASS = 5
BASELINE_SET = "clinical"
# The age + sex baseline: a predictor on these two clinical columns only, fitted like every set.
AGE_SEX_SET = "age_sex"
AGE_COLUMN = "clinical__age_at_index_years"
SEX_COLUMN = "clinical__sex"

log = logging.getLogger("training_job")


@dataclass(frozen=True)
class Dataset:
    frame: pd.DataFrame
    """One row per patient: patient_id, the label columns, the feature columns."""
    manifest: dict[str, Any]
    columns: dict[str, list[str]]
    """Modality -> its feature columns (`<modality>__<name>`), from the manifest."""
    patients: list[dict[str, Any]] | None
    """patients.json for the report's patient view; None when absent or unreadable."""
    patients_note: str | None
    """Why `patients` is None."""

    @property
    def dataset_id(self) -> str:
        return str(self.manifest.get("dataset_id", ""))

    def columns_of(self, modality_set: str) -> list[str]:
        return [c for m in modalities_of(modality_set) for c in self.columns.get(m, [])]


@dataclass(frozen=True)
class OutcomeCohort:
    """The eligible patients of one outcome, split once: every modality set of the outcome trains on `train`
    and is scored on `test`, so the ablation compares models on the same patients."""

    outcome: str
    train: pd.DataFrame
    test: pd.DataFrame
    """patient_id, the label (as 0/1 in the column named after the outcome) and every feature column."""

    @property
    def n_eligible(self) -> int:
        return len(self.train) + len(self.test)

    def positives(self, part: pd.DataFrame) -> int:
        return int(part[self.outcome].sum())


@dataclass(frozen=True)
class ReferenceSets:
    full: str
    """The requested set with the most modalities the dataset has: control, importance, gain."""
    baseline: str | None
    """`clinical` when requested and present: the gain is AUC(full) - AUC(baseline)."""


def reference_sets(dataset: Dataset, parameters: TrainingParameters) -> ReferenceSets:
    """JobError when no requested modality set has columns in the dataset."""
    present = [s for s in parameters.modality_sets if all(dataset.columns.get(m) for m in modalities_of(s))]
    if not present:
        raise JobError(
            f"none of the modality sets {', '.join(parameters.modality_sets)} has feature columns in the "
            f"dataset (columns per modality: { {m: len(c) for m, c in dataset.columns.items()} })"
        )
    full = max(present, key=lambda s: len(modalities_of(s)))
    return ReferenceSets(full, BASELINE_SET if BASELINE_SET in present else None)


def load_dataset(folder: Path, outcomes: tuple[str, ...]) -> Dataset:
    """Read and check the channel; JobError naming the file and the reason when it breaks the contract."""
    if not folder.is_dir():
        raise JobError(f"dataset channel {folder} does not exist")
    manifest = _read_manifest(folder / MANIFEST_FILE)
    parquet = folder / DATASET_FILE
    if not parquet.exists():
        raise JobError(f"{parquet} is missing")
    try:
        frame = pd.read_parquet(parquet)
    except Exception as error:  # pyarrow raises several types for a corrupt file
        raise JobError(f"{parquet}: not readable as Parquet ({error})") from error
    columns = _modality_columns(manifest, parquet)
    required = [PATIENT_ID, *outcomes, *(c for cols in columns.values() for c in cols)]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise JobError(f"{parquet}: missing column(s) {', '.join(missing[:10])}")
    if frame[PATIENT_ID].isna().any() or frame[PATIENT_ID].duplicated().any():
        raise JobError(f"{parquet}: patient_id must be present and unique on every row")
    for outcome in outcomes:
        values = set(frame[outcome].dropna().unique().tolist())
        if not values <= {True, False}:
            raise JobError(
                f"{parquet}: label {outcome} must be boolean or null, found {sorted(map(str, values))}"
            )
    patients, note = _read_patients(folder / PATIENTS_FILE)
    return Dataset(frame=frame, manifest=manifest, columns=columns, patients=patients, patients_note=note)


def outcome_cohort(dataset: Dataset, outcome: str, test_size: float, seed: int) -> OutcomeCohort:
    """The outcome's eligible patients (label not null), split with stratification on the label;
    NotTrainable when a class has too few patients to split and train."""
    features = [c for cols in dataset.columns.values() for c in cols]
    frame = dataset.frame.loc[dataset.frame[outcome].notna(), [PATIENT_ID, *features]].copy()
    frame[outcome] = dataset.frame.loc[frame.index, outcome].astype(bool).astype(np.int8)
    frame = frame.reset_index(drop=True)
    positives = int(frame[outcome].sum())
    negatives = len(frame) - positives
    if min(positives, negatives) < MIN_CASES_PER_CLASS:
        raise NotTrainable(
            f"{len(frame)} eligible patients, {positives} positive and {negatives} negative: "
            f"need at least {MIN_CASES_PER_CLASS} of each to split and train"
        )
    try:
        train, test = train_test_split(frame, test_size=test_size, random_state=seed, stratify=frame[outcome])
    except ValueError as error:  # a test split too small to hold both classes
        raise NotTrainable(
            f"cannot split {len(frame)} patients with test_size {test_size}: {error}"
        ) from error
    return OutcomeCohort(outcome, train.reset_index(drop=True), test.reset_index(drop=True))


def trainable_columns(dataset: Dataset, cohort: OutcomeCohort, modality_set: str) -> list[str]:
    """The set's columns; NotTrainable when the dataset has none or no training patient has a value."""
    columns = dataset.columns_of(modality_set)
    absent = [m for m in modalities_of(modality_set) if not dataset.columns.get(m)]
    if absent:
        raise NotTrainable(f"the dataset has no {' / '.join(absent)} feature columns")
    if not cohort.train[columns].notna().any().any():
        raise NotTrainable("no training patient has a value in any of the set's columns")
    return columns


def age_sex_columns(dataset: Dataset, cohort: OutcomeCohort) -> list[str]:
    """The baseline's two columns; NotTrainable when the clinical modality lacks one or no training patient
    has a value."""
    columns = [AGE_COLUMN, SEX_COLUMN]
    absent = [c for c in columns if c not in dataset.columns.get("clinical", [])]
    if absent:
        raise NotTrainable(f"the dataset has no {' / '.join(absent)} column")
    if not cohort.train[columns].notna().any().any():
        raise NotTrainable("no training patient has an age or a sex")
    return columns


def _read_manifest(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise JobError(f"{path} is missing")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise JobError(f"{path}: not readable as JSON ({error})") from error
    if not isinstance(manifest, dict) or not isinstance(manifest.get("modalities"), dict):
        raise JobError(f"{path}: expected an object with `modalities` ({{modality: [columns]}})")
    return manifest


def _modality_columns(manifest: dict[str, Any], parquet: Path) -> dict[str, list[str]]:
    columns: dict[str, list[str]] = {}
    for modality, names in manifest["modalities"].items():
        if modality not in MODALITIES:
            raise JobError(f"manifest.json: unknown modality {modality!r} (known: {', '.join(MODALITIES)})")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise JobError(f"manifest.json: modalities.{modality} must be a list of column names")
        wrong = [n for n in names if not n.startswith(f"{modality}__")]
        if wrong:
            raise JobError(
                f"manifest.json: modalities.{modality} lists {wrong[0]!r}, not a {modality}__ column"
            )
        columns[modality] = list(names)
    return columns


def _read_patients(path: Path) -> tuple[list[dict[str, Any]] | None, str | None]:
    # Only the report's patient view uses it: a broken file is reported there, it does not stop training.
    if not path.exists():
        return None, f"{PATIENTS_FILE} was not part of the dataset snapshot"
    try:
        patients = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        log.warning("%s unreadable, the report has no patient view: %s", path, error)
        return None, f"{PATIENTS_FILE} could not be read ({error})"
    if not isinstance(patients, list) or not all(isinstance(p, dict) and PATIENT_ID in p for p in patients):
        log.warning("%s is not a list of patients, the report has no patient view", path)
        return None, f"{PATIENTS_FILE} is not a list of objects with a patient_id"
    return patients, None
