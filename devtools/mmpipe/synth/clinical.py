"""Clinical modality: FHIR R4 NDJSON, one file per resource type, one resource per line.

Each patient's history is a timeline of encounters from 2015 to 2024: routine check-ups every 3-8 months
(vital signs every time, a lipid panel + HbA1c about yearly, MMSE yearly from 65, smoking status with the
labs, flu shots in season), plus one encounter per event - each outcome's diagnosis at its onset date
(inpatient for CHD and stroke), incident diabetes, and the brain MR visit for imaged patients.

Measurements are noisy draws around the cohort's latent baseline, with the time course that makes
pre-onset records informative: BP rises over the two years before a hypertension diagnosis and falls on
treatment; HbA1c drifts up before incident diabetes; MMSE declines in the three years before Alzheimer's;
LDL falls once a statin is started. Conditions use SNOMED CT, observations LOINC with UCUM units,
medications RxNorm, immunizations CVX.

About 10% of resources reference their patient (and encounter) as `urn:uuid:<id>` instead of
`<Type>/<id>`, as Bundle-derived exports do; both forms resolve to a resource id in this delivery.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from mmpipe.synth.cohort import OUTCOME_CONDITIONS, OUTCOMES, STUDY_END, STUDY_START, Patient
from mmpipe.synth.identity import Identity
from mmpipe.synth.imaging import MR_IMAGE_STORAGE_URN, SeriesPlan
from mmpipe.synth.seeding import Stream, fhir_datetime, rng_for, stable_uuid

Resource = dict[str, Any]

SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CVX = "http://hl7.org/fhir/sid/cvx"
UCUM = "http://unitsofmeasure.org"
DICOM_DCM = "http://dicom.nema.org/resources/ontology/DCM"
TERMINOLOGY = "http://terminology.hl7.org/CodeSystem"
OBSERVATION_CATEGORY = f"{TERMINOLOGY}/observation-category"
ORGANIZATION = {"display": "Synthetic General Hospital"}

RESOURCE_TYPES: tuple[str, ...] = (
    "Patient",
    "Encounter",
    "Condition",
    "Observation",
    "MedicationRequest",
    "Procedure",
    "Immunization",
    "DiagnosticReport",
    "ImagingStudy",
    "Claim",
)

# (code, display) pairs.
COMORBIDITY_CONDITIONS: dict[str, tuple[str, str]] = {
    "diabetes": ("44054006", "Diabetes mellitus type 2 (disorder)"),
    "prediabetes": ("15777000", "Prediabetes (finding)"),
    "hyperlipidemia": ("55822004", "Hyperlipidemia (disorder)"),
    "obesity": ("414916001", "Obesity (disorder)"),
    "smoker": ("77176002", "Smoker (finding)"),
    "atrial_fibrillation": ("49436004", "Atrial fibrillation (disorder)"),
}
# Self-limiting problems that carry no signal, so not every Condition is informative.
ACUTE_CONDITIONS: tuple[tuple[str, str], ...] = (
    ("195662009", "Acute viral pharyngitis (disorder)"),
    ("10509002", "Acute bronchitis (disorder)"),
    ("444814009", "Viral sinusitis (disorder)"),
    ("44465007", "Sprain of ankle (disorder)"),
)
SMOKING_STATUS: dict[str, tuple[str, str]] = {
    "never": ("266919005", "Never smoked tobacco (finding)"),
    "former": ("8517006", "Ex-smoker (finding)"),
    "current": ("77176002", "Smoker (finding)"),
}
MEDICATIONS: dict[str, tuple[str, str]] = {
    "lisinopril": ("314076", "lisinopril 10 MG Oral Tablet"),
    "amlodipine": ("197361", "amlodipine 5 MG Oral Tablet"),
    "atorvastatin_20": ("617310", "atorvastatin 20 MG Oral Tablet"),
    "atorvastatin_80": ("259255", "atorvastatin 80 MG Oral Tablet"),
    "aspirin": ("243670", "aspirin 81 MG Oral Tablet"),
    "clopidogrel": ("309362", "clopidogrel 75 MG Oral Tablet"),
    "warfarin": ("855332", "warfarin sodium 5 MG Oral Tablet"),
    "metformin": ("860975", "24 HR metformin hydrochloride 500 MG Extended Release Oral Tablet"),
    "donepezil": ("997224", "donepezil hydrochloride 10 MG Oral Tablet"),
}
PROCEDURES: dict[str, tuple[str, str]] = {
    "ecg": ("29303009", "Electrocardiographic procedure"),
    "pci": ("415070008", "Percutaneous coronary intervention (procedure)"),
    "ct_head": ("303653007", "Computed tomography of head (procedure)"),
    "mri_head": ("241601008", "Magnetic resonance imaging of head (procedure)"),
    "medication_reconciliation": ("430193006", "Medication reconciliation (procedure)"),
    "depression_screening": ("171207006", "Depression screening (procedure)"),
}
VACCINES: dict[str, tuple[str, str]] = {
    "influenza": ("140", "Influenza, seasonal, injectable, preservative free"),
    "pneumococcal": ("33", "pneumococcal polysaccharide vaccine, 23 valent"),
    "zoster": ("187", "zoster vaccine recombinant"),
    "td": ("113", "Td (adult) preservative free"),
}
ENCOUNTER_TYPES: dict[str, tuple[str, str, str]] = {
    # kind: (v3 ActCode class, SNOMED type code, display)
    "checkup": ("AMB", "185349003", "Encounter for check up (procedure)"),
    "problem": ("AMB", "185347001", "Encounter for problem (procedure)"),
    "inpatient": ("IMP", "32485007", "Hospital admission (procedure)"),
    "imaging": ("AMB", "185347001", "Encounter for problem (procedure)"),
}
# Outcome -> how its diagnosis encounter looks and what is started at diagnosis.
OUTCOME_CARE: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "hypertension": ("problem", ("lisinopril",), ()),
    "coronary_heart_disease": ("inpatient", ("atorvastatin_80", "aspirin"), ("ecg",)),
    "stroke": ("inpatient", ("clopidogrel", "atorvastatin_80"), ("ct_head", "ecg")),
    "alzheimers_disease": ("problem", ("donepezil",), ()),
}


@dataclass(frozen=True)
class Visit:
    day: date
    kind: str  # a key of ENCOUNTER_TYPES
    minute: int  # start, minutes after midnight (UTC)
    duration_minutes: int
    reason: str | None = None  # an outcome, "diabetes" or "imaging" for event visits


@dataclass
class PatientChart:
    """Builds one patient's resources; ids are UUIDv5 of (seed, patient, type, running number)."""

    seed: int
    patient: Patient
    rng: np.random.Generator
    resources: dict[str, list[Resource]] = field(default_factory=lambda: {t: [] for t in RESOURCE_TYPES})
    _counter: Counter[str] = field(default_factory=Counter)

    def new_id(self, resource_type: str) -> str:
        self._counter[resource_type] += 1
        return stable_uuid(self.seed, self.patient.id, resource_type, self._counter[resource_type])

    def add(self, resource: Resource) -> Resource:
        self.resources[resource["resourceType"]].append(resource)
        return resource

    def reference(self, resource_type: str, resource_id: str, bundle_style: bool) -> dict[str, str]:
        return {"reference": f"urn:uuid:{resource_id}" if bundle_style else f"{resource_type}/{resource_id}"}

    def subject_and_encounter(self, encounter: Resource) -> dict[str, dict[str, str]]:
        """The subject/encounter references of a resource; ~10% in the Bundle (urn:uuid) style."""
        bundle_style = bool(self.rng.random() < 0.1)
        return {
            "subject": self.reference("Patient", self.patient.id, bundle_style),
            "encounter": self.reference("Encounter", encounter["id"], bundle_style),
        }


