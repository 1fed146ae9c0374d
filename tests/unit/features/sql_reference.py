"""An independent DuckDB SQL version of the clinical feature and label rules, to hold the module to.

The module under test computes with pyarrow + numpy (DuckDB does not fit in the Lambda package); this file
states the same rules as SQL over the same Arrow tables. It shares only the code lists (which codes and units
mean what), never the computation, so a bug in either shows up as a difference.
"""

from __future__ import annotations

from collections.abc import Mapping

import duckdb
import pyarrow as pa

from mmhealth.features.clinical import (
    COMORBIDITIES,
    EMERGENCY_CLASSES,
    FEATURES_CLINICAL,
    FEATURES_LABELS,
    INPATIENT_CLASSES,
    MEASUREMENTS,
    MEDICATION_CLASSES,
    SMOKING_STATUS,
    SMOKING_STATUS_LOINC,
    FeatureConfig,
)
from mmhealth.features.outcomes import ALL_ICD10CM, ALL_SNOMED, OUTCOMES
from mmhealth.lakehouse.clinical_tables import CLINICAL_TABLES

TABLES = (
    "patient",
    "encounter",
    "condition",
    "observation",
    "medication_request",
    "procedure",
    "immunization",
)


def _list(values: tuple[str, ...] | list[str]) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


LABEL_SNOMED = _list(sorted(ALL_SNOMED))
# Written out independently of outcomes.in_icd_categories: the code without dots starts with a category.
ICD_CATEGORIES = "regexp_matches(upper(replace(trim({c}), '.', '')), '^(" + "|".join(ALL_ICD10CM) + ")')"
LABELS_SQL = f"(trim({{c}}) IN ({LABEL_SNOMED}) OR {ICD_CATEGORIES})"
ICD10CM = "(lower({c}) LIKE '%icd-10-cm%' OR lower({c}) IN ('urn:oid:2.16.840.1.113883.6.90', 'icd10cm', 'icd-10cm'))"
SNOMED = "(lower({c}) LIKE '%snomed.info/sct%' OR lower({c}) IN ('urn:oid:2.16.840.1.113883.6.96', 'sct', "
SNOMED += "'snomed', 'snomedct', 'snomed ct', 'snomed-ct'))"
LOINC = "({c} IS NULL OR lower({c}) LIKE '%loinc.org%' OR lower({c}) IN ('urn:oid:2.16.840.1.113883.6.1', 'loinc'))"
RXNORM = "({c} IS NULL OR lower({c}) LIKE '%rxnorm%' OR lower({c}) IN ('urn:oid:2.16.840.1.113883.6.88', 'rxnorm'))"


def _units() -> pa.Table:
    """(LOINC code, lower-cased unit) -> measurement and conversion; '' is a row without a unit."""
    rows: list[tuple[str, str, str, float, float]] = []
    for spec in MEASUREMENTS:
        for code in spec.loinc:
            rows += [(code, unit.lower(), spec.name, 1.0, 0.0) for unit in (*spec.units, "")]
            rows += [
                (code, unit.lower(), spec.name, scale, offset) for unit, scale, offset in spec.conversions
            ]
    names = ("code", "unit", "measure", "scale", "shift")
    return pa.table({name: [row[i] for row in rows] for i, name in enumerate(names)})


def _index_sql(config: FeatureConfig) -> str:
    if config.index_rule == "fixed":
        return f"SELECT patient_id, DATE '{config.index_date.isoformat()}' AS index_date FROM patients"
    return f"""
        SELECT p.patient_id,
               CAST(f.first_day + INTERVAL {config.years_after_first_encounter} YEAR AS DATE) AS index_date
        FROM patients p LEFT JOIN (
            SELECT patient_id, min(CAST(coalesce(period_start, period_end) AS DATE)) AS first_day
            FROM enc WHERE lower(coalesce(status, '')) NOT IN ('cancelled', 'entered-in-error')
            GROUP BY patient_id
        ) f USING (patient_id)"""


