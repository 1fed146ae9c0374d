"""The answer key: .truth/truth.json (labels, planted signals, the generative model) next to the masks.

It lives in a dot-folder because the delivery is uploaded as-is and the CLI skips dot-folders; nothing in
the pipeline may read it except tests and evaluation.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from mmpipe.synth.cohort import (
    APOE_HAPLOTYPES,
    FEATURE_DEFINITIONS,
    GENOME_FRACTION,
    IMAGING_FIRST,
    IMAGING_FRACTION,
    IMAGING_LAST,
    LABEL_MODEL,
    ONSET_FIRST,
    ONSET_LAST,
    OUTCOME_CONDITIONS,
    OUTCOMES,
    STUDY_END,
    STUDY_START,
    TARGET_PREVALENCE,
    Patient,
)
from mmpipe.synth.imaging import MASK_LABELS, SeriesTruth
from mmpipe.synth.reference import RISK_VARIANTS

TRUTH_DIR = ".truth"
FORMAT_VERSION = 1

MODEL_DESCRIPTION = (
    "Each patient is drawn independently from a causal model: demographics -> risk-variant genotypes -> "
    "baseline clinical state -> brain factors -> outcome labels. Every outcome label is "
    "Bernoulli(sigmoid(intercept + sum(coefficient * feature))) with the coefficients below, so each "
    "outcome gets signal from clinical factors (age, sex, BP, LDL, BMI, diabetes, smoking, atrial "
    "fibrillation), genomic factors (APOE e4/e2, TREM2, PSEN1 for Alzheimer's; LPA, 9p21, LDLR/PCSK9/APOB "
    "familial hypercholesterolemia for CHD; F5 Leiden, NOTCH3/HTRA1 for stroke; AGT/NOS3/AGTR1 for "
    "hypertension) and, for stroke and Alzheimer's, imaging factors (white-matter lesion volume; "
    "hippocampal atrophy). Positive labels get an onset date uniform in the onset window; every record "
    "that carries the signal (baseline BP, lipids, BMI, HbA1c, the MR, the genome) exists before it."
)
BRAIN_MODEL = (
    "Small-vessel disease: lesion present with probability sigmoid(-0.9 + 0.5*age_decades + "
    "0.35*systolic_per_10_mmhg + 0.5*current_smoker + 0.4*diabetes + 2.0*small_vessel_carrier); its volume "
    "is lognormal (median 600 mm^3, larger with higher small-vessel risk, clipped to 150-6000 mm^3) and it "
    "is rendered as one ellipsoid FLAIR hyperintensity (mask label 1). Hippocampal atrophy = 0.08 + "
    "0.05*age_decades + 0.06*apoe_e4_dosage + 0.15*psen1_dosage + N(0, 0.04), clipped to 0-0.5; the two "
    "hippocampus-like ellipsoids (mask label 2) lose that fraction of volume and get darker."
)
MEASUREMENT_MODEL = (
    "FHIR measurements are noisy draws around the baseline: systolic BP rises up to +12 mmHg over the two "
    "years before a hypertension onset and drops 14 mmHg on treatment; HbA1c drifts from 5.7 to 6.4% over "
    "the two years before incident diabetes; MMSE (age >= 65) falls up to 4 points over the three years "
    "before an Alzheimer's onset and 2.5 points a year after; LDL falls 35% after a statin starts "
    "(hyperlipidemia diagnosis, CHD or stroke). Familial-hypercholesterolemia carriers have LDL +70 mg/dL; "
    "hypertension alleles raise baseline systolic BP by 3 mmHg each."
)


def model_description(seed: int, imaging_fraction: float = IMAGING_FRACTION) -> dict[str, Any]:
    return {
        "seed": seed,
        "description": MODEL_DESCRIPTION,
        "study_period": {"start": STUDY_START.isoformat(), "end": STUDY_END.isoformat()},
        "onset_window": {"first": ONSET_FIRST.isoformat(), "last": ONSET_LAST.isoformat()},
        "imaging_window": {"first": IMAGING_FIRST.isoformat(), "last": IMAGING_LAST.isoformat()},
        "modality_fractions": {"genomic": GENOME_FRACTION, "imaging": imaging_fraction, "clinical": 1.0},
        "label_model": {
            "link": "logistic",
            "outcomes": {
                outcome: {
                    "snomed_ct": OUTCOME_CONDITIONS[outcome][0],
                    "display": OUTCOME_CONDITIONS[outcome][1],
                    "intercept": LABEL_MODEL[outcome].intercept,
                    "coefficients": LABEL_MODEL[outcome].coefficients,
                    "target_prevalence": TARGET_PREVALENCE[outcome],
                }
                for outcome in OUTCOMES
            },
        },
        "features": FEATURE_DEFINITIONS,
        "brain_model": BRAIN_MODEL,
        "measurement_model": MEASUREMENT_MODEL,
        "apoe_haplotype_frequencies": APOE_HAPLOTYPES,
        "risk_variants": [
            {
                "key": v.key,
                "gene": v.gene,
                "chrom": v.chrom,
                "pos": v.pos,
                "ref": v.ref,
                "alt": v.alt,
                "rsid": v.rsid,
                "alt_frequency": v.alt_frequency,
                "clinvar_significance": v.clinical_significance,
                "outcome": v.outcome,
                "effect": v.effect,
                "synthetic_position": v.rsid is None,
            }
            for v in RISK_VARIANTS
        ],
        "allele_frequency_note": "rare risk alleles are enriched well above population frequencies",
        "mask_labels": MASK_LABELS,
    }


def patient_truth(
    patient: Patient, modalities: list[str], series: SeriesTruth | None, vcf_records: int | None
) -> dict[str, Any]:
    baseline = asdict(patient.baseline)
    baseline["diabetes_onset"] = (
        patient.baseline.diabetes_onset.isoformat() if patient.baseline.diabetes_onset else None
    )
    return {
        "id": patient.id,
        "index": patient.index,
        "sex": patient.sex,
        "birth_date": patient.birth_date.isoformat(),
        "modalities": modalities,
        "labels": {
            outcome: {
                "label": result.label,
                "onset": result.onset.isoformat() if result.onset else None,
            }
            for outcome, result in patient.outcomes.items()
        },
        "latent_risk": {
            outcome: {"logit": result.logit, "probability": result.probability}
            for outcome, result in patient.outcomes.items()
        },
        "features": patient.features,
        "signals": {
            "apoe_genotype": "/".join(sorted(patient.genome.apoe)),
            "apoe_e4_dosage": patient.genome.apoe_e4_dosage,
            "apoe_e2_dosage": patient.genome.apoe_e2_dosage,
            "fh_carrier": patient.genome.fh_carrier,
            "small_vessel_carrier": patient.genome.small_vessel_carrier,
            "f5_leiden_carrier": patient.genome.dosage("F5_Leiden") > 0,
            "risk_variant_dosages": patient.genome.dosages,
            "lesion_volume_mm3": patient.brain.lesion_volume_mm3,
            "hippocampal_atrophy": patient.brain.hippocampal_atrophy,
            "baseline": {k: round(v, 2) if isinstance(v, float) else v for k, v in baseline.items()},
        },
        "genome": None
        if vcf_records is None
        else {"vcf": f"genomic/{patient.id}.vcf.gz", "records": vcf_records},
        "imaging": None
        if series is None
        else {
            **asdict(series),
            "study_date": patient.imaging_date.isoformat(),
            "mask": f"masks/{series.series_uid}.npz",
        },
    }


def write_truth(out_dir: Path, document: dict[str, Any]) -> Path:
    path = out_dir / TRUTH_DIR / "truth.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