def _coding(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def _coded(system: str, code: str) -> dict[str, Any]:
    """A CodeableConcept from a FHIR terminology code (no display needed)."""
    return {"coding": [{"system": system, "code": code}]}


def _quantity(value: float, unit: str, decimals: int = 1) -> dict[str, Any]:
    return {"value": round(float(value), decimals), "unit": unit, "system": UCUM, "code": unit}


def _category(code: str, display: str) -> list[dict[str, Any]]:
    return [{"coding": [{"system": OBSERVATION_CATEGORY, "code": code, "display": display}]}]


def _years_since_start(day: date) -> float:
    return (day - STUDY_START).days / 365.25


def _age_on(patient: Patient, day: date) -> float:
    return (day - patient.birth_date).days / 365.25


# ---------------------------------------------------------------------------------------------------------
# Timeline
# ---------------------------------------------------------------------------------------------------------


def plan_visits(patient: Patient, rng: np.random.Generator, with_imaging: bool) -> list[Visit]:
    """Routine check-ups every 3-8 months plus one visit per event, in date order."""
    visits = []
    day = STUDY_START + timedelta(days=int(rng.integers(0, 120)))
    while day <= STUDY_END:
        visits.append(Visit(day, "checkup", int(rng.integers(8 * 60, 17 * 60)), int(rng.integers(15, 45))))
        day += timedelta(days=int(rng.integers(90, 240)))
    for outcome in OUTCOMES:
        onset = patient.onset(outcome)
        if onset is not None:
            kind = OUTCOME_CARE[outcome][0]
            length = int(rng.integers(2, 6)) * 24 * 60 if kind == "inpatient" else int(rng.integers(20, 60))
            visits.append(Visit(onset, kind, int(rng.integers(0, 24 * 60)), length, outcome))
    onset = patient.baseline.diabetes_onset
    if onset is not None and onset > STUDY_START:
        visits.append(Visit(onset, "problem", int(rng.integers(8 * 60, 17 * 60)), 30, "diabetes"))
    if with_imaging:
        visits.append(
            Visit(patient.imaging_date, "imaging", int(rng.integers(7 * 60, 18 * 60)), 45, "imaging")
        )
    return sorted(visits, key=lambda v: (v.day, v.minute))


def encounter_resource(chart: PatientChart, visit: Visit) -> Resource:
    act_class, type_code, type_display = ENCOUNTER_TYPES[visit.kind]
    bundle_style = bool(chart.rng.random() < 0.1)
    encounter: Resource = {
        "resourceType": "Encounter",
        "id": chart.new_id("Encounter"),
        "status": "finished",
        "class": {"system": f"{TERMINOLOGY}/v3-ActCode", "code": act_class},
        "type": [_coding(SNOMED, type_code, type_display)],
        "subject": chart.reference("Patient", chart.patient.id, bundle_style),
        "period": {
            "start": fhir_datetime(visit.day, visit.minute),
            "end": fhir_datetime(visit.day, visit.minute + visit.duration_minutes),
        },
        "serviceProvider": ORGANIZATION,
    }
    return chart.add(encounter)


# ---------------------------------------------------------------------------------------------------------
# Measurement model: noisy values around the latent baseline, shaped by the patient's events
# ---------------------------------------------------------------------------------------------------------


def _ramp_before(day: date, onset: date | None, years: float) -> float:
    """0 until `years` before onset, rising linearly to 1 at onset, 1 afterwards."""
    if onset is None:
        return 0.0
    days_left = (onset - day).days
    return float(np.clip(1.0 - days_left / (365.25 * years), 0.0, 1.0))


def systolic_on(patient: Patient, day: date, noise: float) -> float:
    onset = patient.onset("hypertension")
    value = patient.baseline.systolic + 0.4 * _years_since_start(day)
    value += 12.0 * _ramp_before(day, onset, 2.0)  # untreated rise before the diagnosis
    if onset is not None and day > onset:
        value -= 14.0  # on an ACE inhibitor
    return float(np.clip(value + noise, 85.0, 230.0))


def hba1c_on(patient: Patient, day: date, noise: float) -> float:
    onset = patient.baseline.diabetes_onset
    bmi_effect = 0.04 * (patient.baseline.bmi - 28.0)
    if onset is not None and day >= onset:
        value = 7.3 + bmi_effect
    elif onset is not None:
        value = 5.7 + 0.7 * _ramp_before(day, onset, 2.0) + bmi_effect
    else:
        value = 5.3 + bmi_effect
    return float(np.clip(value + noise, 4.3, 12.5))


def mmse_on(patient: Patient, day: date, noise: float) -> int:
    onset = patient.onset("alzheimers_disease")
    value = 29.5 - 0.08 * max(_age_on(patient, day) - 65.0, 0.0) - 5.0 * patient.brain.hippocampal_atrophy
    value -= 4.0 * _ramp_before(day, onset, 3.0)  # prodromal decline
    if onset is not None and day > onset:
        value -= 2.5 * (day - onset).days / 365.25
    return int(np.clip(round(value + noise), 0, 30))


def ldl_on(patient: Patient, day: date, statin_day: date | None, noise: float) -> float:
    value = patient.baseline.ldl + noise
    if statin_day is not None and day > statin_day:
        value *= 0.65
    return float(np.clip(value, 30.0, 350.0))


# ---------------------------------------------------------------------------------------------------------
# Resource builders
# ---------------------------------------------------------------------------------------------------------


# LOINC (code, display) of every observation written.
BP_PANEL = ("85354-9", "Blood pressure panel with all children optional")
SYSTOLIC = ("8480-6", "Systolic blood pressure")
DIASTOLIC = ("8462-4", "Diastolic blood pressure")
HEART_RATE = ("8867-4", "Heart rate")
BODY_WEIGHT = ("29463-7", "Body weight")
BODY_HEIGHT = ("8302-2", "Body height")
BMI = ("39156-5", "Body mass index (BMI) [Ratio]")
TOTAL_CHOLESTEROL = ("2093-3", "Cholesterol [Mass/volume] in Serum or Plasma")
LDL = ("18262-6", "Cholesterol in LDL [Mass/volume] in Serum or Plasma by Direct assay")
HDL = ("2085-9", "Cholesterol in HDL [Mass/volume] in Serum or Plasma")
HBA1C = ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood")
SMOKING = ("72166-2", "Tobacco smoking status")
MMSE = ("72107-6", "Mini-Mental State Examination [MMSE] total score")
LIPID_PANEL = ("57698-3", "Lipid panel with direct LDL - Serum or Plasma")

VITAL = ("vital-signs", "Vital Signs")
LAB = ("laboratory", "Laboratory")
SURVEY = ("survey", "Survey")
SOCIAL = ("social-history", "Social History")


@dataclass(frozen=True)
class Moment:
    """When and in which encounter something was observed."""

    encounter: Resource
    day: date
    minute: int


def observation(
    chart: PatientChart, at: Moment, code: tuple[str, str], category: tuple[str, str], **value: Any
) -> Resource:
    resource: Resource = {
        "resourceType": "Observation",
        "id": chart.new_id("Observation"),
        "status": "final",
        "category": _category(*category),
        "code": _coding(LOINC, *code),
        **chart.subject_and_encounter(at.encounter),
        "effectiveDateTime": fhir_datetime(at.day, at.minute),
        "issued": fhir_datetime(at.day, at.minute + 5),
        **value,
    }
    return chart.add(resource)


def measurement(
    chart: PatientChart,
    at: Moment,
    code: tuple[str, str],
    category: tuple[str, str],
    value: float,
    unit: str,
    decimals: int = 1,
) -> Resource:
    """An Observation with a UCUM valueQuantity."""
    return observation(chart, at, code, category, valueQuantity=_quantity(value, unit, decimals))


def record_vitals(chart: PatientChart, encounter: Resource, visit: Visit, first: bool) -> None:
    patient, rng, day = chart.patient, chart.rng, visit.day
    at = Moment(encounter, day, visit.minute + 5)
    systolic = systolic_on(patient, day, float(rng.normal(0.0, 7.0)))
    diastolic = patient.baseline.diastolic + 0.5 * (systolic - patient.baseline.systolic)
    diastolic += rng.normal(0.0, 5.0)
    components = [
        {"code": _coding(LOINC, *SYSTOLIC), "valueQuantity": _quantity(systolic, "mm[Hg]", 0)},
        {"code": _coding(LOINC, *DIASTOLIC), "valueQuantity": _quantity(diastolic, "mm[Hg]", 0)},
    ]
    observation(chart, at, BP_PANEL, VITAL, component=components)
    heart_rate = patient.baseline.heart_rate + rng.normal(0.0, 5.0)
    if patient.baseline.atrial_fibrillation:
        heart_rate += 8.0 + abs(rng.normal(0.0, 10.0))  # irregular, often fast
    measurement(chart, at, HEART_RATE, VITAL, heart_rate, "/min", 0)
    bmi = patient.baseline.bmi + 0.12 * _years_since_start(day) + rng.normal(0.0, 0.4)
    measurement(chart, at, BODY_WEIGHT, VITAL, bmi * (patient.baseline.height_cm / 100.0) ** 2, "kg")
    measurement(chart, at, BMI, VITAL, bmi, "kg/m2")
    if first:
        measurement(chart, at, BODY_HEIGHT, VITAL, patient.baseline.height_cm, "cm")


def record_labs(chart: PatientChart, encounter: Resource, visit: Visit, statin_day: date | None) -> float:
    """Lipid panel (with its DiagnosticReport), HbA1c, smoking status and MMSE; returns the measured LDL."""
    patient, rng, day = chart.patient, chart.rng, visit.day
    at = Moment(encounter, day, visit.minute + 10)
    ldl = ldl_on(patient, day, statin_day, float(rng.normal(0.0, 10.0)))
    hdl = float(np.clip(patient.baseline.hdl + rng.normal(0.0, 4.0), 15.0, 120.0))
    triglycerides = max(40.0, rng.normal(140.0 + 20.0 * patient.baseline.diabetes, 30.0))
    lipids = [
        measurement(chart, at, TOTAL_CHOLESTEROL, LAB, ldl + hdl + triglycerides / 5.0, "mg/dL", 0),
        measurement(chart, at, LDL, LAB, ldl, "mg/dL", 0),
        measurement(chart, at, HDL, LAB, hdl, "mg/dL", 0),
    ]
    report: Resource = {
        "resourceType": "DiagnosticReport",
        "id": chart.new_id("DiagnosticReport"),
        "status": "final",
        "category": [_coding(f"{TERMINOLOGY}/v2-0074", "LAB", "Laboratory")],
        "code": _coding(LOINC, *LIPID_PANEL),
        **chart.subject_and_encounter(encounter),
        "effectiveDateTime": fhir_datetime(day, at.minute),
        "issued": fhir_datetime(day, at.minute + 120),
        "result": [{"reference": f"Observation/{o['id']}"} for o in lipids],
    }
    chart.add(report)
    measurement(chart, at, HBA1C, LAB, hba1c_on(patient, day, float(rng.normal(0.0, 0.2))), "%")
    smoking = _coding(SNOMED, *SMOKING_STATUS[patient.baseline.smoking])
    observation(chart, at, SMOKING, SOCIAL, valueCodeableConcept=smoking)
    if _age_on(patient, day) >= 65.0:
        measurement(chart, at, MMSE, SURVEY, mmse_on(patient, day, float(rng.normal(0.0, 0.8))), "{score}", 0)
    return ldl


def condition(
    chart: PatientChart,
    encounter: Resource,
    code: tuple[str, str],
    onset: date,
    recorded: Visit,
    abated: date | None = None,
) -> Resource:
    resource: Resource = {
        "resourceType": "Condition",
        "id": chart.new_id("Condition"),
        "clinicalStatus": _coded(f"{TERMINOLOGY}/condition-clinical", "resolved" if abated else "active"),
        "verificationStatus": _coded(f"{TERMINOLOGY}/condition-ver-status", "confirmed"),
        "category": [_coded(f"{TERMINOLOGY}/condition-category", "encounter-diagnosis")],
        "code": _coding(SNOMED, *code),
        **chart.subject_and_encounter(encounter),
        "onsetDateTime": fhir_datetime(onset, recorded.minute if onset == recorded.day else 0),
        "recordedDate": fhir_datetime(recorded.day, recorded.minute + 20),
    }
    if abated is not None:
        resource["abatementDateTime"] = fhir_datetime(abated, 0)
    return chart.add(resource)


def medication_request(
    chart: PatientChart, encounter: Resource, visit: Visit, medication: str, reason: Resource | None
) -> Resource:
    code, display = MEDICATIONS[medication]
    resource: Resource = {
        "resourceType": "MedicationRequest",
        "id": chart.new_id("MedicationRequest"),
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": _coding(RXNORM, code, display),
        **chart.subject_and_encounter(encounter),
        "authoredOn": fhir_datetime(visit.day, visit.minute + 25),
        "dosageInstruction": [
            {
                "text": "Take one tablet by mouth once daily",
                "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
            }
        ],
    }
    if reason is not None:
        resource["reasonReference"] = [{"reference": f"Condition/{reason['id']}"}]
    return chart.add(resource)


def procedure(chart: PatientChart, encounter: Resource, visit: Visit, name: str) -> Resource:
    start = visit.minute + int(chart.rng.integers(5, 40))
    resource: Resource = {
        "resourceType": "Procedure",
        "id": chart.new_id("Procedure"),
        "status": "completed",
        "code": _coding(SNOMED, *PROCEDURES[name]),
        **chart.subject_and_encounter(encounter),
        "performedPeriod": {
            "start": fhir_datetime(visit.day, start),
            "end": fhir_datetime(visit.day, start + int(chart.rng.integers(10, 60))),
        },
    }
    return chart.add(resource)


def immunization(chart: PatientChart, encounter: Resource, visit: Visit, vaccine: str) -> Resource:
    refs = chart.subject_and_encounter(encounter)
    resource: Resource = {
        "resourceType": "Immunization",
        "id": chart.new_id("Immunization"),
        "status": "completed",
        "vaccineCode": _coding(CVX, *VACCINES[vaccine]),
        "patient": refs["subject"],  # Immunization names its subject "patient"
        "encounter": refs["encounter"],
        "occurrenceDateTime": fhir_datetime(visit.day, visit.minute + 15),
        "primarySource": True,
    }
    return chart.add(resource)


def claim(chart: PatientChart, encounter: Resource, visit: Visit, diagnoses: list[Resource]) -> Resource:
    _, type_code, type_display = ENCOUNTER_TYPES[visit.kind]
    institutional = visit.kind == "inpatient"
    price_range = (8000.0, 40000.0) if institutional else (90.0, 400.0)
    resource: Resource = {
        "resourceType": "Claim",
        "id": chart.new_id("Claim"),
        "status": "active",
        "type": _coded(f"{TERMINOLOGY}/claim-type", "institutional" if institutional else "professional"),
        "use": "claim",
        "patient": chart.reference("Patient", chart.patient.id, False),
        "billablePeriod": encounter["period"],
        "created": encounter["period"]["end"],
        "provider": ORGANIZATION,
        "priority": _coded(f"{TERMINOLOGY}/processpriority", "normal"),
        "insurance": [{"sequence": 1, "focal": True, "coverage": {"display": "Medicare"}}],
        "diagnosis": [
            {"sequence": i + 1, "diagnosisReference": {"reference": f"Condition/{c['id']}"}}
            for i, c in enumerate(diagnoses)
        ],
        "item": [
            {
                "sequence": 1,
                "productOrService": _coding(SNOMED, type_code, type_display),
                "encounter": [{"reference": f"Encounter/{encounter['id']}"}],
            }
        ],
        "total": {"value": round(float(chart.rng.uniform(*price_range)), 2), "currency": "USD"},
    }
    if not resource["diagnosis"]:
        del resource["diagnosis"]
    return chart.add(resource)


def imaging_resources(chart: PatientChart, encounter: Resource, visit: Visit, plan: SeriesPlan) -> None:
    """ImagingStudy (linked to the DICOM by StudyInstanceUID), its Procedure and the radiology report."""
    started = fhir_datetime(visit.day, visit.minute + 10)
    modality = {"system": DICOM_DCM, "code": "MR"}
    study: Resource = {
        "resourceType": "ImagingStudy",
        "id": chart.new_id("ImagingStudy"),
        "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{plan.study_uid}"}],
        "status": "available",
        "modality": [modality],
        **chart.subject_and_encounter(encounter),
        "started": started,
        "numberOfSeries": 1,
        "numberOfInstances": plan.slices,
        "procedureCode": [_coding(SNOMED, *PROCEDURES["mri_head"])],
        "description": "MRI BRAIN WITHOUT CONTRAST",
        "series": [
            {
                "uid": plan.series_uid,
                "number": 3,
                "modality": modality,
                "description": plan.description,
                "numberOfInstances": plan.slices,
                "bodySite": {
                    "system": SNOMED,
                    "code": "12738006",
                    "display": "Brain structure (body structure)",
                },
                "started": started,
                "instance": [
                    {
                        "uid": uid,
                        "sopClass": {"system": "urn:ietf:rfc:3986", "code": MR_IMAGE_STORAGE_URN},
                        "number": k + 1,
                    }
                    for k, uid in enumerate(plan.sop_uids)
                ],
            }
        ],
    }
    chart.add(study)
    procedure(chart, encounter, visit, "mri_head")
    brain = chart.patient.brain
    findings = []
    if brain.lesion_volume_mm3 > 0:
        findings.append(
            f"Focal T2/FLAIR hyperintensity in the deep white matter, about {brain.lesion_volume_mm3 / 1000:.1f} mL, "
            "compatible with small-vessel ischemic change."
        )
    if brain.hippocampal_atrophy >= 0.2:
        findings.append("Bilateral hippocampal volume loss.")
    report: Resource = {
        "resourceType": "DiagnosticReport",
        "id": chart.new_id("DiagnosticReport"),
        "status": "final",
        "category": [_coding(f"{TERMINOLOGY}/v2-0074", "RAD", "Radiology")],
        "code": _coding(LOINC, "24590-2", "MR Brain WO contrast"),
        **chart.subject_and_encounter(encounter),
        "effectiveDateTime": started,
        "issued": fhir_datetime(visit.day, visit.minute + 240),
        "imagingStudy": [{"reference": f"ImagingStudy/{study['id']}"}],
        "conclusion": " ".join(findings) or "No acute intracranial abnormality.",
    }
    chart.add(report)


