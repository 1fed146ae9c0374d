"""The report's population and data-quality views: aggregates over the lakehouse, written with each dataset
snapshot as `population.json` (the training job renders them; the Iceberg tables stay the source).

Counts only, never a person's row: every figure is a count, a sum or a distribution of values without
identifiers, so the document can travel with the report. Sections:
- clinical: age bands by sex (at the index date), encounters per month, the most frequent conditions,
  procedures and medications (distinct patients), claims per month (count and total);
- genomic: carriers per gene and ClinVar significance (PASS alleles), the pathogenic burden distribution;
- imaging: series by modality and body part, region volumes and first-order radiomics by outcome label;
- quality: rows per lakehouse table, quarantined files by modality and reason, patients per modality.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from mmhealth import quarantine
from mmhealth.features.genomic import is_pathogenic
from mmhealth.lakehouse.catalog import SCHEMAS, read_columns, read_table, row_count
from mmhealth.observability import logger
from mmhealth.settings import settings

MODALITY_NAMESPACES = ("clinical", "genomic", "imaging")
TOP = 15  # most frequent codes shown per clinical list
AGE_BAND_YEARS = 10
IMAGING_MEASURES = ("volume_ml", "firstorder_mean", "firstorder_entropy", "firstorder_90percentile")
REGIONS = ("lesion", "hippocampus")


def population(
    outcomes: list[str], patients_per_modality: dict[str, int], run_id: str | None = None
) -> dict[str, Any]:
    """Every section; `run_id` adds the run's own quarantine records (Finalize commits them after the snapshot)."""
    labels = read_columns("features.labels", ["patient_id", *outcomes])
    sections: dict[str, Callable[[], dict[str, Any]]] = {
        "clinical": clinical_view,
        "genomic": genomic_view,
        "imaging": lambda: imaging_view(labels, outcomes),
        "quality": lambda: quality_view(patients_per_modality, run_id),
    }
    return {name: _guarded(name, build) for name, build in sections.items()}


