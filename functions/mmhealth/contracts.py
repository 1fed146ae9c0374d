"""Typed contracts between the trigger, the state machine and the handlers.

Everything that crosses a Lambda or state boundary is one of these models. The state machine only moves
small references (chunk keys, counts); file lists live in S3 next to the run manifest, so the execution
payload stays far below the 256 KiB Step Functions limit whatever the size of a delivery.

The S3 layout of the lake bucket (every key) is mmhealth.lakehouse.layout.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mmhealth.naming import LOOSE_DELIVERY

Modality = Literal["genomic", "clinical", "imaging"]
MODALITIES: tuple[Modality, ...] = ("genomic", "clinical", "imaging")

# What the trigger decides a file is. "annotation" (a ClinVar-style VCF) travels with the genomic modality,
# "linkage" (a CSV that links VCF samples, DICOM PatientIDs and identifiers to patients) with the clinical one.
# "marker" is a delivery's completion marker (mmhealth.waves): recorded, never imported.
FileKind = Literal["genomic", "annotation", "clinical", "linkage", "imaging", "unknown", "marker"]
KIND_TO_MODALITY: dict[str, Modality] = {
    "genomic": "genomic",
    "annotation": "genomic",
    "clinical": "clinical",
    "linkage": "clinical",
    "imaging": "imaging",
}

Stage = Literal["classify", "import", "poll", "catalog"]


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class S3Object(_Model):
    """One delivered object, identified by bucket + key + etag (a re-upload with new bytes is new)."""

    bucket: str
    key: str
    etag: str
    size: int = 0
    version_id: str | None = None
    # When S3 says the object was created (the event's eventTime, ISO 8601) and the event's sequencer (orders
    # the events of one key): together the delivery order of the version rule (mmhealth.lakehouse.versions).
    delivered_at: str | None = None
    sequencer: str | None = None

    @property
    def object_id(self) -> str:
        """Stable 16-hex id of bucket+key+etag: the dedupe key and the name of staged parts."""
        digest = hashlib.sha256(f"{self.bucket}/{self.key}#{self.etag}".encode()).hexdigest()
        return digest[:16]

    @property
    def delivery(self) -> str:
        """The delivery folder: `incoming/<delivery>/...` -> `<delivery>`; objects not in one belong to the
        delivery `loose` (mmhealth.naming)."""
        parts = self.key.split("/")
        return parts[1] if len(parts) > 2 and parts[0] == "incoming" and parts[1] else LOOSE_DELIVERY


class ManifestFile(_Model):
    """A classified object of a run."""

    object: S3Object
    kind: FileKind
    reason: str | None = Field(default=None, description="why the file is 'unknown' (quarantined)")


class ChunkRef(_Model):
    """What a Map iteration receives: where the chunk's file list is, never the list itself."""

    run_id: str
    modality: Modality
    chunk_id: str
    key: str  # lake-bucket key of the Chunk JSON
    files: int


class Chunk(_Model):
    chunk_id: str
    modality: Modality
    files: list[ManifestFile]


class RunManifest(_Model):
    """A wave's files, frozen by Prepare once the wave closed. `run_id` is also the execution name."""

    run_id: str
    created_at: str
    landing_bucket: str
    lake_bucket: str
    deliveries: list[str]
    wave: int = 1
    chunks: list[ChunkRef]
    unknown: list[ManifestFile] = Field(default_factory=list)
    markers: list[str] = Field(default_factory=list)  # completion markers' keys (recorded, not imported)


class RunConfig(_Model):
    """Per-run settings resolved by Prepare: defaults <- Lambda environment <- execution input."""

    poll_seconds: int = Field(default=30, ge=0, le=3600)
    # A delivery without a completion marker is complete once no object arrived for this long (mmhealth.waves).
    delivery_quiet_seconds: int = Field(default=120, ge=0, le=86400)
    # ... unless objects of its landing folder are not recorded yet (their events are on the way); after this
    # long without a newly recorded object the run goes on without them (the DLQ) and reports them.
    delivery_stall_seconds: int = Field(default=1800, ge=0, le=7 * 86400)
    poll_backoff_rate: float = Field(default=1.5, ge=1.0, le=4.0)
    poll_max_seconds: int = Field(default=600, ge=0, le=3600)
    poll_max_attempts: int = Field(default=40, ge=1, le=500)
    map_concurrency: int = Field(default=8, ge=1, le=40)
    genomic_backend: Literal["lakehouse", "healthomics"] = "lakehouse"
    clinical_backend: Literal["lakehouse", "healthlake"] = "lakehouse"
    imaging_backend: Literal["lakehouse", "healthimaging"] = "lakehouse"
    radiomics: bool = True  # run the radiomics job after the imaging catalog step
    # An inconsistent DICOM series is quarantined only once no instance of it has arrived for this long.
    series_stable_seconds: int = Field(default=900, ge=0, le=7 * 86400)
    # Training (AutoGluon, a SageMaker training job) after the features step, on the run's own dataset
    # snapshot, unless a model of that snapshot exists already.
    training: bool = True
    training_time_limit: int = Field(default=120, ge=5, le=24 * 3600)  # seconds per predictor
    training_presets: str = "medium_quality"
    training_hyperparameters: str | None = None  # AutoGluon hyperparameters (JSON); None = the presets'
    training_seed: int = 42
    training_test_size: float = Field(default=0.3, gt=0.05, lt=0.9)
    training_bootstrap: int = Field(default=1000, ge=50, le=10000)
    # None: the training job's own defaults (20 label-shuffle permutations, 5 bagging folds); small runs
    # and tests ask for fewer.
    training_permutations: int | None = Field(default=None, ge=1, le=1000)
    training_oof_folds: int | None = Field(default=None, ge=2, le=20)


