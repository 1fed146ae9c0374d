"""The report's population and data-quality views: counts over the lakehouse, no identifiers."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from types import SimpleNamespace

import pyarrow as pa

from mmhealth import storage
from mmhealth.lakehouse.layout import RunPaths
from mmhealth.training import dataset, population
from tests.unit.training_pipeline.lake_rows import commit, labels


def at(day: str) -> datetime:
    return datetime.fromisoformat(day).replace(tzinfo=UTC)


def seed_lake() -> None:
    commit("features.labels", labels())  # p1, p2, p3; hypertension p3 yes, p1 no, p2 not eligible
    commit(
        "features.clinical",
        pa.table(
            {
                "patient_id": ["p1", "p2", "p3"],
                "index_date": [date(2018, 1, 1)] * 3,
                "age_at_index_years": [61.5, 69.9, 55.0],
                "sex": ["female", "female", "male"],
            }
        ),
    )
    commit(
        "clinical.encounter",
        pa.table(
            {
                "resource_id": ["e1", "e2", "e3"],
                "patient_id": ["p1", "p1", "p2"],
                "period_start": [at("2017-03-01"), at("2017-03-20"), at("2017-05-02")],
            }
        ),
    )
    commit(
        "clinical.condition",
        pa.table(
            {
                "resource_id": ["c1", "c2", "c3", "c4"],
                "patient_id": ["p1", "p1", "p2", "p3"],
                "code_code": ["44054006", "44054006", "44054006", "38341003"],
                "code_display": ["Diabetes", "Diabetes", "Diabetes", "Hypertension"],
            }
        ),
    )
    commit(
        "clinical.claim",
        pa.table(
            {
                "resource_id": ["k1", "k2"],
                "patient_id": ["p1", "p2"],
                "created_at": [at("2017-03-01"), at("2017-03-05")],
                "total_value": [100.0, 50.5],
            }
        ),
    )
    commit(
        "features.imaging",
        pa.table(
            {
                "patient_id": ["p1", "p3"],
                "index_date": [date(2018, 1, 1)] * 2,
                "series_uid": ["1.2", "1.3"],
                "lesion_volume_ml": [0.0, 4.5],
            }
        ),
    )
    commit(
        "ops.quarantine",
        pa.table(
            {"run_id": ["r"] * 3, "modality": ["imaging", "imaging", "clinical"], "key": ["a.dcm", "a.dcm", "p.ndjson"],
             "reason": ["dicom-missing-tag", "dicom-missing-tag", "fhir-invalid"]}
        ),
    )  # fmt: skip


def test_the_population_view_counts_patients_codes_and_months(aws: SimpleNamespace) -> None:
    seed_lake()

    view = population.population(["hypertension", "stroke"], {"clinical": 3, "genomic": 0, "imaging": 2})

    clinical = view["clinical"]
    assert clinical["age_sex"] == [
        {"band": "50-59", "sex": "male", "patients": 1},
        {"band": "60-69", "sex": "female", "patients": 2},
    ]
    assert clinical["encounters_by_month"] == [
        {"month": "2017-03", "count": 2},
        {"month": "2017-05", "count": 1},
    ]
    # distinct patients, not rows: p1's two diabetes conditions count once
    assert clinical["conditions"][0] == {"code": "44054006", "display": "Diabetes", "patients": 2}
    assert clinical["claims_by_month"] == [{"month": "2017-03", "claims": 2, "total": 150.5}]
    assert clinical["procedures"] == clinical["medications"] == []
    # imaging by outcome: only imaged, eligible patients, split by label (p3 positive, p1 negative)
    lesion = view["imaging"]["by_outcome"]["hypertension"]["lesion_volume_ml"]
    assert lesion == {"with": [4.5], "without": [0.0]}
    quality = view["quality"]
    assert quality["quarantined"] == [
        {"modality": "clinical", "reason": "fhir-invalid", "records": 1, "files": 1},
        {
            "modality": "imaging",
            "reason": "dicom-missing-tag",
            "records": 2,
            "files": 1,
        },  # one file, two lines
    ]
    assert quality["files"] == {"clinical": 1}  # the seeded rows all carry the filler object id
    assert quality["rows"]["clinical.condition"] == 4
    assert quality["patients_per_modality"] == {"clinical": 3, "genomic": 0, "imaging": 2}
    # counts only: no identifier of a person anywhere in the document
    text = json.dumps(view)
    assert not any(p in text for p in ('"p1"', '"p2"', '"p3"'))


def test_the_snapshot_carries_the_population_view(aws: SimpleNamespace) -> None:
    seed_lake()

    snapshot = dataset.build_snapshot("run-population")

    assert snapshot is not None
    document = storage.read_json(aws.lake, f"datasets/{snapshot.dataset_id}/population.json")
    assert set(document) == {"clinical", "genomic", "imaging", "quality"}


def test_clinvar_significance_spellings_fall_into_four_classes() -> None:
    assert population.significance_class("Pathogenic/Likely pathogenic") == "pathogenic / likely pathogenic"
    assert population.significance_class("Likely_benign") == "benign / likely benign"
    assert (
        population.significance_class("Conflicting_classifications_of_pathogenicity")
        == "uncertain / conflicting"
    )
    assert population.significance_class(None) == "not provided"


def test_the_runs_own_quarantine_records_count_before_finalize_commits_them(aws: SimpleNamespace) -> None:
    seed_lake()  # ops.quarantine holds run "r"'s three records
    record = {
        "run_id": "run-now", "object_id": "o1", "bucket": "landing", "key": "x.dcm", "etag": "e",
        "modality": "imaging", "stage": "import", "reason": "dicom-unsupported-transfer-syntax",
        "detail": "JPEG 2000", "recorded_at": "2026-12-05T00:00:00Z",
    }  # fmt: skip
    storage.write_json(aws.lake, RunPaths("run-now").quarantine("import", "o1"), record)

    quarantined = population.quality_view({}, "run-now")["quarantined"]

    assert {
        "modality": "imaging",
        "reason": "dicom-unsupported-transfer-syntax",
        "records": 1,
        "files": 1,
    } in quarantined
    assert sum(q["records"] for q in quarantined) == 4
