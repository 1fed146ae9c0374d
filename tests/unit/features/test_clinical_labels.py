"""Labels (features.labels): incident outcomes from the label-defining Conditions, checked against truth.json.

On the synthetic cohort every onset falls in 2018-01-01 .. 2024-06-30, so with the default fixed index date
(2018-01-01) and horizon (7 years) every patient is eligible and every label must equal the generator's.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from mmhealth.features.clinical import FEATURES_LABELS, FeatureConfig, clinical_features
from mmhealth.features.outcomes import PRIMARY_CODES
from tests.unit.features.sql_reference import reference_labels

UTC = dt.UTC
OUTCOMES = list(PRIMARY_CODES)


def by_patient(table: pa.Table) -> dict[str, dict[str, Any]]:
    return {row["patient_id"]: row for row in table.to_pylist()}


def set_where(table: pa.Table, mask: pa.ChunkedArray, **values: Any) -> pa.Table:
    """`table` with `column = value` on the rows `mask` selects."""
    for column, value in values.items():
        i = table.schema.get_field_index(column)
        table = table.set_column(
            i, column, pc.if_else(mask, pa.scalar(value, table.schema.field(i).type), table[column])
        )
    return table


def label_rows_of(tables: dict[str, pa.Table], patient: str, outcome: str) -> pa.ChunkedArray:
    conditions = tables["clinical.condition"]
    return pc.and_(
        pc.equal(conditions["patient_id"], patient), pc.equal(conditions["code_code"], PRIMARY_CODES[outcome])
    )


def first_positive(truth: dict[str, dict[str, Any]], outcome: str) -> str:
    return sorted(p for p, t in truth.items() if t["labels"][outcome]["label"] == 1)[0]


def test_every_label_and_onset_equals_the_generators_truth(
    tables: dict[str, pa.Table], truth: dict[str, dict[str, Any]]
) -> None:
    # Given the cohort and its answer key
    # When labels are computed with the default rule (index 2018-01-01, 7-year horizon)
    labels = clinical_features(tables).labels
    # Then there is one row per patient, all eligible, and every label and onset is the generator's
    assert labels.schema.equals(FEATURES_LABELS, check_metadata=True)
    assert sorted(labels["patient_id"].to_pylist()) == sorted(truth)
    rows = by_patient(labels)
    for outcome in OUTCOMES:
        assert labels[outcome].null_count == 0
        agree = sum(rows[p][outcome] == t["labels"][outcome]["label"] for p, t in truth.items())
        assert agree / len(truth) == 1.0, outcome
        onsets = {p: t["labels"][outcome]["onset"] for p, t in truth.items()}
        assert {p: (d.isoformat() if (d := rows[p][f"{outcome}_onset"]) else None) for p in truth} == onsets
        # ... so the prevalence is the generator's too
        prevalence = pc.mean(labels[outcome]).as_py()
        assert prevalence == pytest.approx(
            sum(t["labels"][outcome]["label"] for t in truth.values()) / len(truth)
        )
    assert pc.mean(labels["hypertension"]).as_py() > 0.3  # the generator's targets: about 38/15/11/11 %


def test_the_first_encounter_rule_leaves_only_prevalent_patients_ineligible(
    tables: dict[str, pa.Table], truth: dict[str, dict[str, Any]]
) -> None:
    # Given the rule "first encounter + 3 years"
    config = FeatureConfig(index_rule="first_encounter_plus", years_after_first_encounter=3)
    # When labels are computed
    labels = clinical_features(tables, config).labels
    # Then each index date is the first encounter's day three calendar years on
    encounters = tables["clinical.encounter"]
    first = encounters.group_by("patient_id").aggregate([("period_start", "min")]).to_pylist()
    expected = {
        r["patient_id"]: r["period_start_min"].date().replace(year=r["period_start_min"].year + 3)
        for r in first
    }
    assert {p: r["index_date"] for p, r in by_patient(labels).items()} == expected
    # ... a label is null exactly when the true onset precedes the index date, and equals the truth otherwise
    for patient, row in by_patient(labels).items():
        for outcome in OUTCOMES:
            onset = truth[patient]["labels"][outcome]["onset"]
            if onset is not None and dt.date.fromisoformat(onset) < row["index_date"]:
                assert row[outcome] is None
            else:
                assert row[outcome] == truth[patient]["labels"][outcome]["label"]
    eligible = min(1 - labels[o].null_count / labels.num_rows for o in OUTCOMES)
    assert eligible >= 0.95


@pytest.mark.parametrize(
    ("onset", "label"),
    [
        (dt.datetime(2017, 12, 31, 23, 59, tzinfo=UTC), None),  # before the index date: prevalent
        (dt.datetime(2018, 1, 1, 0, 0, tzinfo=UTC), 1),  # on the index date: incident
        (dt.datetime(2024, 12, 31, 23, 0, tzinfo=UTC), 1),  # the last day of the 7-year window
        (dt.datetime(2025, 1, 1, 0, 0, tzinfo=UTC), 0),  # past the horizon
    ],
    ids=["before-index", "on-index", "window-end", "past-horizon"],
)
def test_a_label_follows_its_onset_date(
    tables: dict[str, pa.Table], truth: dict[str, dict[str, Any]], onset: dt.datetime, label: int | None
) -> None:
    # Given a hypertension-positive patient whose diagnosis is re-dated to `onset`
    patient = first_positive(truth, "hypertension")
    conditions = set_where(
        tables["clinical.condition"],
        label_rows_of(tables, patient, "hypertension"),
        onset_at=onset,
        recorded_at=onset + dt.timedelta(hours=1),
    )
    # When labels are computed
    row = by_patient(clinical_features({**tables, "clinical.condition": conditions}).labels)[patient]
    # Then the label follows the date and the onset column carries it
    assert row["hypertension"] == label
    assert row["hypertension_onset"] == onset.date()


def test_the_onset_falls_back_to_the_recorded_date(
    tables: dict[str, pa.Table], truth: dict[str, dict[str, Any]]
) -> None:
    # Given a stroke diagnosis without onset, recorded before the index date, and one recorded after it
    early, late = sorted(p for p, t in truth.items() if t["labels"]["stroke"]["label"] == 1)[:2]
    conditions = tables["clinical.condition"]
    conditions = set_where(
        conditions,
        label_rows_of(tables, early, "stroke"),
        onset_at=None,
        recorded_at=dt.datetime(2017, 5, 1, tzinfo=UTC),
    )
    conditions = set_where(
        conditions,
        label_rows_of(tables, late, "stroke"),
        onset_at=None,
        recorded_at=dt.datetime(2020, 5, 1, tzinfo=UTC),
    )
    # When labels are computed
    rows = by_patient(clinical_features({**tables, "clinical.condition": conditions}).labels)
    # Then the recorded dates are the onsets
    assert (rows[early]["stroke"], rows[early]["stroke_onset"]) == (None, dt.date(2017, 5, 1))
    assert (rows[late]["stroke"], rows[late]["stroke_onset"]) == (1, dt.date(2020, 5, 1))


@pytest.mark.parametrize(
    ("edit", "label"),
    [
        ({"verification_status": "refuted"}, 0),  # a refuted diagnosis is no outcome
        ({"verification_status": "entered-in-error"}, 0),
        ({"code_system": "http://snomed.info/sct/731000124108/version/20240301"}, 1),  # an edition URI
        ({"code_system": "urn:oid:2.16.840.1.113883.6.96"}, 1),  # SNOMED CT's OID
        ({"code_system": "http://hl7.org/fhir/sid/icd-10-cm"}, 0),  # the same digits in another system
        ({"onset_at": None, "recorded_at": None}, None),  # undated: incident or prevalent cannot be told
    ],
    ids=["refuted", "entered-in-error", "snomed-edition", "snomed-oid", "other-system", "undated"],
)
def test_which_records_define_a_label(
    tables: dict[str, pa.Table], truth: dict[str, dict[str, Any]], edit: dict[str, Any], label: int | None
) -> None:
    # Given an Alzheimer's-positive patient whose diagnosis record is edited
    patient = first_positive(truth, "alzheimers_disease")
    rows = label_rows_of(tables, patient, "alzheimers_disease")
    conditions = set_where(tables["clinical.condition"], rows, **edit)
    # When labels are computed
    row = by_patient(clinical_features({**tables, "clinical.condition": conditions}).labels)[patient]
    # Then the record defines the label, or does not
    assert row["alzheimers_disease"] == label


def test_a_death_before_the_index_date_makes_every_label_unknown(
    tables: dict[str, pa.Table], truth: dict[str, dict[str, Any]]
) -> None:
    # Given two patients, one who died before the index date and one who died after it
    died_before, died_after = sorted(truth)[:2]
    patients = tables["clinical.patient"]
    patients = set_where(patients, pc.equal(patients["patient_id"], died_before), deceased=True,
                         deceased_at=dt.datetime(2017, 6, 1, tzinfo=UTC))  # fmt: skip
    patients = set_where(patients, pc.equal(patients["patient_id"], died_after), deceased=True,
                         deceased_at=dt.datetime(2019, 6, 1, tzinfo=UTC))  # fmt: skip
    # When labels are computed
    rows = by_patient(clinical_features({**tables, "clinical.patient": patients}).labels)
    # Then the first is not at risk at the index date; the second keeps the generator's labels
    assert all(rows[died_before][o] is None for o in OUTCOMES)
    assert all(rows[died_after][o] == truth[died_after]["labels"][o]["label"] for o in OUTCOMES)


def test_a_shorter_horizon_turns_later_onsets_into_negatives(
    tables: dict[str, pa.Table], truth: dict[str, dict[str, Any]]
) -> None:
    # Given a 3-year horizon: the label window is 2018-01-01 .. 2020-12-31
    labels = clinical_features(tables, FeatureConfig(horizon_years=3)).labels
    # Then a label is 1 exactly for onsets inside the window
    for patient, row in by_patient(labels).items():
        for outcome in OUTCOMES:
            onset = truth[patient]["labels"][outcome]["onset"]
            assert row[outcome] == int(onset is not None and onset < "2021-01-01")


@pytest.mark.parametrize(
    "config",
    [FeatureConfig(), FeatureConfig(index_rule="first_encounter_plus"), FeatureConfig(horizon_years=2)],
    ids=["fixed", "first-encounter-plus", "fixed-horizon-2"],
)
def test_labels_equal_an_independent_sql_version_of_the_rule(
    tables: dict[str, pa.Table], config: FeatureConfig
) -> None:
    # Given the cohort with awkward records: refuted, without onset, undated, a death before the index date
    conditions = tables["clinical.condition"]
    codes = conditions["code_code"]
    conditions = set_where(
        conditions, pc.equal(codes, PRIMARY_CODES["stroke"]), verification_status="refuted"
    )
    conditions = set_where(conditions, pc.equal(codes, PRIMARY_CODES["alzheimers_disease"]), onset_at=None)
    undated = pc.and_(
        pc.equal(codes, PRIMARY_CODES["coronary_heart_disease"]), pc.less(conditions["patient_id"], "8")
    )
    conditions = set_where(conditions, undated, onset_at=None, recorded_at=None)
    patients = tables["clinical.patient"]
    patients = set_where(patients, pc.equal(patients["patient_id"], patients["patient_id"][0]),
                         deceased_at=dt.datetime(2016, 1, 1, tzinfo=UTC))  # fmt: skip
    edited = {**tables, "clinical.condition": conditions, "clinical.patient": patients}
    # When labels are computed by the module and by DuckDB SQL
    # Then they are identical
    assert clinical_features(edited, config).labels.equals(reference_labels(edited, config))


# ------------------------------------------------------------------------------- eligibility, value sets


def _eligible_patient(tables: dict[str, pa.Table]) -> str:
    """A patient with no outcome at all (labels 0 everywhere): a rule that breaks makes them null."""
    labels = by_patient(clinical_features(tables).labels)
    return sorted(p for p, row in labels.items() if all(row[o] == 0 for o in OUTCOMES))[0]


def _without_patient_rows(tables: dict[str, pa.Table], name: str, patient: str) -> dict[str, pa.Table]:
    table = tables[name]
    return {**tables, name: table.filter(pc.not_equal(table["patient_id"], patient))}


def test_a_patient_without_a_patient_resource_is_not_eligible(tables: dict[str, pa.Table]) -> None:
    patient = _eligible_patient(tables)
    edited = _without_patient_rows(tables, "clinical.patient", patient)
    row = by_patient(clinical_features(edited).labels)[patient]
    assert [row[o] for o in OUTCOMES] == [None] * len(OUTCOMES)
    assert row == by_patient(reference_labels(edited, FeatureConfig()))[patient]


def test_a_patient_born_after_the_index_date_is_not_eligible(tables: dict[str, pa.Table]) -> None:
    patient = _eligible_patient(tables)
    patients = tables["clinical.patient"]
    born = {**tables, "clinical.patient": set_where(
        patients, pc.equal(patients["patient_id"], patient), birth_date=dt.date(2019, 5, 1)
    )}  # fmt: skip
    row = by_patient(clinical_features(born).labels)[patient]
    assert [row[o] for o in OUTCOMES] == [None] * len(OUTCOMES)
    assert row == by_patient(reference_labels(born, FeatureConfig()))[patient]
    # and born on the index date itself is not "after" it
    on_index = {**tables, "clinical.patient": set_where(
        patients, pc.equal(patients["patient_id"], patient), birth_date=dt.date(2018, 1, 1)
    )}  # fmt: skip
    assert by_patient(clinical_features(on_index).labels)[patient]["hypertension"] == 0


def test_a_patient_without_any_record_before_the_index_date_is_not_eligible(
    tables: dict[str, pa.Table],
) -> None:
    # Given a patient whose every record is moved to 2019 (after the index date)
    patient = _eligible_patient(tables)
    late = dt.datetime(2019, 3, 1, tzinfo=UTC)
    edited = dict(tables)
    for name, table in tables.items():
        if name == "clinical.patient":
            continue
        mine = pc.equal(table["patient_id"], patient)
        dates = {f.name: late for f in table.schema if pa.types.is_timestamp(f.type)}
        edited[name] = set_where(table, mine, **dates)
    # Then they have no label; with one record before it they have theirs back
    row = by_patient(clinical_features(edited).labels)[patient]
    assert [row[o] for o in OUTCOMES] == [None] * len(OUTCOMES)
    assert row == by_patient(reference_labels(edited, FeatureConfig()))[patient]
    assert by_patient(clinical_features(tables).labels)[patient]["hypertension"] == 0


@pytest.mark.parametrize(
    ("system", "code", "outcome"),
    [
        ("http://hl7.org/fhir/sid/icd-10-cm", "I21.4", "coronary_heart_disease"),
        ("http://snomed.info/sct", "414545008", "coronary_heart_disease"),
        ("urn:oid:2.16.840.1.113883.6.90", "I63.9", "stroke"),
        ("http://hl7.org/fhir/sid/icd-10-cm", "G30.1", "alzheimers_disease"),
        ("http://hl7.org/fhir/sid/icd-10-cm", "I10", "hypertension"),
    ],
)
def test_an_outcome_coded_with_another_code_of_its_value_set_is_a_positive(
    tables: dict[str, pa.Table], system: str, code: str, outcome: str
) -> None:
    # Given an outcome-free patient, and a Condition for them in 2019 coded otherwise than the primary code
    patient = _eligible_patient(tables)
    conditions = tables["clinical.condition"]
    extra = conditions.slice(0, 1).to_pylist()[0] | {
        "resource_id": "value-set-case", "patient_id": patient, "code_system": system, "code_code": code,
        "verification_status": "confirmed", "onset_at": dt.datetime(2019, 6, 1, tzinfo=UTC), "recorded_at": None,
    }  # fmt: skip
    edited = {**tables, "clinical.condition": pa.concat_tables(
        [conditions, pa.Table.from_pylist([extra], schema=conditions.schema)]
    )}  # fmt: skip
    # Then the outcome is labelled 1, like the SQL reference, and the other outcomes stay 0
    row = by_patient(clinical_features(edited).labels)[patient]
    assert row[outcome] == 1
    assert [row[o] for o in OUTCOMES if o != outcome] == [0] * (len(OUTCOMES) - 1)
    assert row == by_patient(reference_labels(edited, FeatureConfig()))[patient]
    # And the same code in an unrelated code system defines nothing
    other = {**edited, "clinical.condition": set_where(
        edited["clinical.condition"], pc.equal(edited["clinical.condition"]["resource_id"], "value-set-case"),
        code_system="http://example.org/local-codes",
    )}  # fmt: skip
    assert by_patient(clinical_features(other).labels)[patient][outcome] == 0