def _setup(con: duckdb.DuckDBPyConnection, tables: Mapping[str, pa.Table], config: FeatureConfig) -> None:
    con.sql("SET TimeZone = 'UTC'")
    for name in TABLES:
        table = tables.get(f"clinical.{name}")
        con.register(
            f"raw_{name}", table if table is not None else CLINICAL_TABLES[f"clinical.{name}"].empty_table()
        )
    con.register("units", _units())
    # Features never see label-defining records: conditions coded, encounters motivated, by a label code.
    con.sql(f"""
        CREATE TEMP TABLE cond AS
        SELECT * FROM raw_condition WHERE NOT {LABELS_SQL.format(c="code_code")} OR code_code IS NULL""")
    con.sql(f"""
        CREATE TEMP TABLE enc AS
        SELECT * FROM raw_encounter WHERE NOT {LABELS_SQL.format(c="reason_code")} OR reason_code IS NULL""")
    others = " UNION ".join(
        f"SELECT patient_id FROM raw_{n}" for n in TABLES if n not in ("condition", "encounter")
    )
    con.sql(f"""
        CREATE TEMP TABLE patients AS
        SELECT DISTINCT patient_id FROM (SELECT patient_id FROM cond UNION SELECT patient_id FROM enc UNION {others})
        WHERE patient_id IS NOT NULL""")
    con.sql(f"CREATE TEMP TABLE cohort AS {_index_sql(config)}")


