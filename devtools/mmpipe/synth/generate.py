"""generate_cohort: draw the cohort once, render each requested modality, write the truth."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mmpipe.synth import clinical, genome, imaging
from mmpipe.synth.cohort import IMAGING_FRACTION, OUTCOMES, Patient, draw_cohort
from mmpipe.synth.identity import identity_of
from mmpipe.synth.imaging import SeriesTruth
from mmpipe.synth.truth import FORMAT_VERSION, TRUTH_DIR, model_description, patient_truth, write_truth

MODALITIES = frozenset({"genomic", "clinical", "imaging"})


def _check_arguments(out_dir: Path, patients: int, modalities: Iterable[str]) -> set[str]:
    requested = set(modalities)
    unknown = requested - MODALITIES
    if unknown:
        raise ValueError(f"unknown modalities {sorted(unknown)}; choose from {sorted(MODALITIES)}")
    if patients < 1:
        raise ValueError(f"patients must be >= 1, got {patients}")
    # The folder is uploaded as-is: stale files from another run would become part of the delivery.
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} is not empty; generate into a new or empty folder")
    return requested


def _write_genomic(out_dir: Path, cohort: list[Patient], seed: int) -> tuple[dict[str, int], dict[str, int]]:
    """Per-patient VCFs and the ClinVar VCF; returns (summary counts, records per patient id)."""
    pool = genome.build_site_pool(seed)
    taken = genome.occupied_positions(pool)
    genomic_dir = out_dir / "genomic"
    records: dict[str, int] = {}
    non_reference = 0
    for patient in cohort:
        if patient.has_genome:
            stats = genome.write_patient_vcf(genomic_dir / f"{patient.id}.vcf.gz", pool, patient, seed, taken)
            records[patient.id] = stats.records
            non_reference += stats.non_reference
    clinvar_records = genome.write_clinvar_vcf(genomic_dir / genome.CLINVAR_FILE, pool, seed)
    summary = {
        "vcf_files": len(records),
        "vcf_records": sum(records.values()),
        "variants_written": non_reference,
        "site_pool_sites": len(pool),
        "clinvar_records": clinvar_records,
    }
    return summary, records


def _write_imaging(out_dir: Path, cohort: list[Patient], seed: int) -> dict[str, SeriesTruth]:
    masks_dir = out_dir / TRUTH_DIR / "masks"
    return {
        p.id: imaging.write_series(out_dir / "imaging", masks_dir, seed, p, identity_of(p, seed))
        for p in cohort
        if p.has_imaging
    }


def _write_clinical(out_dir: Path, cohort: list[Patient], seed: int, with_imaging: bool) -> dict[str, int]:
    with clinical.NdjsonWriter(out_dir / "clinical") as writer:
        for patient in cohort:
            plan = imaging.plan_series(seed, patient) if with_imaging and patient.has_imaging else None
            writer.write(clinical.build_chart(seed, patient, identity_of(patient, seed), plan))
        return {t: writer.counts[t] for t in clinical.RESOURCE_TYPES}


def patient_modalities(patient: Patient, requested: set[str]) -> list[str]:
    present = (
        {"clinical"}
        | ({"genomic"} if patient.has_genome else set())
        | ({"imaging"} if patient.has_imaging else set())
    )
    return sorted(present & requested)


def generate_cohort(
    out_dir: Path,
    patients: int,
    seed: int,
    modalities: set[str] = set(MODALITIES),  # noqa: B006 - never mutated; the documented default
    imaging_fraction: float = IMAGING_FRACTION,
) -> dict[str, Any]:
    """Write a synthetic multimodal delivery to `out_dir` and return counts.

    Deterministic: the same (patients, seed, modalities, imaging_fraction) give byte-identical files.
    Patient i is the same person whatever the cohort size, modalities or imaging fraction (a smaller
    fraction images a subset). Raises ValueError for unknown modalities, patients < 1 or a fraction outside
    [0, 1], FileExistsError when out_dir is not empty.
    """
    if not 0.0 <= imaging_fraction <= 1.0:
        raise ValueError(f"imaging_fraction must be within [0, 1], not {imaging_fraction}")
    out_dir = Path(out_dir)
    requested = _check_arguments(out_dir, patients, modalities)
    out_dir.mkdir(parents=True, exist_ok=True)
    cohort = draw_cohort(seed, patients, imaging_fraction)
    summary: dict[str, Any] = {"patients": patients, "seed": seed, "modalities": sorted(requested)}

    vcf_records: dict[str, int] = {}
    if "genomic" in requested:
        genomic_summary, vcf_records = _write_genomic(out_dir, cohort, seed)
        summary.update(genomic_summary)
    series: dict[str, SeriesTruth] = {}
    if "imaging" in requested:
        series = _write_imaging(out_dir, cohort, seed)
        summary["dicom_series"] = len(series)
        summary["dicom_instances"] = sum(s.slices for s in series.values())
    if "clinical" in requested:
        resources = _write_clinical(out_dir, cohort, seed, with_imaging="imaging" in requested)
        summary["fhir_resources"] = resources
        summary["fhir_resources_total"] = sum(resources.values())

    positives = {o: sum(p.outcomes[o].label for p in cohort) for o in OUTCOMES}
    summary["positives"] = positives
    summary["prevalence"] = {o: round(n / patients, 4) for o, n in positives.items()}
    truth = {
        "format_version": FORMAT_VERSION,
        "generator": "mmpipe.synth",
        "seed": seed,
        "patient_count": patients,
        "modalities": sorted(requested),
        "model": model_description(seed, imaging_fraction),
        "summary": summary,
        "patients": [
            patient_truth(p, patient_modalities(p, requested), series.get(p.id), vcf_records.get(p.id))
            for p in cohort
        ],
    }
    write_truth(out_dir, truth)
    return summary
