"""One outcome's evaluation from test-split scores (no AutoGluon): available-case subsets pick the patients
who have the modalities, subgroups count the right patients, small samples are warned about or withheld,
a threshold that predicts no positive is flagged, and the permutation summary and p-value."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training_job.assess import (
    MIN_CASES,
    SMALL_SAMPLE_POSITIVES,
    References,
    Scored,
    assess_outcome,
    evaluate_scope,
    has_modalities,
    modality_presence,
)
from training_job.evaluate import roc_auc
from training_job.permutation import control_estimates, null_distribution, permutation_p_value

COLUMNS = {
    "clinical": ["clinical__age_at_index_years", "clinical__sex", "clinical__sbp"],
    "genomic": ["genomic__prs"],
    "imaging": ["imaging__a", "imaging__b"],
}
FULL = "clinical+genomic+imaging"


def _test_split(rows: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "patient_id": [f"pt-{i:04d}" for i in range(rows)],
            "clinical__age_at_index_years": rng.uniform(20, 90, rows).round(),
            "clinical__sex": rng.choice(["female", "male"], rows),
            "clinical__sbp": rng.normal(0, 1, rows),
            "genomic__prs": rng.normal(0, 1, rows),
            "imaging__a": rng.normal(0, 1, rows),
            "imaging__b": rng.normal(0, 1, rows),
            "stroke": (rng.random(rows) < 0.3).astype(np.int8),
        }
    )
    frame.loc[rng.random(rows) < 0.2, COLUMNS["genomic"]] = np.nan
    no_imaging = rng.random(rows) < 0.5
    frame.loc[no_imaging, COLUMNS["imaging"]] = np.nan
    frame.loc[~no_imaging & (rng.random(rows) < 0.3), "imaging__a"] = np.nan  # partly imaged: still imaged
    frame.loc[rng.random(rows) < 0.05, "clinical__age_at_index_years"] = np.nan
    frame.loc[rng.random(rows) < 0.05, "clinical__sex"] = None
    return frame


def _scored(frame: pd.DataFrame, names: list[str], seed: int = 1) -> dict[str, Scored]:
    rng = np.random.default_rng(seed)
    y = frame["stroke"].to_numpy()
    return {n: Scored(1 / (1 + np.exp(-(y + rng.normal(0, 1, len(y))))), 0.5) for n in names}


def _assess(frame: pd.DataFrame, scored: dict[str, Scored]) -> object:
    return assess_outcome(
        "stroke",
        frame,
        scored,
        modality_presence(frame, COLUMNS),
        References(FULL, "clinical", "age_sex"),
        resamples=200,
        seed=42,
    )


def test_available_cases_are_the_patients_with_every_modality_of_the_set() -> None:
    frame = _test_split()
    scored = _scored(frame, ["clinical", "genomic", "imaging", FULL, "age_sex"])
    result = _assess(frame, scored)
    genomic = frame["genomic__prs"].notna().to_numpy()
    imaged = frame[["imaging__a", "imaging__b"]].notna().any(axis=1).to_numpy()
    y = frame["stroke"].to_numpy()
    by_set = result.available_case["by_set"]
    assert "age_sex" not in by_set
    for name, mask in (
        ("clinical", np.ones(len(frame), bool)),
        ("imaging", imaged),
        (FULL, genomic & imaged),
    ):
        assert by_set[name]["n"] == mask.sum(), name
        assert by_set[name]["positives"] == y[mask].sum(), name
        expected = roc_auc(y[mask], scored[name].y_score[mask])
        assert by_set[name]["metrics"]["roc_auc"]["value"] == pytest.approx(expected, abs=1e-6), name
    everything = result.available_case["all_modalities"]
    assert everything["n"] == (genomic & imaged).sum()
    assert set(everything["sets"]) == set(scored)  # the baseline is compared there too
    # The gain on that subset is the paired difference of the two AUCs there.
    mask = genomic & imaged
    gain = roc_auc(y[mask], scored[FULL].y_score[mask]) - roc_auc(y[mask], scored["clinical"].y_score[mask])
    assert everything["gain"]["value"] == pytest.approx(gain, abs=1e-6)
    # And on the whole test split, each set against the age + sex baseline.
    versus = result.versus_age_sex["genomic"]
    assert versus.value == pytest.approx(
        roc_auc(y, scored["genomic"].y_score) - roc_auc(y, scored["age_sex"].y_score)
    )


def test_a_subset_with_too_few_positives_gets_a_note_not_a_number() -> None:
    frame = _test_split()
    imaged = frame[["imaging__a", "imaging__b"]].notna().any(axis=1)
    positives = frame.index[imaged & (frame["stroke"] == 1)]
    frame.loc[positives[MIN_CASES - 1 :], "stroke"] = 0  # MIN_CASES - 1 imaged positives remain
    result = _assess(frame, _scored(frame, ["clinical", "imaging", FULL]))
    imaging = result.available_case["by_set"]["imaging"]
    assert imaging["positives"] == MIN_CASES - 1
    assert imaging["metrics"] is None
    assert imaging["note"].startswith(f"too few to estimate: {MIN_CASES - 1} positive")
    assert "too few to estimate" in result.available_case["all_modalities"]["gain"]["note"]
    assert {"outcome": "stroke", "set": "imaging", "scope": "available cases"} in [
        {k: w[k] for k in ("outcome", "set", "scope")} for w in result.warnings
    ]


@pytest.mark.parametrize("positives", [SMALL_SAMPLE_POSITIVES - 1, SMALL_SAMPLE_POSITIVES])
def test_fewer_than_ten_positives_carry_a_warning_with_the_numbers(positives: int) -> None:
    y = np.r_[np.ones(positives), np.zeros(60)]
    score = np.linspace(1, 0, len(y))
    scope = evaluate_scope(y, score, 0.5, resamples=100, seed=0)
    assert scope.metrics is not None
    if positives < SMALL_SAMPLE_POSITIVES:
        assert scope.warning == (
            f"only {positives} positive patients (< 10): the interval is wide and the point estimate unstable"
        )
    else:
        assert scope.warning is None


def test_a_threshold_above_every_score_is_flagged_as_predicting_no_positive() -> None:
    frame = _test_split()
    scored = {name: Scored(s.y_score * 0.5, 0.9) for name, s in _scored(frame, ["clinical", FULL]).items()}
    result = _assess(frame, scored)
    scope = result.test["clinical"]
    assert scope.no_positive_predicted
    assert scope.confusion is not None
    assert scope.confusion["tp"] + scope.confusion["fp"] == 0
    assert scope.metrics is not None
    assert scope.metrics["f1"].value == 0.0
    assert any(
        w["set"] == "clinical" and w["scope"] == "test split" and "no positive" in w["message"]
        for w in result.warnings
    )


def test_subgroups_count_the_patients_of_each_sex_and_age_band() -> None:
    frame = _test_split()
    result = _assess(frame, _scored(frame, ["clinical", FULL]))
    groups = {(g["by"], g["group"]): g for g in result.subgroups["groups"]}
    age = frame["clinical__age_at_index_years"]
    expected = {
        ("sex", "female"): frame["clinical__sex"] == "female",
        ("sex", "male"): frame["clinical__sex"] == "male",
        ("sex", "unknown"): frame["clinical__sex"].isna(),
        ("age_band", "<45"): age < 45,
        ("age_band", "45-64"): (age >= 45) & (age < 65),
        ("age_band", "65+"): age >= 65,
        ("age_band", "unknown"): age.isna(),
    }
    assert list(groups) == list(expected)  # bands youngest first, unknown last
    for key, mask in expected.items():
        assert groups[key]["n"] == mask.sum(), key
        assert groups[key]["positives"] == frame.loc[mask, "stroke"].sum(), key
    assert result.subgroups["set"] == FULL
    # The unknown groups are small: withheld, with n and positives still given.
    assert groups[("sex", "unknown")]["metrics"] is None


def test_available_case_presence_needs_any_column_of_the_modality() -> None:
    frame = _test_split(50)
    presence = modality_presence(frame, {**COLUMNS, "imaging": []})
    assert not presence["imaging"].any()  # no columns: nobody has the modality
    assert (has_modalities(presence, "clinical+genomic") == frame["genomic__prs"].notna().to_numpy()).all()


def test_the_permutation_p_value_counts_the_real_auc_as_one_permutation() -> None:
    assert permutation_p_value(0.8, [0.5] * 20) == pytest.approx(1 / 21)
    assert permutation_p_value(0.6, [0.4, 0.6, 0.7, 0.5]) == pytest.approx((1 + 2) / 5)
    assert permutation_p_value(0.3, [0.4, 0.6]) == 1.0


def test_the_null_distribution_and_the_control_estimates() -> None:
    values = [0.47, 0.52, 0.61, 0.38]
    summary = null_distribution(values)
    assert summary["mean"] == pytest.approx(np.mean(values))
    assert summary["sd"] == pytest.approx(np.std(values, ddof=1), abs=1e-6)
    assert (summary["min"], summary["max"], summary["values"]) == (0.38, 0.61, values)
    control = control_estimates([{"roc_auc": v, "f1": float("nan") if v < 0.4 else v / 2} for v in values])
    assert control["roc_auc"].value == pytest.approx(np.mean(values))
    assert control["roc_auc"].ci_low == pytest.approx(np.percentile(values, 2.5))
    assert control["f1"].value == pytest.approx(np.mean([v / 2 for v in values if v >= 0.4]))