def reference_features(tables: Mapping[str, pa.Table], config: FeatureConfig) -> pa.Table:
    """features.clinical by SQL, rows in patient_id order, cast to FEATURES_CLINICAL."""
    con = duckdb.connect()
    _setup(con, tables, config)
    con.sql(f"""
        CREATE TEMP TABLE obs AS
        SELECT o.patient_id, u.measure, o.value_quantity * u.scale + u.shift AS value, o.resource_id,
               coalesce(o.effective_at, o.issued_at) AS event_at,
               (epoch_us(coalesce(o.effective_at, o.issued_at)) / 86400e6
                - date_diff('day', DATE '1970-01-01', c.index_date)) / 365.25 AS t_years
        FROM raw_observation o
        JOIN units u ON u.code = trim(o.code_code) AND u.unit = lower(coalesce(o.value_unit, ''))
        JOIN cohort c USING (patient_id)
        WHERE lower(coalesce(o.status, '')) NOT IN ('cancelled', 'entered-in-error')
          AND {LOINC.format(c="o.code_system")}
          AND isfinite(o.value_quantity)
          AND CAST(greatest(o.effective_at, o.issued_at) AS DATE) < c.index_date
        -- identical measurements (patient, measurement, instant, value) count once
        QUALIFY row_number() OVER (PARTITION BY o.patient_id, u.measure, event_at, value ORDER BY o.resource_id) = 1""")
    con.sql("""
        CREATE TEMP TABLE measure_stats AS
        SELECT patient_id, measure,
               arg_max(value, (event_at, resource_id)) AS latest, avg(value) AS mean, count(*) AS n,
               CASE WHEN count(*) >= 3 AND max(t_years) - min(t_years) >= 1.0
                    THEN regr_slope(value, t_years) END AS trend
        FROM obs GROUP BY patient_id, measure""")
    pivot = []
    for spec in MEASUREMENTS:
        where = f"FILTER (WHERE measure = '{spec.name}')"
        pivot += [
            f"max(latest) {where} AS {spec.name}_latest",
            f"max(mean) {where} AS {spec.name}_mean",
            f"coalesce(max(n) {where}, 0) AS {spec.name}_count",
        ]
        if spec.trend:
            pivot.append(f"max(trend) {where} AS {spec.name}_trend_per_year")
    smoking_case = " ".join(f"WHEN '{code}' THEN '{status}'" for code, status in SMOKING_STATUS.items())
    comorbid = [
        f"coalesce(max(CASE WHEN trim(code_code) IN ({_list(g.codes)}) AND (code_system IS NULL OR "
        f"{SNOMED.format(c='code_system')}) THEN 1 ELSE 0 END), 0) AS {g.name}"
        for g in COMORBIDITIES
    ]
    medication = [
        f"coalesce(max(CASE WHEN (trim(medication_code) IN ({_list(g.codes)}) AND "
        f"{RXNORM.format(c='medication_system')}) OR regexp_matches(lower(medication_display), "
        f"'{'|'.join(g.ingredients)}') THEN 1 ELSE 0 END), 0) AS {g.name}"
        for g in MEDICATION_CLASSES
    ]
    result = con.sql(f"""
        WITH
        demographics AS (
            SELECT c.patient_id, round(date_diff('day', p.birth_date, c.index_date) / 365.25, 2) AS age_at_index_years,
                   p.gender AS sex
            FROM cohort c LEFT JOIN raw_patient p USING (patient_id)
        ),
        measurements AS (SELECT patient_id, {", ".join(pivot)} FROM measure_stats GROUP BY patient_id),
        smoking AS (
            SELECT o.patient_id,
                   arg_max(CASE trim(o.value_concept_code) {smoking_case} ELSE 'unknown' END,
                           (coalesce(o.effective_at, o.issued_at), o.resource_id)) AS smoking_status
            FROM raw_observation o JOIN cohort c USING (patient_id)
            WHERE trim(o.code_code) = '{SMOKING_STATUS_LOINC}' AND o.value_concept_code IS NOT NULL
              AND lower(coalesce(o.status, '')) NOT IN ('cancelled', 'entered-in-error')
              AND {LOINC.format(c="o.code_system")}
              AND CAST(greatest(o.effective_at, o.issued_at) AS DATE) < c.index_date
            GROUP BY o.patient_id
        ),
        conditions AS (
            SELECT x.patient_id, count(*) AS condition_count, {", ".join(comorbid)}
            FROM cond x JOIN cohort c USING (patient_id)
            WHERE lower(coalesce(x.verification_status, '')) NOT IN ('refuted', 'entered-in-error')
              AND CAST(greatest(x.onset_at, x.recorded_at) AS DATE) < c.index_date
            GROUP BY x.patient_id
        ),
        medications AS (
            SELECT m.patient_id, count(*) AS medication_request_count, {", ".join(medication)}
            FROM raw_medication_request m JOIN cohort c USING (patient_id)
            WHERE lower(coalesce(m.status, '')) NOT IN ('cancelled', 'entered-in-error')
              AND CAST(m.authored_at AS DATE) < c.index_date
            GROUP BY m.patient_id
        ),
        encounters AS (
            SELECT e.patient_id, count(*) AS encounter_count,
                   count(*) FILTER (WHERE upper(e.class_code) IN ({_list(INPATIENT_CLASSES)}))
                     AS inpatient_encounter_count,
                   count(*) FILTER (WHERE upper(e.class_code) IN ({_list(EMERGENCY_CLASSES)}))
                     AS emergency_encounter_count,
                   round(date_diff('day', min(CAST(coalesce(e.period_start, e.period_end) AS DATE)),
                                   any_value(c.index_date)) / 365.25, 3) AS years_since_first_encounter
            FROM enc e JOIN cohort c USING (patient_id)
            WHERE lower(coalesce(e.status, '')) NOT IN ('cancelled', 'entered-in-error')
              AND CAST(greatest(e.period_start, e.period_end) AS DATE) < c.index_date
            GROUP BY e.patient_id
        ),
        procedures AS (
            SELECT x.patient_id, count(*) AS procedure_count
            FROM raw_procedure x JOIN cohort c USING (patient_id)
            WHERE lower(coalesce(x.status, '')) NOT IN ('not-done', 'entered-in-error')
              AND CAST(greatest(x.performed_start, x.performed_end) AS DATE) < c.index_date
            GROUP BY x.patient_id
        ),
        immunizations AS (
            SELECT x.patient_id, count(*) AS immunization_count
            FROM raw_immunization x JOIN cohort c USING (patient_id)
            WHERE lower(coalesce(x.status, '')) NOT IN ('not-done', 'entered-in-error')
              AND CAST(x.occurrence_at AS DATE) < c.index_date
            GROUP BY x.patient_id
        )
        SELECT *
        FROM cohort
        LEFT JOIN demographics USING (patient_id) LEFT JOIN measurements USING (patient_id)
        LEFT JOIN smoking USING (patient_id) LEFT JOIN conditions USING (patient_id)
        LEFT JOIN medications USING (patient_id) LEFT JOIN encounters USING (patient_id)
        LEFT JOIN procedures USING (patient_id) LEFT JOIN immunizations USING (patient_id)
        ORDER BY patient_id""").to_arrow_table()
    zero_filled = [
        f.name for f in FEATURES_CLINICAL if pa.types.is_integer(f.type) and f.name != "patient_id"
    ]
    columns = {f.name: result[f.name] for f in FEATURES_CLINICAL}
    for name in zero_filled:
        columns[name] = columns[name].fill_null(0)
    return pa.table(columns).cast(FEATURES_CLINICAL)


