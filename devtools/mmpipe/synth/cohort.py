"""The shared patient model: latent clinical, genomic and brain factors, and the outcome labels they cause.

Causal order (each step only reads the ones before it), per patient, from its own random stream:
    demographics -> risk-variant genotypes -> baseline clinical state (BMI, BP, lipids, diabetes, smoking,
    atrial fibrillation) -> brain factors (white-matter lesion, hippocampal atrophy) -> outcome labels
The modality writers (genome.py, clinical.py, imaging.py) only *render* these facts; they never change them,
so a label is explained by values that are visible in the delivered files before the label's onset.

Each outcome is Bernoulli(sigmoid(intercept + sum(coefficient * feature))) with the features and
coefficients in LABEL_MODEL (copied verbatim into truth.json). Positive labels get an onset date after a
three-year baseline period, so every patient has pre-onset records.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

from mmpipe.synth.reference import RISK_VARIANTS
from mmpipe.synth.seeding import Stream, rng_for, stable_uuid

OUTCOMES: tuple[str, ...] = ("hypertension", "coronary_heart_disease", "stroke", "alzheimers_disease")

# SNOMED CT codes of the Conditions that define the labels (the pipeline's label contract).
OUTCOME_CONDITIONS: dict[str, tuple[str, str]] = {
    "hypertension": ("59621000", "Essential hypertension (disorder)"),
    "coronary_heart_disease": ("53741008", "Coronary arteriosclerosis (disorder)"),
    "stroke": ("230690007", "Cerebrovascular accident (disorder)"),
    "alzheimers_disease": ("26929004", "Alzheimer's disease (disorder)"),
}

STUDY_START = date(2015, 1, 1)
STUDY_END = date(2024, 12, 31)
# Onsets come after a three-year baseline, so features before any onset exist for everyone.
ONSET_FIRST = date(2018, 1, 1)
ONSET_LAST = date(2024, 6, 30)
# The brain MR is part of the baseline work-up: always before any label onset.
IMAGING_FIRST = date(2015, 6, 1)
IMAGING_LAST = date(2017, 11, 30)
# "Today" for the delivery: VCF ##fileDate and the ClinVar release; never the wall clock.
DELIVERY_DATE = date(2025, 1, 15)

GENOME_FRACTION = 0.9
IMAGING_FRACTION = 0.6


@dataclass(frozen=True)
class OutcomeModel:
    intercept: float
    coefficients: dict[str, float]


# Features are centred so intercepts read as the log-odds of a 60-year-old with average values.
FEATURE_DEFINITIONS: dict[str, str] = {
    "age_decades": "(age at 2015-01-01 - 60) / 10",
    "male": "1 if sex is male",
    "systolic_per_10_mmhg": "(baseline systolic BP - 130) / 10; visible in pre-onset BP Observations",
    "ldl_per_10_mg_dl": "(baseline LDL cholesterol - 130) / 10; visible in pre-onset LDL Observations",
    "bmi_per_5": "(baseline BMI - 28) / 5",
    "diabetes": "1 if the patient has type 2 diabetes (60% prevalent at baseline, the rest diagnosed 2016-17)",
    "current_smoker": "1 if tobacco smoking status is current smoker",
    "atrial_fibrillation": "1 if the patient has atrial fibrillation (prevalent at baseline)",
    "hypertension_allele_score": "AGT rs699 G + NOS3 rs1799983 T + AGTR1 rs5186 C dosage - 2",
    "fh_carrier": "1 if carrying an LDLR / PCSK9 / APOB familial-hypercholesterolemia allele",
    "lpa_risk_dosage": "LPA rs10455872 G dosage",
    "chr9p21_risk_dosage": "CDKN2B-AS1 rs1333049 G dosage",
    "f5_leiden_carrier": "1 if carrying F5 rs6025 T (factor V Leiden)",
    "small_vessel_carrier": "1 if carrying the NOTCH3 or HTRA1 pathogenic allele",
    "apoe_e4_dosage": "number of APOE e4 haplotypes (rs429358 C)",
    "apoe_e2_dosage": "number of APOE e2 haplotypes (rs7412 T)",
    "trem2_carrier": "1 if carrying TREM2 rs75932628 T (R47H)",
    "psen1_carrier": "1 if carrying the PSEN1 pathogenic allele",
    "lesion_log_ml": "log(1 + white-matter lesion volume in mL); the lesion is label 1 of the MR mask",
    "hippocampal_atrophy_per_10pct": "hippocampal volume loss / 10%; label 2 of the MR mask is smaller",
}

# Intercepts were calibrated on 40,000 simulated patients for the target prevalences in TARGET_PREVALENCE.
LABEL_MODEL: dict[str, OutcomeModel] = {
    "hypertension": OutcomeModel(
        intercept=-0.58,
        coefficients={
            "age_decades": 0.35,
            "male": 0.1,
            "systolic_per_10_mmhg": 0.9,
            "bmi_per_5": 0.35,
            "diabetes": 0.5,
            "hypertension_allele_score": 0.4,
        },
    ),
    "coronary_heart_disease": OutcomeModel(
        intercept=-3.1,
        coefficients={
            "age_decades": 0.55,
            "male": 0.6,
            "ldl_per_10_mg_dl": 0.18,
            "systolic_per_10_mmhg": 0.2,
            "diabetes": 0.6,
            "current_smoker": 0.7,
            "fh_carrier": 1.2,
            "lpa_risk_dosage": 0.6,
            "chr9p21_risk_dosage": 0.35,
        },
    ),
    "stroke": OutcomeModel(
        intercept=-3.25,
        coefficients={
            "age_decades": 0.5,
            "systolic_per_10_mmhg": 0.3,
            "atrial_fibrillation": 1.3,
            "diabetes": 0.4,
            "current_smoker": 0.5,
            "f5_leiden_carrier": 0.9,
            "small_vessel_carrier": 1.2,
            "lesion_log_ml": 1.6,
        },
    ),
    "alzheimers_disease": OutcomeModel(
        intercept=-4.82,
        coefficients={
            "age_decades": 1.0,
            "apoe_e4_dosage": 1.1,
            "apoe_e2_dosage": -0.6,
            "trem2_carrier": 1.1,
            "psen1_carrier": 3.5,
            "diabetes": 0.3,
            "hippocampal_atrophy_per_10pct": 0.9,
        },
    ),
}
TARGET_PREVALENCE: dict[str, float] = {
    "hypertension": 0.38,
    "coronary_heart_disease": 0.15,
    "stroke": 0.11,
    "alzheimers_disease": 0.11,
}

# APOE haplotype frequencies (e4 slightly enriched over European ~0.14).
APOE_HAPLOTYPES: dict[str, float] = {"e2": 0.08, "e3": 0.77, "e4": 0.15}


@dataclass(frozen=True)
class Baseline:
    """Clinical state at STUDY_START; clinical.py draws noisy measurements around it."""

    age: float
    height_cm: float
    bmi: float
    systolic: float
    diastolic: float
    ldl: float
    hdl: float
    heart_rate: float
    smoking: str  # never | former | current
    diabetes: bool
    diabetes_onset: date | None  # on or before STUDY_START when prevalent
    atrial_fibrillation: bool


@dataclass(frozen=True)
class GenomicFactors:
    dosages: dict[str, int]  # ALT-allele count per RiskVariant.key
    apoe: tuple[str, str]  # the two APOE haplotypes, e.g. ("e3", "e4")

    def dosage(self, key: str) -> int:
        return self.dosages[key]

    @property
    def apoe_e4_dosage(self) -> int:
        return self.apoe.count("e4")

    @property
    def apoe_e2_dosage(self) -> int:
        return self.apoe.count("e2")

    @property
    def fh_carrier(self) -> bool:
        return any(self.dosages[k] > 0 for k in ("LDLR_synthetic", "PCSK9_synthetic_gof", "APOB_R3527Q"))

    @property
    def small_vessel_carrier(self) -> bool:
        return self.dosages["NOTCH3_synthetic"] > 0 or self.dosages["HTRA1_synthetic"] > 0

    @property
    def hypertension_allele_score(self) -> int:
        return self.dosages["AGT_rs699"] + self.dosages["NOS3_rs1799983"] + self.dosages["AGTR1_rs5186"]


@dataclass(frozen=True)
class BrainFactors:
    """What the MR shows; exists for every patient, is only *seen* for those with imaging."""

    lesion_volume_mm3: float  # 0.0 when there is no white-matter lesion
    hippocampal_atrophy: float  # fraction of hippocampal volume lost, 0.0 - 0.5


@dataclass(frozen=True)
class Outcome:
    label: int
    onset: date | None
    logit: float
    probability: float


@dataclass(frozen=True)
class Patient:
    index: int
    id: str
    sex: str  # FHIR administrative gender: male | female
    birth_date: date
    baseline: Baseline
    genome: GenomicFactors
    brain: BrainFactors
    features: dict[str, float]
    outcomes: dict[str, Outcome]
    has_genome: bool
    has_imaging: bool
    imaging_date: date

    def onset(self, outcome: str) -> date | None:
        return self.outcomes[outcome].onset


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _uniform_date(rng: np.random.Generator, first: date, last: date) -> date:
    return first + timedelta(days=int(rng.integers(0, (last - first).days + 1)))


def _draw_genome(rng: np.random.Generator) -> GenomicFactors:
    names = list(APOE_HAPLOTYPES)
    weights = np.array(list(APOE_HAPLOTYPES.values()))
    first, second = rng.choice(len(names), size=2, p=weights / weights.sum())
    apoe = (names[int(first)], names[int(second)])
    dosages: dict[str, int] = {}
    for variant in RISK_VARIANTS:
        # Drawn for every variant (APOE too) so the stream position never depends on the variant list order.
        drawn = int(rng.binomial(2, variant.alt_frequency))
        dosages[variant.key] = drawn
    dosages["APOE_rs429358"] = apoe.count("e4")
    dosages["APOE_rs7412"] = apoe.count("e2")
    return GenomicFactors(dosages=dosages, apoe=apoe)


def _draw_baseline(rng: np.random.Generator, age: float, male: bool, genome: GenomicFactors) -> Baseline:
    age_decades = (age - 60.0) / 10.0
    height = rng.normal(176.0, 7.0) if male else rng.normal(163.0, 6.5)
    bmi = float(np.clip(rng.normal(28.5, 5.2), 17.0, 52.0))
    bmi_per_5 = (bmi - 28.0) / 5.0
    smoking_draw = rng.random()
    smoking = "current" if smoking_draw < 0.15 else "former" if smoking_draw < 0.43 else "never"
    diabetes = rng.random() < sigmoid(-2.3 + 0.55 * bmi_per_5 + 0.25 * age_decades)
    prevalent = rng.random() < 0.6
    # Incident diabetes is diagnosed during the baseline period, before any outcome onset, so the label
    # model's "diabetes" is visible (Condition, HbA1c) in pre-onset records.
    incident_day = _uniform_date(rng, STUDY_START + timedelta(days=365), ONSET_FIRST - timedelta(days=30))
    prevalent_day = STUDY_START - timedelta(days=int(rng.integers(30, 3650)))
    diabetes_onset = (prevalent_day if prevalent else incident_day) if diabetes else None
    # Blood pressure carries the hypertension alleles' effect, so genotype and BP are correlated as in life.
    systolic = 122.0 + 5.0 * age_decades + 4.0 * bmi_per_5 + 3.0 * (genome.hypertension_allele_score - 2)
    systolic = float(np.clip(systolic + 3.0 * male + rng.normal(0.0, 13.0), 92.0, 200.0))
    diastolic = float(
        np.clip(76.0 + 0.3 * (systolic - 122.0) - 1.5 * age_decades + rng.normal(0, 6), 50, 120)
    )
    # Familial hypercholesterolemia alleles act through LDL (and directly, see LABEL_MODEL).
    ldl = float(np.clip(125.0 + 70.0 * genome.fh_carrier + rng.normal(0.0, 28.0), 50.0, 320.0))
    hdl = float(np.clip(48.0 + 9.0 * (not male) - 2.0 * bmi_per_5 + rng.normal(0.0, 10.0), 20.0, 100.0))
    heart_rate = float(np.clip(rng.normal(72.0, 8.0), 48.0, 110.0))
    atrial_fibrillation = rng.random() < sigmoid(-3.2 + 0.7 * age_decades)
    return Baseline(
        age=age,
        height_cm=float(height),
        bmi=bmi,
        systolic=systolic,
        diastolic=diastolic,
        ldl=ldl,
        hdl=hdl,
        heart_rate=heart_rate,
        smoking=smoking,
        diabetes=bool(diabetes),
        diabetes_onset=diabetes_onset,
        atrial_fibrillation=bool(atrial_fibrillation),
    )


def _draw_brain(rng: np.random.Generator, baseline: Baseline, genome: GenomicFactors) -> BrainFactors:
    """Small-vessel disease (lesions) follows age, BP, smoking, diabetes and NOTCH3/HTRA1 (CADASIL-like)."""
    age_decades = (baseline.age - 60.0) / 10.0
    small_vessel = (
        -0.9
        + 0.5 * age_decades
        + 0.35 * (baseline.systolic - 130.0) / 10.0
        + 0.5 * (baseline.smoking == "current")
        + 0.4 * baseline.diabetes
        + 2.0 * genome.small_vessel_carrier
    )
    has_lesion = rng.random() < sigmoid(small_vessel)
    # Higher small-vessel burden -> larger lesions, hence "larger and more frequent" in stroke-prone patients.
    log_volume = rng.normal(math.log(600.0) + 0.35 * max(small_vessel, 0.0), 0.6)
    lesion = float(np.clip(math.exp(log_volume), 150.0, 6000.0)) if has_lesion else 0.0
    atrophy = (
        0.08 + 0.05 * age_decades + 0.06 * genome.apoe_e4_dosage + 0.15 * genome.dosage("PSEN1_synthetic")
    )
    atrophy = float(np.clip(atrophy + rng.normal(0.0, 0.04), 0.0, 0.5))
    return BrainFactors(lesion_volume_mm3=round(lesion, 1), hippocampal_atrophy=round(atrophy, 4))


def risk_features(
    baseline: Baseline, male: bool, genome: GenomicFactors, brain: BrainFactors
) -> dict[str, float]:
    """The named features of LABEL_MODEL (see FEATURE_DEFINITIONS)."""
    return {
        "age_decades": (baseline.age - 60.0) / 10.0,
        "male": float(male),
        "systolic_per_10_mmhg": (baseline.systolic - 130.0) / 10.0,
        "ldl_per_10_mg_dl": (baseline.ldl - 130.0) / 10.0,
        "bmi_per_5": (baseline.bmi - 28.0) / 5.0,
        "diabetes": float(baseline.diabetes),
        "current_smoker": float(baseline.smoking == "current"),
        "atrial_fibrillation": float(baseline.atrial_fibrillation),
        "hypertension_allele_score": float(genome.hypertension_allele_score - 2),
        "fh_carrier": float(genome.fh_carrier),
        "lpa_risk_dosage": float(genome.dosage("LPA_rs10455872")),
        "chr9p21_risk_dosage": float(genome.dosage("CDKN2B-AS1_rs1333049")),
        "f5_leiden_carrier": float(genome.dosage("F5_Leiden") > 0),
        "small_vessel_carrier": float(genome.small_vessel_carrier),
        "apoe_e4_dosage": float(genome.apoe_e4_dosage),
        "apoe_e2_dosage": float(genome.apoe_e2_dosage),
        "trem2_carrier": float(genome.dosage("TREM2_R47H") > 0),
        "psen1_carrier": float(genome.dosage("PSEN1_synthetic") > 0),
        "lesion_log_ml": math.log1p(brain.lesion_volume_mm3 / 1000.0),
        "hippocampal_atrophy_per_10pct": brain.hippocampal_atrophy / 0.1,
    }


def outcome_logit(outcome: str, features: dict[str, float]) -> float:
    model = LABEL_MODEL[outcome]
    return model.intercept + sum(coef * features[name] for name, coef in model.coefficients.items())


def _draw_outcomes(rng: np.random.Generator, features: dict[str, float]) -> dict[str, Outcome]:
    outcomes: dict[str, Outcome] = {}
    for outcome in OUTCOMES:
        logit = outcome_logit(outcome, features)
        probability = sigmoid(logit)
        label = int(rng.random() < probability)
        onset = _uniform_date(rng, ONSET_FIRST, ONSET_LAST)
        outcomes[outcome] = Outcome(
            label=label,
            onset=onset if label else None,
            logit=round(logit, 4),
            probability=round(probability, 4),
        )
    return outcomes


def draw_patient(seed: int, index: int, imaging_fraction: float = IMAGING_FRACTION) -> Patient:
    """One patient, from its own stream: the same (seed, index) always gives the same patient. The draw
    behind `has_imaging` does not depend on `imaging_fraction`: a smaller fraction images a subset of the
    patients a larger one images, everything else equal."""
    rng = rng_for(seed, Stream.COHORT, index)
    male = bool(rng.random() < 0.48)
    age = float(np.clip(rng.normal(63.0, 11.0), 40.0, 90.0))
    birth_date = STUDY_START - timedelta(days=int(age * 365.25))
    genome = _draw_genome(rng)
    baseline = _draw_baseline(rng, age, male, genome)
    brain = _draw_brain(rng, baseline, genome)
    features = risk_features(baseline, male, genome, brain)
    outcomes = _draw_outcomes(rng, features)
    has_genome = bool(rng.random() < GENOME_FRACTION)
    has_imaging = bool(rng.random() < imaging_fraction)
    imaging_date = _uniform_date(rng, IMAGING_FIRST, IMAGING_LAST)
    return Patient(
        index=index,
        id=stable_uuid(seed, "Patient", index),
        sex="male" if male else "female",
        birth_date=birth_date,
        baseline=baseline,
        genome=genome,
        brain=brain,
        features={k: round(v, 4) for k, v in features.items()},
        outcomes=outcomes,
        has_genome=has_genome,
        has_imaging=has_imaging,
        imaging_date=imaging_date,
    )


def draw_cohort(seed: int, patients: int, imaging_fraction: float = IMAGING_FRACTION) -> list[Patient]:
    return [draw_patient(seed, index, imaging_fraction) for index in range(1, patients + 1)]
