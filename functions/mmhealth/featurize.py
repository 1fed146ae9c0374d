"""Features step of a run: rebuild `features.clinical`, `features.labels`, `features.imaging` and
`features.genomic`.

Features are a function of the whole lakehouse, not of one run's files (a patient's index-date window
spans deliveries), so each run that changed clinical, imaging or genomic data rebuilds them and replaces the
tables whole, tagged with the run id like every other commit. Imaging features use the index dates of the
labels; genomic features need none (a germline genome does not change with time).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.catalog import Catalog
from pyiceberg.expressions import EqualTo

from mmhealth.features import genomic
from mmhealth.features.clinical import READ_COLUMNS, FeatureConfig, clinical_features
from mmhealth.features.imaging import imaging_features
from mmhealth.features.outcomes import OUTCOMES
from mmhealth.lakehouse.catalog import lakehouse_catalog, read_table, replace_all, replace_rows
from mmhealth.observability import MetricUnit, logger, metrics


def changed(
    branches: list[dict[str, Any]], modalities: tuple[str, ...] = ("clinical", "imaging", "genomic")
) -> bool:
    """True when this run committed rows of one of `modalities` (otherwise the features cannot have changed)."""
    return any(
        branch.get("modality") in modalities
        and not branch.get("skipped")
        and not branch.get("failed")
        and any(c.get("rows_added") or c.get("rows_removed") for c in branch.get("commits", []))
        for branch in branches
    )


def rebuild_features(
    run_id: str, branches: list[dict[str, Any]], config: FeatureConfig | None = None, *, force: bool = False
) -> dict[str, Any]:
    """Recompute and commit the features and labels; returns counts and label prevalence. Skipped when the
    run changed no rows, unless `force` (runs that deferred to this one did)."""
    if not force and not changed(branches):
        return {"skipped": True, "reason": "no clinical, imaging or genomic rows changed in this run"}
    catalog = lakehouse_catalog()
    # Only the columns the features read: whole clinical tables would not fit a Lambda's memory for long.
    tables = {
        name: t
        for name, columns in READ_COLUMNS.items()
        if (t := read_table(name, catalog, columns)) is not None
    }
    feature_set = clinical_features(tables, config or FeatureConfig())
    imaging = imaging_features(
        read_table("features.radiomics", catalog), feature_set.labels.select(["patient_id", "index_date"])
    )
    commits = [
        replace_rows("features.clinical", feature_set.features, run_id, replace_all, catalog),
        replace_rows("features.labels", feature_set.labels, run_id, replace_all, catalog),
    ]
    if imaging.num_rows:
        commits.append(replace_rows("features.imaging", imaging, run_id, replace_all, catalog))
    genome = genomic_from_lakehouse(catalog)
    if genome.num_rows:
        commits.append(replace_rows("features.genomic", genome, run_id, replace_all, catalog))
    prevalence = label_prevalence(feature_set.labels)
    unlinked = unlinked_patients(tables)
    if unlinked:
        # Kept, not dropped: a Patient resource may arrive in a later delivery (DESIGN: kept and reported).
        logger.warning(
            "records reference patients without a Patient resource", extra={"patients": len(unlinked)}
        )
    metrics.add_metric(name="FeaturePatients", unit=MetricUnit.Count, value=feature_set.features.num_rows)
    logger.info(
        "features rebuilt",
        extra={
            "patients": feature_set.features.num_rows,
            "genomic_patients": genome.num_rows,
            "prevalence": prevalence,
        },
    )
    return {
        "patients": feature_set.features.num_rows,
        "imaging_patients": imaging.num_rows,
        "genomic_patients": genome.num_rows,
        "feature_columns": feature_set.features.num_columns - 2,  # patient_id, index_date
        "prevalence": prevalence,
        "unlinked_patients": len(unlinked),
        "commits": [c.model_dump() for c in commits],
    }


def genomic_from_lakehouse(catalog: Catalog) -> pa.Table:
    """features.genomic from the genomic tables (no rows when there are none): PASS calls only, the
    columns the features read."""
    # pyiceberg's predicates are pydantic models whose __new__ mypy cannot see through.
    passed = EqualTo("filter", "PASS")  # type: ignore[call-arg, arg-type]
    return genomic.genomic_features(
        read_table("genomic.variants", catalog, genomic.READ_COLUMNS["genomic.variants"], passed),
        read_table("genomic.clinvar", catalog, genomic.READ_COLUMNS["genomic.clinvar"]),
        read_table("genomic.samples", catalog, genomic.READ_COLUMNS["genomic.samples"]),
    )


def unlinked_patients(tables: dict[str, pa.Table]) -> set[str]:
    """Patient ids that clinical records reference but no Patient resource defines."""
    patients = tables.get("clinical.patient")
    known = set(patients["patient_id"].to_pylist()) if patients is not None else set()
    referenced: set[str] = set()
    for name, table in tables.items():
        if name != "clinical.patient" and "patient_id" in table.column_names:
            referenced.update(pc.unique(table["patient_id"].drop_null()).to_pylist())
    return referenced - known


def label_prevalence(labels: pa.Table) -> dict[str, dict[str, float | int]]:
    """Per outcome: eligible patients, positives, prevalence among the eligible."""
    result: dict[str, dict[str, float | int]] = {}
    for outcome in OUTCOMES:
        if outcome not in labels.column_names:
            continue
        column = labels[outcome]
        eligible = len(column) - column.null_count
        positives = int(pc.sum(column).as_py() or 0)
        result[outcome] = {
            "eligible": eligible,
            "positives": positives,
            "prevalence": round(positives / eligible, 4) if eligible else 0.0,
        }
    return result
