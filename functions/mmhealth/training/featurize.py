"""Features step of a run: rebuild `features.clinical`, `features.labels`, `features.imaging` and
`features.genomic`.

Features are a function of the whole lakehouse, not of one run's files (a patient's index-date window
spans deliveries), so each run that changed clinical, imaging or genomic data rebuilds them and replaces the
tables whole, tagged with the run id like every other commit (mmhealth.training.stage decides when).
Imaging features use the index dates of the labels; genomic features need none (a germline genome does
not change with time).
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
from mmhealth.identity.resolve import (
    Identity,
    clinical_per_person,
    map_values,
    one_sample_per_person,
    resolve,
)
from mmhealth.lakehouse.catalog import lakehouse_catalog, read_table, replace_all, replace_rows, snapshot_id
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
    run changed no rows, unless `force`."""
    if not force and not changed(branches):
        return {"skipped": True, "reason": "no clinical, imaging or genomic rows changed in this run"}
    catalog = lakehouse_catalog()
    # Only the columns the features read: whole clinical tables would not fit a Lambda's memory for long.
    tables = {
        name: t
        for name, columns in READ_COLUMNS.items()
        if (t := read_table(name, catalog, columns)) is not None
    }
    radiomics = read_table("features.radiomics", catalog)
    identity = resolve_identity(tables, radiomics, catalog)
    feature_set = clinical_features(clinical_per_person(tables, identity), config or FeatureConfig())
    imaging = imaging_features(
        radiomics_per_person(radiomics, identity), feature_set.labels.select(["patient_id", "index_date"])
    )
    commits = [
        replace_rows("identity.links", identity.links, run_id, replace_all, catalog),
        replace_rows("features.clinical", feature_set.features, run_id, replace_all, catalog),
        replace_rows("features.labels", feature_set.labels, run_id, replace_all, catalog),
    ]
    genome = genomic_from_lakehouse(catalog, identity)
    for name, rows in (("features.imaging", imaging), ("features.genomic", genome)):
        # Replaced even when empty (no linked patient any more): stale rows would pass for data.
        if rows.num_rows or snapshot_id(name, catalog) is not None:
            commits.append(replace_rows(name, rows, run_id, replace_all, catalog))
    prevalence = label_prevalence(feature_set.labels)
    unlinked = {kind: identity.unlinked(kind) for kind in SOURCE_KINDS}
    if any(unlinked.values()):
        # Kept, not dropped: what would link them may arrive in a later delivery (DESIGN: kept and reported).
        logger.warning("unlinked patient references", extra={k: len(v) for k, v in unlinked.items()})
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
        "unlinked_patients": len(unlinked["patient_id"]) + len(unlinked["identifier"]),
        "unlinked": {kind: {"count": len(v), "first": v[:UNLINKED_LISTED]} for kind, v in unlinked.items()},
        "commits": [c.model_dump() for c in commits],
    }


SOURCE_KINDS = ("patient_id", "identifier", "vcf_sample", "dicom_patient_id")
UNLINKED_LISTED = 20  # per kind in the run summary; identity.links lists them all


def resolve_identity(tables: dict[str, pa.Table], radiomics: pa.Table | None, catalog: Catalog) -> Identity:
    """identity.resolve on what the lake holds: Patients, the clinical references, linkage rows, VCF samples
    and the DICOM PatientIDs of the series with radiomics."""
    patients = read_table("clinical.patient", catalog, ["resource_id", "identifiers", "if_none_exist"])
    if patients is None:
        patients = pa.table(
            {"resource_id": pa.array([], pa.string()), "identifiers": pa.array([], pa.string())}
        )
    references: set[str] = set()
    for name, table in tables.items():
        if name != "clinical.patient":
            references.update(pc.unique(table["patient_id"].drop_null()).to_pylist())
    samples = read_table("genomic.samples", catalog, ["sample_id"])
    return resolve(
        patients,
        references,
        read_table("identity.linkage", catalog, ["kind", "value", "patient_id"]),
        pc.unique(samples["sample_id"]).to_pylist() if samples is not None else (),
        pc.unique(radiomics["patient_id"]).to_pylist() if radiomics is not None else (),
    )


def radiomics_per_person(radiomics: pa.Table | None, identity: Identity) -> pa.Table | None:
    """features.radiomics rows whose DICOM PatientID is linked, with patient_id the person id."""
    if radiomics is None:
        return None
    persons = map_values(radiomics["patient_id"], lambda p: identity.person_of("dicom_patient_id", p))
    mapped = radiomics.set_column(radiomics.column_names.index("patient_id"), "patient_id", persons)
    return mapped.filter(pc.is_valid(mapped["patient_id"]))


def genomic_from_lakehouse(catalog: Catalog, identity: Identity) -> pa.Table:
    """features.genomic from the genomic tables (no rows when there are none): PASS calls only, the
    columns the features read; one linked sample per person, under the person id."""
    # pyiceberg's predicates are pydantic models whose __new__ mypy cannot see through.
    passed = EqualTo("filter", "PASS")  # type: ignore[call-arg, arg-type]
    tables = {
        "variants": read_table("genomic.variants", catalog, genomic.READ_COLUMNS["genomic.variants"], passed),
        "samples": read_table("genomic.samples", catalog, genomic.READ_COLUMNS["genomic.samples"]),
    }
    samples = tables["samples"]
    chosen = one_sample_per_person(
        identity, "vcf_sample", samples["sample_id"].to_pylist() if samples else []
    )
    for name, table in tables.items():
        if table is None:
            continue
        mine = table.filter(pc.is_in(table["sample_id"], pa.array(sorted(chosen), pa.string())))
        persons = map_values(mine["sample_id"], chosen.get)
        tables[name] = mine.set_column(mine.column_names.index("sample_id"), "sample_id", persons)
    return genomic.genomic_features(
        tables["variants"], read_table("genomic.clinvar", catalog, genomic.READ_COLUMNS["genomic.clinvar"]),
        tables["samples"],
    )  # fmt: skip


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