def patient_resource(patient: Patient, identity: Identity) -> Resource:
    v2_0203 = f"{TERMINOLOGY}/v2-0203"
    return {
        "resourceType": "Patient",
        "id": patient.id,
        "identifier": [
            {
                "use": "usual",
                "type": {"coding": [{"system": v2_0203, "code": "MR", "display": "Medical Record Number"}]},
                "system": "urn:oid:2.16.840.1.113883.19.5.99999.1",
                "value": identity.mrn,
            },
            {
                "type": {"coding": [{"system": v2_0203, "code": "SS", "display": "Social Security number"}]},
                "system": "http://hl7.org/fhir/sid/us-ssn",
                "value": identity.ssn,
            },
        ],
        "name": [
            {
                "use": "official",
                "family": identity.family,
                "given": [identity.given],
                "prefix": [identity.prefix],
            }
        ],
        "telecom": [{"system": "phone", "value": identity.phone, "use": "home"}],
        "gender": patient.sex,
        "birthDate": patient.birth_date.isoformat(),
        "address": [
            {
                "line": [identity.line],
                "city": identity.city,
                "state": identity.state,
                "postalCode": identity.postal_code,
                "country": "US",
            }
        ],
        "communication": [{"language": _coding("urn:ietf:bcp:47", "en-US", "English (United States)")}],
    }


