"""The training dataset snapshot: features of every modality joined with the labels, versioned in S3.

    snapshot = build_snapshot(run_id)          # reads features.*, writes s3://<lake>/datasets/<id>/

One row per patient with labels (`features.labels`): the four outcome columns (null = not eligible for that
outcome), then every feature column prefixed by its modality - `clinical__<name>`, `genomic__<name>`,
`imaging__<name>`. A patient without a modality's features has nulls in all of its columns (missing, never
zero: AutoGluon handles missing values, and a zero would claim a measurement). Identifiers and dates that
are not features (index_date, the imaging series uid) are left out.

The snapshot id is the sha256 of the joined table's content (Arrow IPC of the rows sorted by patient), so the
same lakehouse state gives the same id and a run whose features did not change trains nothing new. Files:
- `dataset.parquet`  the rows;
- `manifest.json`    id, run, created, rows, outcomes, columns per modality, patients per modality, label
                     prevalence (the training job and the report read it);
- `patients.json`    per patient, for the report's patient view: clinical timeline (conditions,
                     medications, encounters; dates and codes only), variants of note (ClinVar pathogenic or
                     likely pathogenic alleles carried) and region volumes from radiomics;
- `population.json`  the report's population and data-quality views (mmhealth.training.population): counts
                     and distributions only.
"""

from __future__ import annotations

import hashlib
import io
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel

from mmhealth import storage
from mmhealth.features.outcomes import OUTCOMES as OUTCOME_DEFINITIONS
from mmhealth.identity.resolve import from_links
from mmhealth.lakehouse import layout
from mmhealth.lakehouse.catalog import read_table
from mmhealth.observability import logger
from mmhealth.settings import settings
from mmhealth.training.featurize import label_prevalence
from mmhealth.training.patient_views import patient_views
from mmhealth.training.population import population

OUTCOMES = tuple(OUTCOME_DEFINITIONS)
MODALITY_TABLES = {
    "clinical": "features.clinical",
    "genomic": "features.genomic",
    "imaging": "features.imaging",
}
NOT_FEATURES = {"patient_id", "index_date", "series_uid", "run_id", "object_id", "source_key"}


class DatasetSnapshot(BaseModel):
    dataset_id: str
    uri: str  # s3://<lake>/datasets/<id>/
    run_id: str
    created_at: str
    rows: int
    patients_per_modality: dict[str, int]
    prevalence: dict[str, dict[str, float | int]]


def prefix(dataset_id: str) -> str:
    return layout.dataset_prefix(dataset_id)


def join_features(
    labels: pa.Table, features: dict[str, pa.Table | None]
) -> tuple[pa.Table, dict[str, list[str]]]:
    """labels (patient_id + outcomes) left-joined with each modality's features, columns prefixed."""
    table = labels.select(["patient_id", *[o for o in OUTCOMES if o in labels.column_names]])
    columns: dict[str, list[str]] = {}
    for modality, rows in features.items():
        if rows is None or not pc.sum(pc.is_in(table["patient_id"], rows["patient_id"])).as_py():
            # No labelled patient has this modality: it is absent, not a column of nulls.
            columns[modality] = []
            continue
        keep = [c for c in rows.column_names if c not in NOT_FEATURES]
        renamed = rows.select(["patient_id", *keep]).rename_columns(
            ["patient_id", *[f"{modality}__{c}" for c in keep]]
        )
        table = table.join(renamed, "patient_id", join_type="left outer")
        columns[modality] = [f"{modality}__{c}" for c in keep]
    return table.sort_by("patient_id"), columns


def content_id(table: pa.Table) -> str:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return hashlib.sha256(sink.getvalue()).hexdigest()[:24]


def patients_per_modality(table: pa.Table, columns: dict[str, list[str]]) -> dict[str, int]:
    """Patients with at least one non-null feature of each modality."""
    counts = {}
    for modality, names in columns.items():
        present = pa.array([False] * table.num_rows)
        for name in names:
            present = pc.or_(present, pc.is_valid(table[name]))
        counts[modality] = int(pc.sum(present).as_py() or 0) if names else 0
    return counts


def build_snapshot(run_id: str) -> DatasetSnapshot | None:
    """Join the feature tables into a snapshot in S3; None when there are no labels yet."""
    labels = read_table("features.labels")
    if labels is None or labels.num_rows == 0:
        return None
    features = {m: read_table(name) for m, name in MODALITY_TABLES.items()}
    table, columns = join_features(labels, features)
    dataset_id = content_id(table)
    lake = settings().lake_bucket
    created = datetime.now(UTC).isoformat()
    snapshot = DatasetSnapshot(
        dataset_id=dataset_id,
        uri=f"s3://{lake}/{prefix(dataset_id)}",
        run_id=run_id,
        created_at=created,
        rows=table.num_rows,
        patients_per_modality=patients_per_modality(table, columns),
        prevalence=label_prevalence(table),
    )
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    storage.client("s3").put_object(
        Bucket=lake, Key=f"{prefix(dataset_id)}dataset.parquet", Body=buffer.getvalue()
    )
    identity = from_links(read_table("identity.links"))
    manifest = {
        **snapshot.model_dump(),
        "outcomes": [o for o in OUTCOMES if o in table.column_names],
        "modalities": columns,
        "linkage": identity.summary(),
        "value_sets": {name: o.documentation for name, o in OUTCOME_DEFINITIONS.items()},
    }
    storage.write_json(lake, f"{prefix(dataset_id)}manifest.json", manifest)
    storage.write_json(
        lake,
        f"{prefix(dataset_id)}patients.json",
        patient_views(table["patient_id"].to_pylist(), identity, dataset_id),
    )
    storage.write_json(
        lake,
        f"{prefix(dataset_id)}population.json",
        population(manifest["outcomes"], snapshot.patients_per_modality, run_id),
    )
    logger.info(
        "dataset snapshot written",
        extra={"dataset_id": dataset_id, "rows": table.num_rows, **snapshot.patients_per_modality},
    )
    return snapshot