def _guarded(name: str, build: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A view that cannot be built says why instead: the report's views never fail the dataset snapshot."""
    try:
        return build()
    except Exception as error:  # any failure here is the report's loss, not the run's
        logger.warning("population view not built", extra={"section": name, "error": type(error).__name__})
        return {"unavailable": f"{type(error).__name__}: {error}"[:300]}


# ------------------------------------------------------------------------------------------------ clinical


def clinical_view() -> dict[str, Any]:
    encounters = read_columns("clinical.encounter", ["period_start"])
    return {
        "age_sex": _age_sex(read_columns("features.clinical", ["age_at_index_years", "sex"])),
        "encounters_by_month": _per_month(encounters, "period_start"),
        "conditions": _top_codes("clinical.condition", "code"),
        "procedures": _top_codes("clinical.procedure", "code"),
        "medications": _top_codes("clinical.medication_request", "medication"),
        "claims_by_month": _claims(read_columns("clinical.claim", ["created_at", "total_value"])),
    }


def _age_sex(table: pa.Table | None) -> list[dict[str, Any]]:
    """Patients per (age band, sex): [{"band": "60-69", "sex": "female", "patients": n}]."""
    if table is None or table.num_rows == 0 or "age_at_index_years" not in table.column_names:
        return []
    counts: Counter[tuple[int, str]] = Counter()
    sexes = table["sex"].to_pylist() if "sex" in table.column_names else [None] * table.num_rows
    for age, sex in zip(table["age_at_index_years"].to_pylist(), sexes, strict=True):
        if age is not None:
            counts[(int(age // AGE_BAND_YEARS) * AGE_BAND_YEARS, sex or "unknown")] += 1
    return [
        {"band": f"{low}-{low + AGE_BAND_YEARS - 1}", "sex": sex, "patients": n}
        for (low, sex), n in sorted(counts.items())
    ]


def _per_month(table: pa.Table | None, column: str) -> list[dict[str, Any]]:
    if table is None or table.num_rows == 0:
        return []
    dated = table.filter(pc.is_valid(table[column]))
    months = pc.strftime(dated[column], format="%Y-%m")
    grouped = pa.table({"month": months}).group_by("month").aggregate([("month", "count")])
    return sorted(({"month": m, "count": n} for m, n in zip(*grouped.to_pydict().values(), strict=True)),
                  key=lambda r: r["month"])  # fmt: skip


def _top_codes(name: str, prefix: str) -> list[dict[str, Any]]:
    """The TOP codes of a clinical table by distinct patients: [{"code", "display", "patients"}]."""
    code, display = f"{prefix}_code", f"{prefix}_display"
    table = read_columns(name, ["patient_id", code, display])
    if table is None or table.num_rows == 0:
        return []
    rows = table.filter(pc.is_valid(table[code]))
    grouped = rows.group_by([code], use_threads=False).aggregate(
        [("patient_id", "count_distinct"), (display, "first")]
    )
    ranked = grouped.sort_by([("patient_id_count_distinct", "descending"), (code, "ascending")]).slice(0, TOP)
    return [
        {"code": c, "display": d or c, "patients": n}
        for c, n, d in zip(
            ranked[code].to_pylist(),
            ranked["patient_id_count_distinct"].to_pylist(),
            ranked[f"{display}_first"].to_pylist(),
            strict=True,
        )
    ]


def _claims(table: pa.Table | None) -> list[dict[str, Any]]:
    if table is None or table.num_rows == 0:
        return []
    dated = table.filter(pc.is_valid(table["created_at"]))
    frame = pa.table(
        {"month": pc.strftime(dated["created_at"], format="%Y-%m"), "total": dated["total_value"]}
    )
    grouped = frame.group_by("month").aggregate([("month", "count"), ("total", "sum")])
    return sorted(
        (
            {"month": m, "claims": n, "total": round(float(t or 0.0), 2)}
            for m, n, t in zip(grouped["month"].to_pylist(), grouped["month_count"].to_pylist(),
                               grouped["total_sum"].to_pylist(), strict=True)
        ),
        key=lambda r: r["month"],
    )  # fmt: skip


# ------------------------------------------------------------------------------------------------- genomic


def genomic_view() -> dict[str, Any]:
    variants = read_columns("genomic.variants", ["sample_id", "chrom", "pos", "ref", "alt", "filter"])
    clinvar = read_table(
        "genomic.clinvar", columns=["chrom", "pos", "ref", "alt", "gene", "clinical_significance"]
    )
    burden = read_columns("features.genomic", ["pathogenic_burden"])
    return {
        "carriers": _carriers(variants, clinvar),
        "burden": _distribution(burden["pathogenic_burden"].to_pylist()) if burden else {},
        "samples": row_count("genomic.samples") or 0,
    }  # fmt: skip


def _distribution(values: list[int | None]) -> dict[str, int]:
    """Patients per value ("0": n, "1": m, ...), nulls left out."""
    return {str(v): n for v, n in sorted(Counter(v for v in values if v is not None).items())}


def significance_class(significance: str | None) -> str:
    """ClinVar's many spellings, as four classes the report colours by."""
    if not significance:
        return "not provided"
    text = significance.lower()
    if is_pathogenic(significance):
        return "pathogenic / likely pathogenic"
    if "benign" in text:
        return "benign / likely benign"
    if "uncertain" in text or "conflicting" in text:
        return "uncertain / conflicting"
    return "other"


def _carriers(variants: pa.Table | None, clinvar: pa.Table | None) -> list[dict[str, Any]]:
    """Distinct carriers per (gene, significance class) of the PASS alleles ClinVar annotates."""
    if variants is None or clinvar is None or variants.num_rows == 0 or clinvar.num_rows == 0:
        return []
    passing = variants.filter(pc.equal(variants["filter"], "PASS"))
    joined = passing.join(clinvar, ["chrom", "pos", "ref", "alt"], join_type="inner")
    carriers: dict[tuple[str, str], set[str]] = {}
    for sample, gene, significance in zip(
        joined["sample_id"].to_pylist(), joined["gene"].to_pylist(), joined["clinical_significance"].to_pylist(),
        strict=True,
    ):  # fmt: skip
        carriers.setdefault((gene or "?", significance_class(significance)), set()).add(sample)
    return sorted(
        ({"gene": g, "significance": s, "carriers": len(c)} for (g, s), c in carriers.items()),
        key=lambda r: (-r["carriers"], r["gene"], r["significance"]),
    )


# ------------------------------------------------------------------------------------------------- imaging


def imaging_view(labels: pa.Table | None, outcomes: list[str]) -> dict[str, Any]:
    series = read_columns("imaging.series", ["modality", "body_part"])
    by_kind = Counter(
        (m or "?", b or "unspecified")
        for m, b in zip(*(series.to_pydict().values() if series else ([], [])), strict=True)
    )
    return {
        "series": [{"modality": m, "body_part": b, "series": n} for (m, b), n in sorted(by_kind.items())],
        "by_outcome": _measures_by_outcome(read_table("features.imaging"), labels, outcomes),
    }


def _measures_by_outcome(
    imaging: pa.Table | None, labels: pa.Table | None, outcomes: list[str]
) -> dict[str, dict[str, dict[str, list[float]]]]:
    """outcome -> "<region>_<measure>" -> {"with": [...], "without": [...]} over imaged, eligible patients."""
    if imaging is None or labels is None or imaging.num_rows == 0:
        return {}
    columns = [f"{r}_{m}" for r in REGIONS for m in IMAGING_MEASURES if f"{r}_{m}" in imaging.column_names]
    joined = imaging.select(["patient_id", *columns]).join(labels, "patient_id", join_type="inner")
    result: dict[str, dict[str, dict[str, list[float]]]] = {}
    for outcome in outcomes:
        label = joined[outcome].to_pylist()
        result[outcome] = {}
        for column in columns:
            values = joined[column].to_pylist()
            pairs = [
                (v, bool(y)) for v, y in zip(values, label, strict=True) if v is not None and y is not None
            ]
            result[outcome][column] = {
                "with": [round(v, 4) for v, positive in pairs if positive],
                "without": [round(v, 4) for v, positive in pairs if not positive],
            }
    return result


# ------------------------------------------------------------------------------------------------- quality


def quality_view(patients_per_modality: dict[str, int], run_id: str | None = None) -> dict[str, Any]:
    names = [name for name in sorted(SCHEMAS) if name.split(".")[0] in MODALITY_NAMESPACES]
    tables = {name: row_count(name) for name in names}
    committed = read_columns("ops.quarantine", ["run_id", "modality", "reason", "key"])
    rows = [r for r in (committed.to_pylist() if committed is not None else []) if r.get("run_id") != run_id]
    if run_id is not None:  # this run's records: written by the steps, committed by Finalize later
        rows += [r.model_dump() for r in quarantine.load_run_records(settings().lake_bucket, run_id)]
    records: Counter[tuple[str, str]] = Counter()
    keys: dict[tuple[str, str], set[str]] = {}
    for row in rows:
        group = (row["modality"], row["reason"])
        records[group] += 1
        keys.setdefault(group, set()).add(row.get("key") or "")
    return {
        "files": _files_per_modality(names),
        "rows": {name: n for name, n in tables.items() if n is not None},
        "quarantined": [
            {"modality": m, "reason": r, "records": n, "files": len(keys[(m, r)])}
            for (m, r), n in sorted(records.items())
        ],
        "patients_per_modality": patients_per_modality,
    }


def _files_per_modality(names: list[str]) -> dict[str, int]:
    """Delivered files with rows in the lakehouse, per modality: distinct object ids over its tables."""
    objects: dict[str, set[str]] = {}
    for name in names:
        if "object_id" not in SCHEMAS[name].names:
            continue
        table = read_columns(name, ["object_id"])
        if table is not None and "object_id" in table.column_names:
            objects.setdefault(name.split(".")[0], set()).update(pc.unique(table["object_id"]).to_pylist())
    return {modality: len(ids) for modality, ids in sorted(objects.items())}