# ---------------------------------------------------------------------------------------------------------
# One patient's chart
# ---------------------------------------------------------------------------------------------------------


@dataclass
class ChartState:
    """What earlier visits decided, which later visits depend on."""

    last_labs: date | None = None
    hyperlipidemia_day: date | None = None
    statin_day: date | None = None
    flu_seasons: set[int] = field(default_factory=set)
    vaccinated: set[str] = field(default_factory=set)
    prediabetes_recorded: bool = False

    def start_statin(self, day: date) -> None:
        self.statin_day = day if self.statin_day is None else min(self.statin_day, day)


def _first_visit_conditions(chart: PatientChart, encounter: Resource, visit: Visit) -> None:
    """Chronic problems already present at the first visit, and their standing medications."""
    baseline = chart.patient.baseline
    if baseline.bmi >= 30.0:
        condition(chart, encounter, COMORBIDITY_CONDITIONS["obesity"], visit.day, visit)
    if baseline.smoking == "current":
        condition(chart, encounter, COMORBIDITY_CONDITIONS["smoker"], visit.day, visit)
    if baseline.atrial_fibrillation:
        af = condition(
            chart,
            encounter,
            COMORBIDITY_CONDITIONS["atrial_fibrillation"],
            visit.day - timedelta(days=400),
            visit,
        )
        procedure(chart, encounter, visit, "ecg")
        medication_request(chart, encounter, visit, "warfarin", af)
    onset = baseline.diabetes_onset
    if onset is not None and onset <= STUDY_START:
        diabetes = condition(chart, encounter, COMORBIDITY_CONDITIONS["diabetes"], onset, visit)
        medication_request(chart, encounter, visit, "metformin", diabetes)