def reference_labels(tables: Mapping[str, pa.Table], config: FeatureConfig) -> pa.Table:
    """features.labels by SQL (the incident design), rows in patient_id order, cast to FEATURES_LABELS."""
    con = duckdb.connect()
    _setup(con, tables, config)
    per_outcome = []
    for name, outcome in OUTCOMES.items():
        snomed = f"{SNOMED.format(c='code_system')} AND trim(code_code) IN ({_list(outcome.snomed)})"
        icd = "false"
        if outcome.icd10cm:
            categories = "|".join(outcome.icd10cm)
            icd = (
                f"{ICD10CM.format(c='code_system')} AND "
                f"regexp_matches(upper(replace(trim(code_code), '.', '')), '^({categories})')"
            )
        member = f"(({snomed}) OR ({icd}))"
        onset = f"min(CAST(coalesce(onset_at, recorded_at) AS DATE)) FILTER (WHERE {member})"
        undated = f"bool_or(onset_at IS NULL AND recorded_at IS NULL) FILTER (WHERE {member})"
        per_outcome.append(f"{onset} AS {name}_onset, coalesce({undated}, false) AS {name}_undated")
    labels = []
    for outcome in OUTCOMES:
        labels.append(f"""
            CASE WHEN c.index_date IS NULL OR e.patient_id IS NULL OR coalesce({outcome}_undated, false)
                      OR coalesce({outcome}_onset < c.index_date, false) THEN NULL
                 WHEN {outcome}_onset < CAST(c.index_date + INTERVAL {config.horizon_years} YEAR AS DATE) THEN 1
                 ELSE 0 END AS {outcome}, {outcome}_onset""")
    # A record "before the index date": its first dated day is before it (void rows and label rows excluded).
    records = " UNION ALL ".join(
        f"SELECT patient_id, CAST(coalesce({', '.join(dates)}) AS DATE) AS day FROM {source} "
        f"WHERE lower(coalesce({status}, '')) NOT IN ({_list(void)})"
        for source, dates, status, void in (
            ("enc", ("period_start", "period_end"), "status", ("cancelled", "entered-in-error")),
            ("cond", ("onset_at", "recorded_at"), "verification_status", ("refuted", "entered-in-error")),
            ("raw_observation", ("effective_at", "issued_at"), "status", ("cancelled", "entered-in-error")),
            ("raw_medication_request", ("authored_at",), "status", ("cancelled", "entered-in-error")),
            (
                "raw_procedure",
                ("performed_start", "performed_end"),
                "status",
                ("not-done", "entered-in-error"),
            ),
            ("raw_immunization", ("occurrence_at",), "status", ("not-done", "entered-in-error")),
        )
    )
    result = con.sql(f"""
        WITH onsets AS (
            SELECT patient_id, {", ".join(per_outcome)}
            FROM raw_condition
            WHERE lower(coalesce(verification_status, '')) NOT IN ('refuted', 'entered-in-error')
            GROUP BY patient_id
        ),
        eligible AS (  -- a Patient resource, born on or before the index, alive at it, a record before it
            SELECT c.patient_id FROM cohort c
            WHERE c.patient_id IN (SELECT patient_id FROM raw_patient)
              AND NOT coalesce((SELECT bool_or(p.birth_date > c.index_date) FROM raw_patient p
                                WHERE p.patient_id = c.patient_id), false)
              AND NOT coalesce((SELECT bool_or(CAST(p.deceased_at AS DATE) < c.index_date) FROM raw_patient p
                                WHERE p.patient_id = c.patient_id), false)
              AND EXISTS (SELECT 1 FROM ({records}) r WHERE r.patient_id = c.patient_id AND r.day < c.index_date)
        )
        SELECT c.patient_id, c.index_date, {", ".join(labels)}
        FROM cohort c
        LEFT JOIN onsets o USING (patient_id)
        LEFT JOIN eligible e USING (patient_id)
        ORDER BY c.patient_id""").to_arrow_table()
    return pa.table({f.name: result[f.name] for f in FEATURES_LABELS}).cast(FEATURES_LABELS)
