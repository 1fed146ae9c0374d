"""The job end to end (`python -m training_job train`) on a synthetic snapshot in the SageMaker layout:
every output per contract, real signal vs the label-shuffle control, one stratified split shared by every
modality set, and failures that reach SageMaker's FailureReason."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.unit.training.cohort import synthetic_frame, write_channel
from tests.unit.training.conftest import (
    AGE_SEX,
    FULL,
    HYPERPARAMETERS,
    OUTCOMES,
    PATIENTS,
    PERMUTATIONS,
    SETS,
    JobRun,
    run_job,
)
from training_job.evaluate import METRICS

pytestmark = pytest.mark.slow  # the shared run takes about 20 s on 2 busy cores

OUTPUTS = ("metrics.json", "leaderboard.csv", "feature_importance.csv", "predictions.parquet", "report.html")


def test_every_output_is_written_and_no_failure_is_reported(job_run: JobRun) -> None:
    # Given a snapshot in the SageMaker layout, When the job ran with SageMaker's `train` argument
    for name in OUTPUTS:
        assert (job_run.output / name).stat().st_size > 0, name
    # Then each outcome x set (and the control) has a loadable predictor, a model card, and no failure file
    for outcome in OUTCOMES:
        for name in (*SETS, AGE_SEX, "control"):
            assert (job_run.model / outcome / name / "predictor.pkl").exists(), f"{outcome}/{name}"
    # Only the first permutation of the control is kept.
    assert sorted(p.name for p in (job_run.model / OUTCOMES[0]).iterdir()) == sorted(
        [*SETS, AGE_SEX, "control"]
    )
    card = json.loads((job_run.model / "model_card.json").read_text())
    assert card["dataset"]["dataset_id"] == "ds-test-0001"
    assert card["dataset"]["rows"] == PATIENTS
    assert card["intended_use"] == "research, synthetic-data demo"
    assert card["limitations"]
    assert set(card["headline"]) == set(OUTCOMES)
    assert card["headline"]["hypertension"]["set"] == FULL
    # The scoring job's decision rule: each predictor's threshold and how it was chosen.
    metrics = job_run.metrics()
    for outcome in OUTCOMES:
        assert set(card["thresholds"][outcome]) == {*SETS, AGE_SEX}
        for name, entry in card["thresholds"][outcome].items():
            assert entry == {
                "threshold": metrics["thresholds"][outcome][name]["threshold"],
                "criterion": "max_f1",
                "source": "out-of-fold",
            }
            assert 0 < entry["threshold"] < 1
        assert set(card["predictors"][outcome]) == {*SETS, AGE_SEX, "control"}
    assert not (job_run.root / "output" / "failure").exists()


def test_metrics_json_has_the_documented_shape(job_run: JobRun) -> None:
    metrics = job_run.metrics()
    assert metrics["dataset_id"] == "ds-test-0001"
    assert metrics["parameters"]["outcomes"] == list(OUTCOMES)
    assert metrics["parameters"]["hyperparameters"] == {"GBM": {"num_boost_round": 20}}
    assert metrics["parameters"]["time_limit"] == float(HYPERPARAMETERS["time_limit"])
    assert {"autogluon.tabular", "lightgbm", "scikit-learn", "training_job"} <= set(metrics["versions"])
    assert metrics["evaluation"]["threshold"]["criterion"] == "max_f1"
    assert metrics["evaluation"]["threshold"]["source"] == "out-of-fold"
    assert metrics["reference_sets"] == {"full": FULL, "baseline": "clinical", "age_sex": AGE_SEX}
    assert metrics["skipped"] == []
    for outcome in OUTCOMES:
        assert set(metrics["metrics"][outcome]) == {*SETS, AGE_SEX}
        for estimates in [*metrics["metrics"][outcome].values(), metrics["control"][outcome]]:
            assert set(estimates) == set(METRICS)
            for estimate in estimates.values():
                assert set(estimate) == {"value", "ci_low", "ci_high"}
                assert estimate["ci_low"] <= estimate["value"] <= estimate["ci_high"]
        counts = metrics["counts"][outcome]
        for name in (*SETS, AGE_SEX):
            threshold = metrics["thresholds"][outcome][name]
            assert (threshold["criterion"], threshold["source"], threshold["folds"]) == (
                "max_f1",
                "out-of-fold",
                5,
            )
            assert (threshold["oof_n"], threshold["oof_positives"]) == (
                counts["n_train"],
                counts["positives_train"],
            )
            confusion = metrics["confusion"][outcome][name]
            assert confusion["tp"] + confusion["fn"] == counts["positives_test"]
            assert confusion["tp"] + confusion["fp"] + confusion["tn"] + confusion["fn"] == counts["n_test"]
            assert confusion["no_positive_predicted"] == (confusion["tp"] + confusion["fp"] == 0)
            curves = metrics["curves"][outcome][name]
            assert sum(b["n"] for b in curves["reliability"]) == counts["n_test"]
            assert curves["pr"]["recall"][-1] == 1.0
        versus = metrics["age_sex_baseline"][outcome]["roc_auc_difference"]
        assert set(versus) == set(SETS)
        by_set = metrics["metrics"][outcome]
        assert versus[FULL]["value"] == pytest.approx(
            by_set[FULL]["roc_auc"]["value"] - by_set[AGE_SEX]["roc_auc"]["value"], abs=1e-5
        )
        permutation = metrics["permutation"][outcome]
        values = permutation["roc_auc"]["values"]
        assert len(values) == permutation["permutations"] == PERMUTATIONS
        assert permutation["roc_auc"]["mean"] == pytest.approx(sum(values) / len(values), abs=1e-5)
        assert metrics["control"][outcome]["roc_auc"]["value"] == pytest.approx(
            permutation["roc_auc"]["mean"], abs=1e-5
        )
        assert permutation["real_roc_auc"] == pytest.approx(by_set[FULL]["roc_auc"]["value"], abs=1e-5)
        exceeding = sum(v >= permutation["real_roc_auc"] for v in values)
        assert permutation["p_value"] == pytest.approx((1 + exceeding) / (1 + PERMUTATIONS), abs=1e-6)
        available = metrics["available_case"][outcome]
        assert set(available["by_set"]) == set(SETS)
        assert available["by_set"]["clinical"]["n"] == counts["n_test"]  # everyone has clinical data
        assert available["by_set"]["imaging"]["n"] < counts["n_test"]  # 40 % have no imaging
        assert available["all_modalities"]["n"] == available["by_set"][FULL]["n"]
        subgroups = metrics["subgroups"][outcome]
        for by in ("sex", "age_band"):
            assert sum(g["n"] for g in subgroups["groups"] if g["by"] == by) == counts["n_test"]
        counts = metrics["counts"][outcome]
        assert counts["n_train"] + counts["n_test"] == counts["n_eligible"]
        assert 0 < counts["positives_test"] < counts["n_test"]
        gain = metrics["gain"][outcome]
        assert (gain["full"], gain["baseline"], gain["metric"]) == (FULL, "clinical", "roc_auc")
        assert gain["ci_low"] <= gain["value"] <= gain["ci_high"]
        assert set(metrics["models"][outcome]) == {*SETS, AGE_SEX, "control"}
    assert isinstance(metrics["warnings"], list)


def test_the_real_signal_beats_chance_and_the_shuffled_control_does_not(job_run: JobRun) -> None:
    # Bounds hold across cohort seeds (checked on seeds 1-4 and 7; see conftest for the control's spread).
    metrics = job_run.metrics()
    for outcome in OUTCOMES:
        full = metrics["metrics"][outcome][FULL]["roc_auc"]
        # The label follows clinical__sbp and genomic__prs: the full set is well above chance (about 0.75)...
        assert full["value"] > 0.65, (outcome, full)
        assert full["ci_low"] > 0.55, (outcome, full)
        # ...imaging alone (noise columns) is not...
        imaging = metrics["metrics"][outcome]["imaging"]["roc_auc"]
        assert abs(imaging["value"] - 0.5) < 0.15, (outcome, imaging)
        # ...nor is age + sex (the label ignores them)...
        age_sex = metrics["metrics"][outcome][AGE_SEX]["roc_auc"]
        assert abs(age_sex["value"] - 0.5) < 0.15, (outcome, age_sex)
        # ...and neither is the same pipeline on permuted training labels, which the real model beats.
        control = metrics["control"][outcome]["roc_auc"]
        assert abs(control["value"] - 0.5) < 0.15, (outcome, control)
        assert metrics["permutation"][outcome]["p_value"] == pytest.approx(1 / (1 + PERMUTATIONS), abs=1e-6)
        # The out-of-fold threshold predicts positives where 0.5 would predict few for stroke (about 20 %).
        assert not metrics["confusion"][outcome][FULL]["no_positive_predicted"]
        assert metrics["metrics"][outcome][FULL]["f1"]["value"] > 0.4, outcome
        # The gain is the difference of the two sets' AUCs on the same test patients.
        by_set = metrics["metrics"][outcome]
        difference = by_set[FULL]["roc_auc"]["value"] - by_set["clinical"]["roc_auc"]["value"]
        assert metrics["gain"][outcome]["value"] == pytest.approx(difference, abs=1e-5)
    # Adding the genome helps: about +0.065 AUC per outcome; one outcome alone can land near 0.
    gains = [metrics["gain"][outcome]["value"] for outcome in OUTCOMES]
    assert sum(gains) / len(gains) > 0, gains


def test_one_stratified_split_per_outcome_is_shared_by_every_set(job_run: JobRun) -> None:
    predictions = pd.read_parquet(job_run.output / "predictions.parquet")
    assert list(predictions.columns) == ["patient_id", "outcome", "set", "y_true", "y_score"]
    assert predictions["y_score"].between(0, 1).all()
    frame = synthetic_frame(PATIENTS, 7).set_index("patient_id")
    metrics = job_run.metrics()
    for outcome in OUTCOMES:
        rows = predictions[predictions["outcome"] == outcome]
        test_ids = {s: sorted(group["patient_id"]) for s, group in rows.groupby("set")}
        assert set(test_ids) == {*SETS, AGE_SEX, "control"}
        first = test_ids[FULL]
        assert all(ids == first for ids in test_ids.values()), "the ablation is not paired"
        assert len(first) == len(set(first)) == metrics["counts"][outcome]["n_test"]
        # Only eligible patients, with their own labels...
        labels = frame.loc[first, outcome]
        assert labels.notna().all()
        one_set = rows[rows["set"] == FULL].set_index("patient_id")["y_true"]
        assert (one_set.loc[first].astype(bool) == labels.astype(bool)).all()
        # ...and the test prevalence is the eligible prevalence (stratified), within one patient.
        eligible = frame[outcome].dropna()
        assert abs(labels.sum() - eligible.mean() * len(labels)) <= 1


def test_leaderboard_and_feature_importance_cover_the_predictors(job_run: JobRun) -> None:
    board = pd.read_csv(job_run.output / "leaderboard.csv")
    assert {"outcome", "set", "model", "score_test", "score_val"} <= set(board.columns)
    assert set(zip(board["outcome"], board["set"], strict=True)) == {
        (o, s) for o in OUTCOMES for s in (*SETS, AGE_SEX, "control")
    }
    importance = pd.read_csv(job_run.output / "feature_importance.csv")
    assert list(importance.columns) == [
        "outcome",
        "set",
        "feature",
        "modality",
        "importance",
        "stddev",
        "p_value",
        "n",
    ]
    assert set(importance["set"]) == {FULL}
    for outcome in OUTCOMES:
        ranked = importance[importance["outcome"] == outcome].sort_values("importance", ascending=False)
        # The two columns the label depends on rank first.
        assert set(ranked["feature"].head(2)) == {"clinical__sbp", "genomic__prs"}
        assert set(ranked["modality"]) == {"clinical", "genomic", "imaging"}


@pytest.mark.parametrize("broken", ["no-parquet", "bad-hyperparameter"])
def test_a_failure_writes_the_reason_where_sagemaker_reads_it_and_exits_non_zero(
    tmp_path: Path, broken: str
) -> None:
    # Given a snapshot without its dataset.parquet, or with a misspelt hyperparameter
    hyperparameters = (
        {**HYPERPARAMETERS, "time_limt": "5"} if broken == "bad-hyperparameter" else HYPERPARAMETERS
    )
    root = write_channel(tmp_path / "ml", 60, 1, hyperparameters)
    if broken == "no-parquet":
        (root / "input" / "data" / "dataset" / "dataset.parquet").unlink()
    # When the job runs
    run = run_job(root, timeout=120)
    # Then it exits 1 and /opt/ml/output/failure names the file or key and the reason
    assert run.returncode == 1, run.stderr[-2000:]
    reason = (root / "output" / "failure").read_text()
    expected = (
        "dataset.parquet is missing" if broken == "no-parquet" else "unknown hyperparameter(s) time_limt"
    )
    assert expected in reason
    assert len(reason) <= 1024
    assert not (root / "output" / "data" / "metrics.json").exists()


def test_what_cannot_be_trained_is_skipped_with_a_reason_and_the_rest_is_written(tmp_path: Path) -> None:
    # Given a snapshot without imaging columns and with only 2 Alzheimer's cases
    hyperparameters = {
        **HYPERPARAMETERS,
        "outcomes": "hypertension,alzheimers_disease",
        "modality_sets": "clinical,imaging,clinical+imaging",
        "bootstrap": "200",
    }
    root = write_channel(tmp_path / "ml", 200, 11, hyperparameters)
    channel = root / "input" / "data" / "dataset"
    frame = pd.read_parquet(channel / "dataset.parquet")
    frame["alzheimers_disease"] = pd.array([True, True] + [False] * (len(frame) - 2), dtype="boolean")
    frame = frame.drop(columns=[c for c in frame.columns if c.startswith("imaging__")])
    frame.to_parquet(channel / "dataset.parquet", index=False)
    manifest = json.loads((channel / "manifest.json").read_text())
    manifest["modalities"]["imaging"] = []
    (channel / "manifest.json").write_text(json.dumps(manifest))
    # When the job runs
    run = run_job(root)
    # Then it succeeds with the clinical predictor and its control, and says what it skipped and why
    assert run.returncode == 0, run.stderr[-3000:]
    metrics = run.metrics()
    assert list(metrics["metrics"]) == ["hypertension"]
    assert list(metrics["metrics"]["hypertension"]) == ["clinical", AGE_SEX]
    assert metrics["reference_sets"] == {"full": "clinical", "baseline": "clinical", "age_sex": AGE_SEX}
    assert "hypertension" in metrics["control"]
    assert metrics["gain"] == {}  # the full set is the clinical set
    skipped = {(s["outcome"], s["set"]): s["reason"] for s in metrics["skipped"]}
    assert set(skipped) == {
        ("alzheimers_disease", None),
        ("hypertension", "imaging"),
        ("hypertension", "clinical+imaging"),
    }
    assert "2 positive" in skipped[("alzheimers_disease", None)]
    assert skipped[("hypertension", "imaging")] == "the dataset has no imaging feature columns"
    report = (run.output / "report.html").read_text()
    assert '<section id="skipped">' in report
    assert "the dataset has no imaging feature columns" in report