def _routine_visit(
    chart: PatientChart, encounter: Resource, visit: Visit, state: ChartState, first: bool
) -> list[Resource]:
    patient, rng = chart.patient, chart.rng
    diagnoses: list[Resource] = []
    record_vitals(chart, encounter, visit, first)
    if state.last_labs is None or (visit.day - state.last_labs).days >= 300:
        ldl = record_labs(chart, encounter, visit, state.statin_day)
        state.last_labs = visit.day
        if state.hyperlipidemia_day is None and ldl >= 160.0:
            # Diagnosed from the measured value; half the diagnosed start a statin (then LDL falls).
            state.hyperlipidemia_day = visit.day
            found = condition(chart, encounter, COMORBIDITY_CONDITIONS["hyperlipidemia"], visit.day, visit)
            diagnoses.append(found)
            if rng.random() < 0.5:
                medication_request(chart, encounter, visit, "atorvastatin_20", found)
                state.start_statin(visit.day)
    diabetes_onset = patient.baseline.diabetes_onset
    if (
        diabetes_onset is not None
        and not state.prediabetes_recorded
        and diabetes_onset > visit.day
        and (diabetes_onset - visit.day).days <= 730
    ):
        state.prediabetes_recorded = True
        diagnoses.append(condition(chart, encounter, COMORBIDITY_CONDITIONS["prediabetes"], visit.day, visit))
    if visit.day.month >= 9 and visit.day.year not in state.flu_seasons and rng.random() < 0.7:
        state.flu_seasons.add(visit.day.year)
        immunization(chart, encounter, visit, "influenza")
    age = _age_on(patient, visit.day)
    for vaccine, min_age, chance in (("pneumococcal", 65.0, 0.5), ("zoster", 50.0, 0.15), ("td", 0.0, 0.05)):
        if vaccine not in state.vaccinated and age >= min_age and rng.random() < chance:
            state.vaccinated.add(vaccine)
            immunization(chart, encounter, visit, vaccine)
    if rng.random() < 0.08:
        code = ACUTE_CONDITIONS[int(rng.integers(0, len(ACUTE_CONDITIONS)))]
        abated = visit.day + timedelta(days=int(rng.integers(7, 21)))
        diagnoses.append(
            condition(
                chart, encounter, code, visit.day - timedelta(days=int(rng.integers(1, 5))), visit, abated
            )
        )
    if rng.random() < 0.15:
        procedure(
            chart,
            encounter,
            visit,
            "medication_reconciliation" if rng.random() < 0.6 else "depression_screening",
        )
    return diagnoses