class JobHandle(_Model):
    """An asynchronous import started on an operational backend (polled, never `.sync`)."""

    backend: str
    job_id: str


class TableCommit(_Model):
    """What a catalog step did to one Iceberg table."""

    table: str  # "<namespace>.<table>"
    rows_added: int
    rows_removed: int = 0
    snapshot_id: int | None = None
    skipped: bool = False  # True when this run had already been committed (idempotent replay)
    superseded: int = 0  # versions that lost to a newer one (lakehouse.versions), recorded in ops.superseded


class CatalogResult(_Model):
    run_id: str
    modality: Modality
    commits: list[TableCommit]
    quarantined: int
    pending: int = 0  # imaging: inconsistent series not yet stable (judged again by a later run)


class PolledJob(_Model):
    """What every Wait -> Poll -> Choice loop carries: the job, the attempt count and the next wait."""

    status: Literal["COMPLETED", "IN_PROGRESS", "FAILED"]
    job: JobHandle | None = None
    attempt: int = 0
    wait_seconds: int = 0
    config: RunConfig = Field(default_factory=RunConfig)

    @property
    def subject(self) -> str:
        """What the job is for, in an error message."""
        return "backend job"


class ChunkStatus(PolledJob):
    """Output of Import and of every Poll; input of the next Poll. The Choice state reads `status`.

    It carries the chunk reference and the run config, so a Poll (or the failure recorder reached from a
    Catch) has everything it needs from its own input.
    """

    chunk: ChunkRef
    parts: int = 0
    rows: int = 0
    quarantined: int = 0

    @property
    def subject(self) -> str:
        return self.chunk.chunk_id


class RadiomicsRun(PolledJob):
    """The radiomics job of a run's imaging branch: output of RadiomicsStart and of every RadiomicsPoll.

    `catalog` is the imaging catalog step's result, carried through the loop so the branch ends with one
    result for the whole modality. No job (status COMPLETED) when the run has no series to process.
    """

    run_id: str
    catalog: CatalogResult
    series: int = 0
    output_uri: str | None = None  # s3://<lake>/radiomics/<run>/output/

    @property
    def subject(self) -> str:
        return f"radiomics of run {self.run_id}"


class TrainingRun(PolledJob):
    """The training job of a run: output of StartTraining and of every PollTraining, then CatalogTraining.

    No job (status COMPLETED, `skipped` says why) when training is off, there is no dataset, a newer run
    has superseded this one's dataset, or the model of this dataset exists already.
    """

    run_id: str
    dataset_id: str | None = None
    dataset_uri: str | None = None
    skipped: str | None = None
    output_uri: str | None = None  # s3://<lake>/training/<run>/ (SageMaker adds <job>/output/...)
    model_uri: str | None = None  # model.tar.gz: the predictors + model_card.json
    report_uri: str | None = None  # report.html
    metrics_uri: str | None = None  # metrics.json
    headline: dict[str, dict[str, float | None]] = Field(default_factory=dict)  # outcome -> auc, f1 (all)

    @property
    def subject(self) -> str:
        return f"training of run {self.run_id}"


class ScoringRun(PolledJob):
    """The scoring job of a run: output of StartScoring and of every PollScoring, then CatalogScoring.

    No job (status COMPLETED, `skipped` says why) when the run has no dataset snapshot, no model exists yet,
    or this snapshot was scored with this model already.
    """

    run_id: str
    model_id: str | None = None  # the training job that made the model
    model_uri: str | None = None  # its model.tar.gz
    dataset_id: str | None = None
    dataset_uri: str | None = None
    output_uri: str | None = None  # s3://<lake>/scoring/<run>/: predictions.parquet, scoring.json
    skipped: str | None = None
    rows: int = 0  # features.predictions rows committed
    outcomes: dict[str, Any] = Field(default_factory=dict)  # outcome -> patients, decided positive, threshold
    endpoint: str | None = None  # the real-time endpoint: created | updating | serving | busy (None: off)

    @property
    def subject(self) -> str:
        return f"scoring of run {self.run_id}"


class QuarantineRecord(_Model):
    """One rejected file (or line of a file): the row shape of `ops.quarantine`."""

    run_id: str
    object_id: str
    bucket: str
    key: str
    etag: str
    modality: str  # a Modality, or "unknown"
    stage: Stage
    reason: str
    detail: str
    line: int | None = None
    recorded_at: str = Field(default_factory=utc_now)
