"""Every S3 key of the lake bucket, built here and nowhere else.

runs/<run_id>/manifest.json                 the run manifest (Prepare, once the wave closed)
runs/<run_id>/chunks/<modality>-<n>.json    one chunk of files (Prepare)
runs/<run_id>/quarantine/<stage>-<object_id>-<n>.json   one quarantine record each
runs/<run_id>/superseded/<object_id>.json   a delivered version overwritten before it was read
runs/<run_id>/summary.json                  counts for on-call and the CLI (finalize)
staging/<run_id>/<modality>/<table>/part-<chunk_id>.parquet    import output, committed by catalog
healthlake/<run_id>/<chunk_id>/             HealthLake import input, origins and output
healthimaging/<run_id>/<chunk_id>/          HealthImaging import input and output
imaging/pending/<series_uid>.json           inconsistent series waiting to be stable
radiomics/<run_id>/                         the radiomics job's input manifest and output
datasets/<dataset_id>/                      a training dataset snapshot; trained.json once a model exists
training/<run_id>/                          a training job's output
warehouse/<namespace>/<table>/              Iceberg tables (pyiceberg + Glue)
"""

from __future__ import annotations

from mmhealth.contracts import Modality, Stage

IMAGING_PENDING = "imaging/pending/"


def warehouse(bucket: str) -> str:
    return f"s3://{bucket}/warehouse"


def table_location(bucket: str, name: str) -> str:
    """Where the Iceberg table "<namespace>.<table>" keeps its data and metadata."""
    return f"{warehouse(bucket)}/{name.replace('.', '/')}"


def healthlake_prefix(run_id: str, chunk_id: str) -> str:
    return f"healthlake/{run_id}/{chunk_id}/"


def healthimaging_prefix(run_id: str, chunk_id: str = "") -> str:
    return f"healthimaging/{run_id}/{chunk_id}/" if chunk_id else f"healthimaging/{run_id}/"


def radiomics_prefix(run_id: str) -> str:
    return f"radiomics/{run_id}/"


def dataset_prefix(dataset_id: str) -> str:
    return f"datasets/{dataset_id}/"


def training_prefix(run_id: str) -> str:
    return f"training/{run_id}/"


def scoring_prefix(run_id: str) -> str:
    """The scoring job's output of a run: predictions.parquet, scoring.json."""
    return f"scoring/{run_id}/"


def scored_marker(dataset_id: str, model_id: str) -> str:
    """Written once a snapshot's predictions by a model are committed: a later run skips that pair."""
    return f"{dataset_prefix(dataset_id)}scored/{model_id}.json"


class RunPaths:
    """Keys in the lake bucket for one run (see the module docstring)."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id

    @property
    def manifest(self) -> str:
        return f"runs/{self.run_id}/manifest.json"

    @property
    def summary(self) -> str:
        return f"runs/{self.run_id}/summary.json"

    def chunk(self, modality: Modality, index: int) -> str:
        return f"runs/{self.run_id}/chunks/{modality}-{index:04d}.json"

    @property
    def quarantine_prefix(self) -> str:
        return f"runs/{self.run_id}/quarantine/"

    def quarantine(self, stage: Stage, object_id: str, n: int = 0) -> str:
        return f"{self.quarantine_prefix}{stage}-{object_id}-{n:04d}.json"

    @property
    def superseded_prefix(self) -> str:
        return f"runs/{self.run_id}/superseded/"

    def superseded(self, object_id: str) -> str:
        return f"{self.superseded_prefix}{object_id}.json"

    def staging_prefix(self, modality: Modality, table: str = "") -> str:
        base = f"staging/{self.run_id}/{modality}/"
        return f"{base}{table}/" if table else base

    def staged_part(self, modality: Modality, table: str, chunk_id: str) -> str:
        return f"{self.staging_prefix(modality, table)}part-{chunk_id}.parquet"