def _outcome_visit(
    chart: PatientChart, encounter: Resource, visit: Visit, outcome: str, state: ChartState
) -> list[Resource]:
    """The diagnosis of a label: the Condition that defines it, then the care it triggers."""
    _, medications, procedures = OUTCOME_CARE[outcome]
    diagnosis = condition(chart, encounter, OUTCOME_CONDITIONS[outcome], visit.day, visit)
    for name in procedures:
        procedure(chart, encounter, visit, name)
    if outcome == "coronary_heart_disease" and chart.rng.random() < 0.5:
        procedure(chart, encounter, visit, "pci")
        medication_request(chart, encounter, visit, "clopidogrel", diagnosis)
    for medication in medications:
        medication_request(chart, encounter, visit, medication, diagnosis)
    if any(m.startswith("atorvastatin") for m in medications):
        state.start_statin(visit.day)
    if outcome != "alzheimers_disease":
        record_vitals(chart, encounter, visit, first=False)
    return [diagnosis]


def build_chart(
    seed: int, patient: Patient, identity: Identity, plan: SeriesPlan | None
) -> dict[str, list[Resource]]:
    """All resources of one patient, by resource type."""
    chart = PatientChart(seed=seed, patient=patient, rng=rng_for(seed, Stream.CLINICAL, patient.index))
    chart.add(patient_resource(patient, identity))
    state = ChartState()
    first = True
    for visit in plan_visits(patient, chart.rng, with_imaging=plan is not None):
        encounter = encounter_resource(chart, visit)
        diagnoses: list[Resource] = []
        if visit.kind == "checkup":
            if first:
                _first_visit_conditions(chart, encounter, visit)
            diagnoses = _routine_visit(chart, encounter, visit, state, first)
            first = False
        elif visit.reason in OUTCOMES:
            diagnoses = _outcome_visit(chart, encounter, visit, visit.reason, state)
        elif visit.reason == "diabetes":
            found = condition(chart, encounter, COMORBIDITY_CONDITIONS["diabetes"], visit.day, visit)
            medication_request(chart, encounter, visit, "metformin", found)
            diagnoses = [found]
        elif visit.reason == "imaging" and plan is not None:
            imaging_resources(chart, encounter, visit, plan)
        if visit.kind == "inpatient" or chart.rng.random() < 0.08:
            claim(chart, encounter, visit, diagnoses)
    return chart.resources


class NdjsonWriter:
    """Appends resources to clinical/<ResourceType>.ndjson (one compact JSON object per line).

    A file is created with its first resource: a type with no resources gets no (empty) file, which the
    pipeline would rightly quarantine as an empty delivery.
    """

    def __init__(self, clinical_dir: Path) -> None:
        clinical_dir.mkdir(parents=True, exist_ok=True)
        self._dir = clinical_dir
        self._handles: dict[str, TextIO] = {}
        self.counts: Counter[str] = Counter()

    def write(self, resources: dict[str, list[Resource]]) -> None:
        for resource_type, items in resources.items():
            if not items:
                continue
            if resource_type not in self._handles:
                path = self._dir / f"{resource_type}.ndjson"
                self._handles[resource_type] = path.open("w", encoding="utf-8")
            handle = self._handles[resource_type]
            for item in items:
                handle.write(json.dumps(item, separators=(",", ":"), ensure_ascii=False))
                handle.write("\n")
            self.counts[resource_type] += len(items)

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()

    def __enter__(self) -> NdjsonWriter:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
