"""The training dataset snapshot: features of each modality joined with the labels, versioned in S3."""

from __future__ import annotations

import io
import json
from datetime import date
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq

from mmhealth import storage
from mmhealth.training import dataset
from tests.unit.training_pipeline.lake_rows import commit, labels

RUN_ID = "delivery-7-9f2c4e7a1b3d5f607182"


def test_every_labelled_patient_gets_a_row_with_nulls_for_the_modalities_it_lacks(
    aws: SimpleNamespace,
) -> None:
    # Given labels for three patients, clinical features for all, genomic for two, imaging for one
    commit("features.labels", labels())
    commit(
        "features.clinical",
        pa.table(
            {
                "patient_id": ["p1", "p2", "p3"],
                "index_date": [date(2018, 1, 1)] * 3,
                "age_at_index_years": [61.0, 70.0, 55.0],
            }
        ),
    )
    commit(
        "features.genomic",
        pa.table({"patient_id": ["p1", "p3"], "apoe_e4_dosage": pa.array([0, 2], pa.int8())}),
    )
    commit(
        "features.imaging",
        pa.table(
            {
                "patient_id": ["p3"],
                "index_date": [date(2018, 1, 1)],
                "series_uid": ["1.2.3"],
                "lesion_volume_ml": [1.5],
            }
        ),
    )

    # When the snapshot is built
    snapshot = dataset.build_snapshot(RUN_ID)

    # Then it has one row per labelled patient, columns prefixed by modality, identifiers left out
    assert snapshot is not None
    key = f"datasets/{snapshot.dataset_id}/"
    body = aws.s3.get_object(Bucket=aws.lake, Key=f"{key}dataset.parquet")["Body"].read()
    rows = pq.read_table(io.BytesIO(body))
    assert rows["patient_id"].to_pylist() == ["p1", "p2", "p3"]
    assert rows["genomic__apoe_e4_dosage"].to_pylist() == [0, None, 2]  # missing, not zero
    assert rows["imaging__lesion_volume_ml"].to_pylist() == [None, None, 1.5]
    assert "imaging__series_uid" not in rows.column_names
    assert "clinical__index_date" not in rows.column_names
    assert rows["hypertension"].to_pylist() == [False, None, True]
    # And the manifest counts patients per modality and the label prevalence among the eligible
    manifest = json.loads(aws.s3.get_object(Bucket=aws.lake, Key=f"{key}manifest.json")["Body"].read())
    assert manifest["patients_per_modality"] == {"clinical": 3, "genomic": 2, "imaging": 1}
    assert manifest["modalities"]["genomic"] == ["genomic__apoe_e4_dosage"]
    assert manifest["prevalence"]["hypertension"] == {"eligible": 2, "positives": 1, "prevalence": 0.5}
    assert manifest["outcomes"] == ["hypertension", "coronary_heart_disease", "stroke", "alzheimers_disease"]
    # And the patient views exist for every patient
    views = storage.read_json(aws.lake, f"{key}patients.json")
    assert [v["patient_id"] for v in views] == ["p1", "p2", "p3"]
    assert views[2]["radiomics"]["lesion"] == {"volume_ml": 1.5, "firstorder_mean": None}


def test_the_same_features_give_the_same_snapshot_id_and_a_change_a_new_one(aws: SimpleNamespace) -> None:
    commit("features.labels", labels())
    first = dataset.build_snapshot(RUN_ID)
    again = dataset.build_snapshot("another-run")
    commit("features.genomic", pa.table({"patient_id": ["p1"], "apoe_e4_dosage": pa.array([1], pa.int8())}))
    changed = dataset.build_snapshot("a-third-run")
    assert first is not None
    assert again is not None
    assert changed is not None
    assert first.dataset_id == again.dataset_id != changed.dataset_id


def test_no_labels_no_snapshot(aws: SimpleNamespace) -> None:
    assert dataset.build_snapshot(RUN_ID) is None


def test_a_modality_no_labelled_person_has_is_absent_not_a_column_of_nulls() -> None:
    # Given labels for two persons, and genomic features keyed by VCF sample ids nothing linked to them
    labels = pa.table({"patient_id": ["p1", "p2"], "hypertension": pa.array([1, 0], pa.int8())})
    clinical = pa.table({"patient_id": ["p1", "p2"], "age_at_index_years": [60.0, 70.0]})
    genomic = pa.table({"patient_id": ["SYNTH_OC_0001"], "pathogenic_burden": pa.array([2], pa.int32())})
    # When they are joined
    table, columns = dataset.join_features(labels, {"clinical": clinical, "genomic": genomic})
    # Then the genomic modality has no columns (so no genomic model is trained or reported), clinical has
    assert columns == {"clinical": ["clinical__age_at_index_years"], "genomic": []}
    assert table.column_names == ["patient_id", "hypertension", "clinical__age_at_index_years"]
