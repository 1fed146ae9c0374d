"""features.clinical: the values, checked against an independent SQL version, the generator's truth and edits.

Most tests run on the 200-patient synthetic cohort (seed 7); a few add hand-made rows to it for the cases
the generator never writes (other units, void statuses, a patient without records).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from mmhealth.features.clinical import (
    FEATURES_CLINICAL,
    MEASUREMENTS,
    FeatureConfig,
    clinical_features,
)
from mmhealth.lakehouse.clinical_tables import CLINICAL_TABLES
from tests.unit.features.fhir_tables import ldl_observation, with_rows
from tests.unit.features.sql_reference import reference_features

UTC = dt.UTC
INDEX = dt.datetime(2018, 1, 1, tzinfo=UTC)
MEASURE_COLUMNS = [f.name for f in FEATURES_CLINICAL if f.name.split("_")[-1] in ("latest", "mean", "year")]
EMPTY_OBSERVATIONS = {f.name: pa.array([], f.type) for f in CLINICAL_TABLES["clinical.observation"]}
ZERO_COLUMNS = [f.name for f in FEATURES_CLINICAL if pa.types.is_integer(f.type)]


def assert_tables_close(actual: pa.Table, expected: pa.Table) -> None:
    """Same schema, same nulls, equal values (floats to 1e-9: sums in another order round differently)."""
    assert actual.schema.equals(expected.schema)
    for name in actual.column_names:
        a, e = actual[name], expected[name]
        assert pc.is_null(a).equals(pc.is_null(e)), name
        if pa.types.is_floating(a.type):
            a_np = a.to_numpy(zero_copy_only=False)
            e_np = e.to_numpy(zero_copy_only=False)
            assert np.allclose(a_np, e_np, rtol=1e-9, atol=1e-9, equal_nan=True), name
        else:
            assert a.equals(e), name


def by_patient(table: pa.Table) -> dict[str, dict[str, Any]]:
    return {row["patient_id"]: row for row in table.to_pylist()}


def awkward_rows(tables: dict[str, pa.Table]) -> dict[str, pa.Table]:
    """The cohort plus rows the generator never writes: other units and systems, void statuses."""
    patients = tables["clinical.patient"]["patient_id"].to_pylist()
    day = dt.datetime(2017, 6, 1, 9, tzinfo=UTC)
    last = dt.datetime(2017, 12, 31, 20, tzinfo=UTC)  # after the last real visit before the index date
    observations = [
        ldl_observation(patients[0], last, 3.5, value_unit="mmol/L"),  # converted: 135.3 mg/dL
        ldl_observation(patients[1], last, 140.0, value_unit="g/L"),  # unknown unit: dropped
        ldl_observation(patients[2], last, 999.0, status="entered-in-error"),
        ldl_observation(patients[3], last, 120.0, value_unit=None),  # read in the canonical unit
        ldl_observation(patients[4], last, 130.0, code_system="http://example.org/lab"),  # not LOINC
        ldl_observation(patients[5], last, 125.0, effective_at=None),  # dated by its issue time
    ]
    conditions = [
        {"resource_id": "c1", "patient_id": patients[6], "code_system": "http://snomed.info/sct",
         "code_code": "49436004", "verification_status": "refuted", "onset_at": day},
        {"resource_id": "c2", "patient_id": patients[7], "code_system": None, "code_code": "44054006",
         "recorded_at": day},
    ]  # fmt: skip
    medications = [
        {"resource_id": "m1", "patient_id": patients[8], "status": "active", "medication_system": None,
         "medication_code": "0000", "medication_display": "Lisinopril 20 MG Oral Tablet", "authored_at": day},
        {"resource_id": "m2", "patient_id": patients[9], "status": "cancelled",
         "medication_system": "http://www.nlm.nih.gov/research/umls/rxnorm", "medication_code": "617310",
         "authored_at": day},
    ]  # fmt: skip
    encounters = [
        {"resource_id": "e1", "patient_id": patients[10], "status": "finished", "class_code": "EMER",
         "period_start": day},
        {"resource_id": "e2", "patient_id": patients[11], "status": "entered-in-error", "class_code": "IMP",
         "period_start": day},
    ]  # fmt: skip
    edited = with_rows(tables, "clinical.observation", *observations)
    edited = with_rows(edited, "clinical.condition", *conditions)
    edited = with_rows(edited, "clinical.medication_request", *medications)
    return with_rows(edited, "clinical.encounter", *encounters)


@pytest.mark.parametrize(
    "config",
    [
        FeatureConfig(),
        FeatureConfig(index_rule="first_encounter_plus"),
        FeatureConfig(index_date=dt.date(2020, 7, 1)),
    ],
    ids=["fixed-2018", "first-encounter-plus", "fixed-2020-07"],
)
def test_features_equal_an_independent_sql_version_of_the_rules(
    tables: dict[str, pa.Table], config: FeatureConfig
) -> None:
    # Given the cohort with awkward rows added
    edited = awkward_rows(tables)
    # When features are computed by the module (pyarrow + numpy) and by DuckDB SQL
    actual = clinical_features(edited, config).features
    # Then every column of every patient agrees
    assert_tables_close(actual, reference_features(edited, config))
    assert actual.num_rows == 200


def test_awkward_rows_are_read_as_documented(tables: dict[str, pa.Table]) -> None:
    # Given the cohort with awkward rows added
    before = by_patient(clinical_features(tables).features)
    after = by_patient(clinical_features(awkward_rows(tables)).features)
    p = tables["clinical.patient"]["patient_id"].to_pylist()
    # Then a value in mmol/L is converted, a row without a unit is read as mg/dL, a row dated only by its
    # issue time counts, and unknown units, void rows and other code systems are ignored
    assert after[p[0]]["ldl_mg_dl_latest"] == pytest.approx(3.5 * 38.67)
    assert after[p[3]]["ldl_mg_dl_latest"] == 120.0
    assert after[p[5]]["ldl_mg_dl_latest"] == 125.0
    for ignored in (p[1], p[2], p[4], p[6], p[9], p[11]):
        assert after[ignored] == before[ignored]
    # ... a diagnosis without a code system counts, a medication matches by ingredient name
    assert (before[p[7]]["has_diabetes"], after[p[7]]["has_diabetes"]) == (0, 1)
    assert after[p[8]]["prescribed_ace_inhibitor"] == 1
    assert after[p[10]]["emergency_encounter_count"] == 1


def test_features_agree_with_the_generators_truth(
    tables: dict[str, pa.Table], truth: dict[str, dict[str, Any]]
) -> None:
    # Given the cohort and its answer key (baseline state drawn at 2015-01-01, recorded at the first visits)
    rows = by_patient(clinical_features(tables).features)
    # Then demographics and baseline comorbidities are exactly the generator's
    for patient, t in truth.items():
        row, baseline = rows[patient], t["signals"]["baseline"]
        age = (INDEX.date() - dt.date.fromisoformat(t["birth_date"])).days / 365.25
        assert row["age_at_index_years"] == pytest.approx(age, abs=0.005)
        assert row["sex"] == t["sex"]
        assert row["smoking_status"] == baseline["smoking"]
        assert row["has_smoker_finding"] == int(baseline["smoking"] == "current")
        assert row["has_diabetes"] == int(baseline["diabetes"])  # incident cases are diagnosed by 2017-12
        assert row["has_atrial_fibrillation"] == int(baseline["atrial_fibrillation"])
        assert row["has_obesity"] == int(baseline["bmi"] >= 30.0)
        assert row["prescribed_anticoagulant"] == int(baseline["atrial_fibrillation"])  # warfarin for AF
        # ... and the measurements sit around the latent baseline
        assert row["body_height_cm_latest"] == pytest.approx(baseline["height_cm"], abs=0.06)
        assert row["heart_rate_per_min_count"] == row["systolic_mmhg_count"] >= 4


def test_the_planted_signals_are_visible_before_the_index_date(tables: dict[str, pa.Table]) -> None:
    # Given features and labels of the cohort
    result = clinical_features(tables)
    features, labels = result.features, result.labels

    def mean_by_label(column: str, outcome: str) -> tuple[float, float]:
        values = features[column].to_numpy(zero_copy_only=False).astype(float)
        label = labels[outcome].to_numpy(zero_copy_only=False)
        return float(np.nanmean(values[label == 1])), float(np.nanmean(values[label == 0]))

    # Then future hypertension shows in the pre-index blood pressure (baseline BP carries 0.9 log-odds per
    # 10 mmHg) and BMI, coronary disease in LDL, Alzheimer's in age and MMSE
    positive, negative = mean_by_label("systolic_mmhg_mean", "hypertension")
    assert positive - negative > 8.0
    positive, negative = mean_by_label("bmi_kg_m2_mean", "hypertension")
    assert positive > negative + 1.0
    positive, negative = mean_by_label("ldl_mg_dl_mean", "coronary_heart_disease")
    assert positive > negative + 5.0
    positive, negative = mean_by_label("age_at_index_years", "alzheimers_disease")
    assert positive > negative + 5.0
    positive, negative = mean_by_label("mmse_score_latest", "alzheimers_disease")
    assert positive < negative


def test_patients_without_records_of_a_kind_get_null_measurements_and_zero_counts(
    tables: dict[str, pa.Table],
) -> None:
    # Given a patient with a Patient resource only, and one with a single encounter after the index date
    newcomer = {"resource_id": "newcomer", "patient_id": "newcomer", "gender": "female",
                "birth_date": dt.date(1950, 7, 1)}  # fmt: skip
    late = {"resource_id": "late-visit", "patient_id": "late-comer", "status": "finished", "class_code": "AMB",
            "period_start": dt.datetime(2019, 2, 1, tzinfo=UTC)}  # fmt: skip
    edited = with_rows(with_rows(tables, "clinical.patient", newcomer), "clinical.encounter", late)
    # When features are computed
    rows = by_patient(clinical_features(edited).features)
    # Then both have a row: measurements null, counts and indicators 0
    for patient in ("newcomer", "late-comer"):
        row = rows[patient]
        assert all(row[c] is None for c in MEASURE_COLUMNS), patient
        assert all(row[c] == 0 for c in ZERO_COLUMNS), patient
        assert row["smoking_status"] is None
        assert row["years_since_first_encounter"] is None
    assert rows["newcomer"]["age_at_index_years"] == pytest.approx(67.5, abs=0.01)
    assert rows["late-comer"]["age_at_index_years"] is None  # no birth date known


def test_an_identical_measurement_delivered_twice_counts_once(tables: dict[str, pa.Table]) -> None:
    # Given a patient's systolic pressure at one instant as a panel component and as its own Observation,
    # and a second reading with another value at the same instant
    patient = clinical_features(tables).features["patient_id"][0].as_py()
    when = dt.datetime(2017, 12, 31, 20, tzinfo=UTC)

    def systolic(resource_id: str, value: float, panel: str | None) -> dict[str, Any]:
        return {**ldl_observation(patient, when, value), "resource_id": resource_id, "code_code": "8480-6",
                "value_unit": "mm[Hg]", "panel_code": panel}  # fmt: skip

    once = with_rows(tables, "clinical.observation", systolic("bp-panel", 181.0, "85354-9"))
    twice = with_rows(once, "clinical.observation", systolic("bp-alone", 181.0, None))
    other = with_rows(twice, "clinical.observation", systolic("bp-other", 150.0, None))
    # When features are computed
    count = {
        name: by_patient(clinical_features(t).features)[patient]["systolic_mmhg_count"]
        for name, t in (("once", once), ("twice", twice), ("other", other))
    }
    # Then the repeated reading counts once, a different value at the same instant counts on its own
    assert count["twice"] == count["once"]
    assert count["other"] == count["once"] + 1
    # And the SQL reference agrees
    assert_tables_close(clinical_features(other).features, reference_features(other, FeatureConfig()))


@pytest.mark.parametrize(
    ("discharged", "counted"),
    [(dt.datetime(2017, 12, 31, 18, tzinfo=UTC), 1), (dt.datetime(2018, 1, 2, 11, tzinfo=UTC), 0)],
    ids=["discharged-before-index", "still-admitted-at-index"],
)
def test_an_admission_counts_only_once_it_has_ended_before_the_index_date(
    tables: dict[str, pa.Table], discharged: dt.datetime, counted: int
) -> None:
    # Given a patient admitted on 2017-12-30 and discharged at `discharged`
    before = clinical_features(tables)
    patient = before.features["patient_id"][0].as_py()
    stay = {"resource_id": "test-stay", "patient_id": patient, "status": "finished", "class_code": "IMP",
            "period_start": dt.datetime(2017, 12, 30, 9, tzinfo=UTC), "period_end": discharged}  # fmt: skip
    # When features are computed
    row = clinical_features(with_rows(tables, "clinical.encounter", stay)).features.slice(0, 1).to_pylist()[0]
    # Then the stay counts only when it ended before the index date
    assert (
        row["inpatient_encounter_count"] == before.features["inpatient_encounter_count"][0].as_py() + counted
    )
    assert row["encounter_count"] == before.features["encounter_count"][0].as_py() + counted


def test_under_the_first_encounter_rule_a_patient_without_encounters_has_no_index_date(
    tables: dict[str, pa.Table],
) -> None:
    # Given a patient with observations but no encounter
    lonely = ldl_observation("no-encounters", dt.datetime(2016, 1, 1, tzinfo=UTC), 150.0)
    edited = with_rows(tables, "clinical.observation", lonely)
    # When features are computed with the first-encounter rule
    result = clinical_features(edited, FeatureConfig(index_rule="first_encounter_plus"))
    row = by_patient(result.features)["no-encounters"]
    # Then nothing is before a missing index date: null index, null measurements, null labels
    assert row["index_date"] is None
    assert row["ldl_mg_dl_latest"] is None
    assert row["ldl_mg_dl_count"] == 0
    assert by_patient(result.labels)["no-encounters"]["hypertension"] is None


def test_missing_and_empty_tables_are_no_records(tables: dict[str, pa.Table]) -> None:
    # Given only the Patient table, and then nothing at all
    only_patients = clinical_features({"clinical.patient": tables["clinical.patient"]})
    nothing = clinical_features({})
    empty = clinical_features({name: schema.empty_table() for name, schema in CLINICAL_TABLES.items()})
    # Then every patient has a row of nulls and zeros (labels null: nothing was recorded of them before the
    # index date, so they are not eligible), and no patients no rows
    assert only_patients.features.num_rows == 200
    assert sum(only_patients.features[c].null_count for c in MEASURE_COLUMNS) == 200 * len(MEASURE_COLUMNS)
    assert all(pc.sum(only_patients.features[c]).as_py() == 0 for c in ZERO_COLUMNS)
    assert only_patients.labels["hypertension"].null_count == 200
    for result in (nothing, empty):
        assert result.features.num_rows == result.labels.num_rows == 0
        assert result.features.schema.equals(FEATURES_CLINICAL)


def test_row_order_of_the_inputs_does_not_matter(tables: dict[str, pa.Table]) -> None:
    # Given the cohort's tables with their rows shuffled
    rng = np.random.default_rng(11)
    shuffled = {name: t.take(rng.permutation(t.num_rows)) for name, t in tables.items()}
    # When features are computed from both
    # Then the results are identical, rows in patient_id order, one per patient
    original, reordered = clinical_features(tables), clinical_features(shuffled)
    assert_tables_close(reordered.features, original.features)
    assert reordered.labels.equals(original.labels)
    ids = original.features["patient_id"].to_pylist()
    assert ids == sorted(set(ids))


def test_every_feature_column_is_documented_and_every_measurement_has_its_columns() -> None:
    # Given the published schema
    # Then each column carries a doc (pyiceberg keeps it as the column comment) and the names are the spec's
    assert all(f.metadata and f.metadata.get(b"doc") for f in FEATURES_CLINICAL)
    for spec in MEASUREMENTS:
        assert {f"{spec.name}_{s}" for s in ("latest", "mean", "count")} <= set(FEATURES_CLINICAL.names)
    assert FEATURES_CLINICAL.names[:2] == ["patient_id", "index_date"]


@pytest.mark.parametrize(
    ("table", "error"),
    [
        (pa.table({"patient_id": ["p"], "status": ["final"]}), "clinical.observation: missing column"),
        (
            pa.table({**EMPTY_OBSERVATIONS, "value_quantity": pa.array([], pa.timestamp("s"))}),
            "clinical.observation: a column does not cast",
        ),
        (
            pa.Table.from_arrays(
                [*EMPTY_OBSERVATIONS.values(), pa.array([], pa.float64())],
                names=[*EMPTY_OBSERVATIONS, "value_quantity"],
            ),
            "clinical.observation: column\\(s\\) \\['value_quantity'\\] appear more than once",
        ),
    ],
    ids=["missing-column", "wrong-type", "duplicate-column"],
)
def test_a_table_that_breaks_the_contract_is_refused_by_name(table: pa.Table, error: str) -> None:
    # Given an observation table without the contract's columns, or with a column of the wrong type
    # When features are computed, Then a ValueError names the table and the problem
    with pytest.raises(ValueError, match=error):
        clinical_features({"clinical.observation": table})
