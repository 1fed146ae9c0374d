"""Leakage: features.clinical reads only records known before the index date, and never a label-defining one.

Proved on the 200-patient synthetic cohort by editing its tables and recomputing: moving or deleting every
label-defining Condition leaves the features identical (while the labels follow the edit, so the edit was
real), and an observation changes the features exactly when it is known before the index date.
"""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from mmhealth.features.clinical import FeatureConfig, clinical_features
from mmhealth.features.outcomes import PRIMARY_CODES
from tests.unit.features.fhir_tables import (
    ldl_observation,
    with_label_records_dated,
    with_rows,
    without_label_records,
)

UTC = dt.UTC
INDEX = dt.datetime(2018, 1, 1, tzinfo=UTC)
RULES = [FeatureConfig(), FeatureConfig(index_rule="first_encounter_plus", years_after_first_encounter=3)]
RULE_IDS = ["fixed-2018", "first-encounter-plus-3y"]
OUTCOMES = list(PRIMARY_CODES)


def null_labels(labels: pa.Table) -> int:
    return sum(labels[o].null_count for o in OUTCOMES)


def positive_labels(labels: pa.Table) -> int:
    return sum(pc.sum(labels[o]).as_py() or 0 for o in OUTCOMES)


@pytest.mark.parametrize("config", RULES, ids=RULE_IDS)
@pytest.mark.parametrize(
    "when",
    [
        dt.datetime(2012, 5, 1, tzinfo=UTC),  # years before any index date
        dt.datetime(2017, 12, 31, 23, 59, tzinfo=UTC),  # the last minute before the fixed index date
        INDEX,  # on the fixed index date
        dt.datetime(2023, 6, 1, tzinfo=UTC),  # after every index date
    ],
    ids=["2012", "just-before-index", "on-index", "2023"],
)
def test_moving_every_label_record_leaves_features_unchanged(
    tables: dict[str, pa.Table], config: FeatureConfig, when: dt.datetime
) -> None:
    # Given the cohort's features and labels
    before = clinical_features(tables, config)
    # When every label-defining Condition is re-dated to `when`
    after = clinical_features(with_label_records_dated(tables, when), config)
    # Then not one feature value changes
    assert after.features.equals(before.features)
    # ... while the labels did see the move: onsets are now `when` for every positive patient
    for outcome in OUTCOMES:
        onsets = pc.unique(after.labels[f"{outcome}_onset"].drop_null()).to_pylist()
        assert onsets == [when.date()]
    if when < INDEX:  # now prevalent before every index date: the positives join the ineligible
        assert null_labels(after.labels) == positive_labels(before.labels) + null_labels(before.labels)
        assert positive_labels(after.labels) == 0


@pytest.mark.parametrize("config", RULES, ids=RULE_IDS)
def test_deleting_every_label_record_leaves_features_unchanged(
    tables: dict[str, pa.Table], config: FeatureConfig
) -> None:
    # Given the cohort, with its label-defining records
    before = clinical_features(tables, config)
    assert positive_labels(before.labels) > 100
    # When every label-defining Condition is deleted
    after = clinical_features(without_label_records(tables), config)
    # Then the features are identical, and every label is 0 (nobody is left with an outcome)
    assert after.features.equals(before.features)
    assert positive_labels(after.labels) == 0
    assert null_labels(after.labels) == 0


