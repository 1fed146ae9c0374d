"""Arrow schemas of the lakehouse tables, keyed by "<namespace>.<table>".

Importers produce exactly these schemas (the staged Parquet parts), catalog steps create the Iceberg
tables from them; a column added here is added to the table on the next commit (schema evolution).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True)
class Lineage:
    """The LINEAGE column values of one file's rows: where they came from and which run wrote them, and
    (versioned tables) when S3 created the delivered object, in microseconds since the epoch."""

    source_key: str
    object_id: str
    run_id: str
    delivered_at: int | None = None

    def columns(self, rows: int) -> list[pa.Array]:
        """The three LINEAGE columns for `rows` rows, in schema order."""
        return [
            pa.repeat(pa.scalar(v, pa.string()), rows) for v in (self.source_key, self.object_id, self.run_id)
        ]

    def versioned_columns(self, rows: int) -> list[pa.Array]:
        """The VERSIONED_LINEAGE columns: LINEAGE and delivered_at."""
        return [*self.columns(rows), pa.repeat(pa.scalar(self.delivered_at, TS), rows)]


def delivered_at_micros(iso: str | None) -> int | None:
    """An S3 event time (ISO 8601) as microseconds since the epoch, UTC; None when unknown."""
    if not iso:
        return None
    moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1_000_000)


# Columns every staged row carries, so any row can be traced back to its file and run.
LINEAGE = [
    pa.field("source_key", pa.string(), nullable=False),
    pa.field("object_id", pa.string(), nullable=False),
    pa.field("run_id", pa.string(), nullable=False),
]
# Tables kept by the version rule (lakehouse.versions) also carry when their object was delivered.
VERSIONED_LINEAGE = [*LINEAGE, pa.field("delivered_at", TS)]

GENOMIC_VARIANTS = pa.schema(
    [
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("chrom", pa.string(), nullable=False),
        pa.field("pos", pa.int64(), nullable=False),
        pa.field("ref", pa.string(), nullable=False),
        pa.field("alt", pa.string(), nullable=False),
        pa.field("variant_id", pa.string()),  # the VCF ID column (rsID), null when "."
        pa.field("qual", pa.float32()),
        pa.field("filter", pa.string(), nullable=False),  # "PASS" or the ";"-joined failing filters
        pa.field("genotype", pa.string(), nullable=False),  # as written, e.g. "0/1", "1|2"
        pa.field("zygosity", pa.string(), nullable=False),  # heterozygous | homozygous | hemizygous
        pa.field("allele_depth", pa.int32()),  # AD of this alt allele, when present
        pa.field("read_depth", pa.int32()),  # FORMAT/DP, when present
        pa.field("genotype_quality", pa.int32()),  # FORMAT/GQ, when present
        *VERSIONED_LINEAGE,
    ]
)

GENOMIC_CLINVAR = pa.schema(
    [
        pa.field("chrom", pa.string(), nullable=False),
        pa.field("pos", pa.int64(), nullable=False),
        pa.field("ref", pa.string(), nullable=False),
        pa.field("alt", pa.string(), nullable=False),
        pa.field("variation_id", pa.string()),  # the VCF ID column (ClinVar VariationID)
        pa.field("gene", pa.string()),  # symbol(s) from GENEINFO, "|"-joined
        pa.field("clinical_significance", pa.string()),  # CLNSIG, e.g. "Pathogenic"
        pa.field("disease_names", pa.string()),  # CLNDN, "|"-joined, underscores turned to spaces
        pa.field("review_status", pa.string()),  # CLNREVSTAT, commas kept
        pa.field("release", pa.string()),  # ##fileDate of the annotation VCF, when present
        # What the rows are a release of: one owner for the whole table, so that of two annotation files
        # (in one run or across runs) the newer by the version rule replaces the table, never both.
        pa.field("annotation_set", pa.string(), nullable=False),  # "clinvar"
        *VERSIONED_LINEAGE,
    ]
)

# One row per sample x genotype VCF: which samples a callset had, including those that carry no ALT allele
# (and so have no genomic.variants row). Owned by sample, like genomic.variants.
GENOMIC_SAMPLES = pa.schema(
    [
        pa.field("sample_id", pa.string(), nullable=False),  # a #CHROM-line sample column (= Patient.id)
        pa.field("vcf_records", pa.int64(), nullable=False),  # data records (sites) in the VCF
        pa.field("variant_rows", pa.int64(), nullable=False),  # genomic.variants rows it gave the sample
        *VERSIONED_LINEAGE,
    ]
)

OPS_QUARANTINE = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("object_id", pa.string(), nullable=False),
        pa.field("bucket", pa.string(), nullable=False),
        pa.field("key", pa.string(), nullable=False),
        pa.field("etag", pa.string(), nullable=False),
        pa.field("modality", pa.string(), nullable=False),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string(), nullable=False),
        pa.field("line", pa.int64()),
        pa.field("recorded_at", pa.string(), nullable=False),
    ]
)

# One row per version of a resource (or callset) that lost to a newer one under the version rule
# (lakehouse.versions), beside the version kept; `table` "landing" marks a delivered object overwritten before
# it was read (its newer version is ingested by its own event).
OPS_SUPERSEDED = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),  # the run that decided
        pa.field("table", pa.string(), nullable=False),
        pa.field("key", pa.string(), nullable=False),  # resource id, sample id, or the object key
        pa.field("rule", pa.string(), nullable=False),
        pa.field("superseded_object_id", pa.string()),
        pa.field("superseded_source_key", pa.string()),
        pa.field("superseded_position", pa.int64()),
        pa.field("superseded_run_id", pa.string()),
        pa.field("kept_object_id", pa.string()),
        pa.field("kept_source_key", pa.string()),
        pa.field("kept_position", pa.int64()),
        pa.field("kept_run_id", pa.string()),
        pa.field("recorded_at", pa.string(), nullable=False),
    ]
)

# identity.linkage: the rows of delivered linkage files (mmhealth.identity.linkage), one per source
# ("<kind>:<value>"), kept by the version rule: a later file's row for the same source replaces an earlier one.
IDENTITY_LINKAGE = pa.schema(
    [
        pa.field("source", pa.string(), nullable=False),  # "<kind>:<value>", the row's owner key
        pa.field(
            "kind", pa.string(), nullable=False
        ),  # vcf_sample | dicom_patient_id | identifier | patient_id
        pa.field(
            "value", pa.string(), nullable=False
        ),  # the sample id, the PatientID, system|value, a Patient.id
        pa.field("patient_id", pa.string(), nullable=False),  # the Patient.id of the person it belongs to
        pa.field("source_position", pa.int64(), nullable=False),  # 0-based data line of the CSV
        *VERSIONED_LINEAGE,
    ]
)

# identity.links: every source patient reference of the lake and the person it resolves to (or why none),
# rebuilt whole by each features step (mmhealth.identity.resolve).
IDENTITY_LINKS = pa.schema(
    [
        pa.field(
            "source_kind", pa.string(), nullable=False
        ),  # patient_id | identifier | vcf_sample | dicom_...
        pa.field("source_value", pa.string(), nullable=False),
        pa.field("person_id", pa.string()),  # the person's canonical Patient.id; null when unlinked
        pa.field("rule", pa.string(), nullable=False),  # what linked it, or "unlinked"
        pa.field("detail", pa.string()),  # for an unlinked source: why
    ]
)

# features.radiomics: one row per series x segmented region (the radiomics job's output).
FEATURES_RADIOMICS = pa.schema(
    [
        pa.field("series_uid", pa.string(), nullable=False),
        pa.field("patient_id", pa.string(), nullable=False),
        pa.field("study_uid", pa.string()),
        pa.field("study_date", pa.date32()),
        pa.field("region_label", pa.int32(), nullable=False),
        pa.field("region", pa.string(), nullable=False),  # lesion | hippocampus
        pa.field("voxels", pa.int64(), nullable=False),
        pa.field("volume_mm3", pa.float64(), nullable=False),
        # pyradiomics name -> value (a value is null when pyradiomics gave NaN or an infinity); null if empty
        pa.field("features", pa.map_(pa.string(), pa.float64())),
        pa.field("model_version", pa.string(), nullable=False),
        pa.field("params_version", pa.string(), nullable=False),
        pa.field("device", pa.string()),
        pa.field("seconds", pa.float64()),
        pa.field("instances_digest", pa.string()),  # imaging.series.instances_digest computed on
        # The job's pictures of the series (one axial slice; the same with the regions drawn), keys in the
        # lake bucket like source_key. Added after the table existed: null in older rows, and when the job
        # could not draw them (the series' features stand without them).
        pa.field("thumbnail_key", pa.string()),
        pa.field("overlay_key", pa.string()),
        *LINEAGE,
    ]
)

# One row per trained model x metric: every training run's evaluation (outcome x modality set, the
# label-shuffle control as modality set "control"), with bootstrap 95% confidence intervals.
FEATURES_METRICS = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("dataset_id", pa.string(), nullable=False),
        pa.field("outcome", pa.string(), nullable=False),
        pa.field("modality_set", pa.string(), nullable=False),
        pa.field("metric", pa.string(), nullable=False),  # accuracy, balanced_accuracy, precision, ...
        pa.field("value", pa.float64()),
        pa.field("ci_low", pa.float64()),
        pa.field("ci_high", pa.float64()),
        pa.field("n_train", pa.int64()),
        pa.field("n_test", pa.int64()),
    ]
)

# One row per trained model (the training job that made it): the registry the scoring step reads to find
# the newest model.
FEATURES_MODELS = pa.schema(
    [
        pa.field("model_id", pa.string(), nullable=False),  # the SageMaker training job name
        pa.field("run_id", pa.string(), nullable=False),  # the run that trained it
        pa.field("dataset_id", pa.string(), nullable=False),  # the snapshot it was trained on
        pa.field("model_uri", pa.string(), nullable=False),  # model.tar.gz: predictors + model_card.json
        pa.field("metrics_uri", pa.string()),
        pa.field("report_uri", pa.string()),
        pa.field("trained_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)

# One row per eligible patient x outcome x scoring: the newest model applied to a run's dataset snapshot
# (training_job.scoring). Rows accumulate; the newest `scored_at` of a patient and outcome is current.
FEATURES_PREDICTIONS = pa.schema(
    [
        pa.field("patient_id", pa.string(), nullable=False),
        pa.field("outcome", pa.string(), nullable=False),
        pa.field("probability", pa.float64(), nullable=False),
        pa.field("decision", pa.bool_(), nullable=False),  # probability >= threshold
        pa.field("threshold", pa.float64(), nullable=False),
        pa.field("threshold_criterion", pa.string()),
        pa.field("modality_set", pa.string(), nullable=False),  # the predictor's modality set
        pa.field("modalities", pa.string()),  # the modalities this patient has ("clinical+genomic")
        pa.field("in_training_split", pa.bool_()),  # the predictor was fitted on this patient: in-sample
        pa.field("model_id", pa.string(), nullable=False),
        pa.field("dataset_id", pa.string(), nullable=False),
        pa.field("scored_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),  # the run whose scoring step wrote the row
    ]
)

TABLES: dict[str, pa.Schema] = {
    "genomic.variants": GENOMIC_VARIANTS,
    "genomic.clinvar": GENOMIC_CLINVAR,
    "genomic.samples": GENOMIC_SAMPLES,
    "ops.quarantine": OPS_QUARANTINE,
    "ops.superseded": OPS_SUPERSEDED,
    "identity.linkage": IDENTITY_LINKAGE,
    "identity.links": IDENTITY_LINKS,
    "features.radiomics": FEATURES_RADIOMICS,
    "features.metrics": FEATURES_METRICS,
    "features.models": FEATURES_MODELS,
    "features.predictions": FEATURES_PREDICTIONS,
}
