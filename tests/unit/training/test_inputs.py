"""The job's inputs without AutoGluon: hyperparameters as SageMaker passes them (strings), the /opt/ml layout
and its overrides, the dataset contract, and each outcome's one stratified split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.unit.training.cohort import manifest_for, synthetic_frame, write_channel
from training_job import OUTCOMES
from training_job.dataset import (
    Dataset,
    load_dataset,
    outcome_cohort,
    reference_sets,
    trainable_columns,
)
from training_job.errors import JobError, NotTrainable
from training_job.parameters import (
    DEFAULT_MODALITY_SETS,
    TrainingParameters,
    parse_parameters,
    read_parameters,
)
from training_job.paths import JobPaths


def test_sagemaker_string_values_are_parsed() -> None:
    parameters = parse_parameters(
        {
            "time_limit": "12.5",
            "presets": '"good_quality"',  # the SageMaker SDK JSON-encodes strings
            "seed": "7",
            "test_size": "0.25",
            "bootstrap": "0",
            "outcomes": "stroke, alzheimers_disease",
            "modality_sets": "clinical,clinical+imaging",
            "label_shuffle_control": "false",
            "label_shuffle_permutations": "30",
            "oof_folds": "3",
            "hyperparameters": '{"GBM": {"num_boost_round": 20}}',
            "importance_subsample": "50",
            "sagemaker_region": '"us-east-1"',
        }
    )
    assert parameters == TrainingParameters(
        time_limit=12.5,
        presets="good_quality",
        seed=7,
        test_size=0.25,
        bootstrap=0,
        outcomes=("stroke", "alzheimers_disease"),
        modality_sets=("clinical", "clinical+imaging"),
        label_shuffle_control=False,
        label_shuffle_permutations=30,
        oof_folds=3,
        hyperparameters={"GBM": {"num_boost_round": 20}},
        importance_subsample=50,
        ignored=("sagemaker_region",),
    )
    assert parse_parameters({"hyperparameters": "light"}).hyperparameters == "light"


def test_an_absent_file_means_every_default(tmp_path: Path) -> None:
    parameters = read_parameters(tmp_path / "hyperparameters.json")
    assert parameters == TrainingParameters()
    assert (parameters.time_limit, parameters.presets, parameters.seed, parameters.test_size) == (
        30.0,
        "medium_quality",
        42,
        0.3,
    )
    assert parameters.outcomes == OUTCOMES
    assert parameters.modality_sets == DEFAULT_MODALITY_SETS
    assert parameters.label_shuffle_control
    assert (parameters.label_shuffle_permutations, parameters.oof_folds) == (20, 5)
    assert parameters.hyperparameters is None


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"time_limt": "5"}, "unknown hyperparameter(s) time_limt"),
        ({"time_limit": "soon"}, "time_limit='soon'"),
        ({"time_limit": "0"}, "time_limit must be > 0"),
        ({"test_size": "1.5"}, "test_size must be between 0 and 1"),
        ({"outcomes": "stroke,gout"}, "unknown outcome 'gout'"),
        ({"modality_sets": "clinical+proteomic"}, "unknown modality 'proteomic'"),
        ({"modality_sets": "clinical+genomic,genomic+clinical"}, "repeats another set"),
        ({"label_shuffle_control": "maybe"}, "expected true or false"),
        ({"label_shuffle_permutations": "0"}, "label_shuffle_permutations must be >= 1"),
        ({"oof_folds": "1"}, "oof_folds must be between 2 and 20"),
        ({"hyperparameters": "{not json"}, "hyperparameters="),
    ],
)
def test_an_invalid_value_is_refused_naming_the_key(raw: dict[str, str], message: str) -> None:
    with pytest.raises(JobError, match=__import__("re").escape(message)):
        parse_parameters(raw)


def test_paths_follow_flag_then_environment_then_the_ml_root() -> None:
    env = {"SM_MODEL_DIR": "/env/model", "SM_OUTPUT_DIR": "/env/output"}
    paths = JobPaths.resolve(ml_root=Path("/tmp/ml"), dataset=Path("/flag/dataset"), environ=env)
    assert paths == JobPaths(
        dataset=Path("/flag/dataset"),
        hyperparameters=Path("/tmp/ml/input/config/hyperparameters.json"),
        model=Path("/env/model"),
        output_data=Path("/env/output/data"),
        failure=Path("/env/output/failure"),
    )
    defaults = JobPaths.resolve(environ={})
    assert defaults.dataset == Path("/opt/ml/input/data/dataset")
    assert defaults.failure == Path("/opt/ml/output/failure")


def _dataset(patients: int = 300, seed: int = 3) -> Dataset:
    frame = synthetic_frame(patients, seed)
    manifest = manifest_for(frame)
    return Dataset(frame, manifest, dict(manifest["modalities"]), None, "absent")  # type: ignore[arg-type]


def test_the_split_drops_ineligible_patients_is_stratified_and_reproducible() -> None:
    dataset = _dataset()
    cohort = outcome_cohort(dataset, "stroke", test_size=0.3, seed=42)
    eligible = dataset.frame[dataset.frame["stroke"].notna()]
    train_ids, test_ids = set(cohort.train["patient_id"]), set(cohort.test["patient_id"])
    assert not train_ids & test_ids
    assert train_ids | test_ids == set(eligible["patient_id"])
    assert cohort.train["stroke"].dtype == np.int8
    prevalence = eligible["stroke"].astype(bool).mean()
    assert abs(cohort.test["stroke"].sum() - prevalence * len(cohort.test)) <= 1
    again = outcome_cohort(dataset, "stroke", test_size=0.3, seed=42)
    assert list(again.test["patient_id"]) == list(cohort.test["patient_id"])
    other = outcome_cohort(dataset, "stroke", test_size=0.3, seed=43)
    assert set(other.test["patient_id"]) != test_ids


def test_an_outcome_with_too_few_cases_is_not_trainable() -> None:
    dataset = _dataset()
    dataset.frame["alzheimers_disease"] = pd.array(
        [True] * 3 + [False] * (len(dataset.frame) - 3), dtype="boolean"
    )
    with pytest.raises(NotTrainable, match="3 positive"):
        outcome_cohort(dataset, "alzheimers_disease", test_size=0.3, seed=42)


def test_a_modality_set_without_values_is_not_trainable_and_the_full_set_is_the_largest_present() -> None:
    dataset = _dataset()
    dataset.frame[dataset.columns["imaging"]] = np.nan
    cohort = outcome_cohort(dataset, "hypertension", test_size=0.3, seed=42)
    with pytest.raises(NotTrainable, match="no training patient has a value"):
        trainable_columns(dataset, cohort, "imaging")
    assert trainable_columns(dataset, cohort, "clinical+imaging")  # the clinical columns still count
    no_imaging = Dataset(dataset.frame, dataset.manifest, {**dataset.columns, "imaging": []}, None, None)
    with pytest.raises(NotTrainable, match="no imaging feature columns"):
        trainable_columns(no_imaging, cohort, "genomic+imaging")
    references = reference_sets(no_imaging, TrainingParameters())
    assert (references.full, references.baseline) == ("clinical+genomic", "clinical")


def test_the_dataset_contract_is_checked_naming_the_file(tmp_path: Path) -> None:
    root = write_channel(tmp_path / "ml", 50, 1, {})
    channel = root / "input" / "data" / "dataset"
    dataset = load_dataset(channel, OUTCOMES)
    assert len(dataset.frame) == 50
    assert dataset.patients is not None
    assert dataset.patients_note is None
    # A manifest column the parquet lacks
    manifest = json.loads((channel / "manifest.json").read_text())
    manifest["modalities"]["genomic"].append("genomic__absent")
    (channel / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(JobError, match=r"dataset.parquet: missing column\(s\) genomic__absent"):
        load_dataset(channel, OUTCOMES)
    # A column under the wrong modality
    manifest["modalities"]["genomic"] = ["clinical__age_at_index_years"]
    (channel / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(JobError, match="not a genomic__ column"):
        load_dataset(channel, OUTCOMES)
    (channel / "manifest.json").unlink()
    with pytest.raises(JobError, match=r"manifest\.json is missing"):
        load_dataset(channel, OUTCOMES)


def test_an_absent_or_broken_patients_file_only_removes_the_patient_view(tmp_path: Path) -> None:
    root = write_channel(tmp_path / "ml", 50, 1, {}, with_patients=False)
    channel = root / "input" / "data" / "dataset"
    dataset = load_dataset(channel, OUTCOMES)
    assert dataset.patients is None
    assert dataset.patients_note == "patients.json was not part of the dataset snapshot"
    (channel / "patients.json").write_text("{broken")
    assert load_dataset(channel, OUTCOMES).patients_note.startswith("patients.json could not be read")  # type: ignore[union-attr]