def test_label_codes_are_ignored_by_features_in_any_code_system_and_as_encounter_reasons(
    tables: dict[str, pa.Table],
) -> None:
    # Given a patient, and the same cohort with two more pre-index records carrying the hypertension code:
    # a Condition in a non-SNOMED system (not a label) and an Encounter whose reason is hypertension
    before = clinical_features(tables)
    patient = before.features["patient_id"][0].as_py()
    condition = {
        "resource_id": "test-htn-other-system",
        "patient_id": patient,
        "code_system": "http://example.org/local-codes",
        "code_code": PRIMARY_CODES["hypertension"],
        "onset_at": dt.datetime(2016, 3, 1, tzinfo=UTC),
        "recorded_at": dt.datetime(2016, 3, 1, tzinfo=UTC),
    }
    encounter = {
        "resource_id": "test-htn-visit",
        "patient_id": patient,
        "status": "finished",
        "class_code": "AMB",
        "reason_system": "http://snomed.info/sct",
        "reason_code": PRIMARY_CODES["hypertension"],
        "period_start": dt.datetime(2016, 3, 1, 9, tzinfo=UTC),
    }
    edited = with_rows(with_rows(tables, "clinical.condition", condition), "clinical.encounter", encounter)
    # When features and labels are computed
    after = clinical_features(edited)
    # Then neither record counts as a feature, and the non-SNOMED code does not make a label either
    assert after.features.equals(before.features)
    assert after.labels.equals(before.labels)


def test_a_patient_known_only_through_a_label_record_gets_no_row(tables: dict[str, pa.Table]) -> None:
    # Given a label-defining Condition of a patient with no other record
    condition = {
        "resource_id": "test-orphan-stroke",
        "patient_id": "patient-known-only-by-a-label",
        "code_system": "http://snomed.info/sct",
        "code_code": PRIMARY_CODES["stroke"],
        "onset_at": dt.datetime(2019, 1, 1, tzinfo=UTC),
    }
    # When features are computed
    result = clinical_features(with_rows(tables, "clinical.condition", condition))
    # Then the patient list, and so the features, do not depend on that record
    assert "patient-known-only-by-a-label" not in result.features["patient_id"].to_pylist()
    assert result.features.equals(clinical_features(tables).features)


LDL_STATS = {"ldl_mg_dl_latest", "ldl_mg_dl_mean", "ldl_mg_dl_count"}


@pytest.mark.parametrize(
    ("effective", "issued_after_hours", "changes"),
    [
        (dt.datetime(2018, 3, 1, tzinfo=UTC), 2, set()),  # after the index date
        (INDEX, 2, set()),  # on the index date: not strictly before it
        (dt.datetime(2017, 12, 31, 22, tzinfo=UTC), 4, set()),  # drawn before, resulted after the index
        (dt.datetime(2017, 12, 31, 22, tzinfo=UTC), 1, LDL_STATS),  # drawn and resulted before the index
        (
            dt.datetime(2015, 1, 2, tzinfo=UTC),
            2,
            {"ldl_mg_dl_mean", "ldl_mg_dl_count"},
        ),  # older than the rest
    ],
    ids=["after", "on-index", "resulted-after-index", "just-before", "oldest"],
)
def test_an_observation_changes_features_only_when_known_before_the_index_date(
    tables: dict[str, pa.Table], effective: dt.datetime, issued_after_hours: int, changes: set[str]
) -> None:
    # Given a patient with pre-index LDL values
    before = clinical_features(tables)
    patient = before.features["patient_id"][0].as_py()
    row_before = before.features.slice(0, 1).to_pylist()[0]
    assert row_before["ldl_mg_dl_count"] > 0
    # When one more LDL observation (999 mg/dL) is added at `effective`, resulted `issued_after_hours` later
    ldl = ldl_observation(
        patient, effective, 999.0, issued_at=effective + dt.timedelta(hours=issued_after_hours)
    )
    after = clinical_features(with_rows(tables, "clinical.observation", ldl))
    row_after = after.features.slice(0, 1).to_pylist()[0]
    # Then every other patient is untouched, and this one changes exactly when the value was known in time
    assert after.features.slice(1).equals(before.features.slice(1))
    assert {k for k in row_before if row_before[k] != row_after[k]} == changes
    if changes:
        assert row_after["ldl_mg_dl_count"] == row_before["ldl_mg_dl_count"] + 1
    if "ldl_mg_dl_latest" in changes:
        assert row_after["ldl_mg_dl_latest"] == 999.0
