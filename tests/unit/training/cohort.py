"""A synthetic dataset snapshot in the training job's input contract, built with numpy.

Hypertension and stroke depend on one clinical column (clinical__sbp) and one genomic column
(genomic__prs); every other column is noise. Some patients have no genomic or no imaging data (all their
columns of that modality empty), and some are not eligible for stroke (empty label).
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

SIGNAL = 1.0
NOISE = {"clinical": 8, "genomic": 6, "imaging": 4}  # extra noise columns per modality
CLINICAL = ["clinical__age_at_index_years", "clinical__sbp", "clinical__bmi", "clinical__sex"] + [
    f"clinical__lab_{i}" for i in range(NOISE["clinical"])
]
GENOMIC = ["genomic__prs", "genomic__apoe4_alleles"] + [
    f"genomic__burden_{i}" for i in range(NOISE["genomic"])
]
IMAGING = ["imaging__hippocampus_volume_ml", "imaging__lesion_volume_ml"] + [
    f"imaging__texture_{i}" for i in range(NOISE["imaging"])
]
OUTCOMES = ["hypertension", "stroke", "coronary_heart_disease", "alzheimers_disease"]


def synthetic_frame(patients: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ids = [f"pt-{i:04d}" for i in range(patients)]
    sbp = rng.normal(0, 1, patients)
    prs = rng.normal(0, 1, patients)
    frame = pd.DataFrame(
        {
            "patient_id": ids,
            "clinical__age_at_index_years": rng.normal(60, 10, patients).round(),
            "clinical__sbp": (130 + 15 * sbp).round(1),
            "clinical__bmi": rng.normal(27, 4, patients).round(1),
            "clinical__sex": rng.choice(["female", "male"], patients),
            "genomic__prs": prs.round(4),
            "genomic__apoe4_alleles": rng.integers(0, 3, patients).astype(float),
            "imaging__hippocampus_volume_ml": rng.normal(3.5, 0.4, patients).round(3),
            "imaging__lesion_volume_ml": rng.exponential(0.5, patients).round(3),
        }
    )
    for modality, count in NOISE.items():
        name = {"clinical": "lab", "genomic": "burden", "imaging": "texture"}[modality]
        for i in range(count):
            frame[f"{modality}__{name}_{i}"] = rng.normal(0, 1, patients).round(4)
    no_genome = rng.random(patients) < 0.15
    no_imaging = rng.random(patients) < 0.4
    frame.loc[no_genome, GENOMIC] = np.nan
    frame.loc[no_imaging, IMAGING] = np.nan
    # The outcomes follow the true values (also where the genome is missing): log-odds SIGNAL per SD.
    hypertension = SIGNAL * (sbp + prs) + rng.logistic(0, 1, patients) > 0
    stroke = SIGNAL * (sbp + prs) + rng.logistic(0, 1, patients) > 0.8
    frame["hypertension"] = pd.array(hypertension, dtype="boolean")
    frame["stroke"] = pd.array(stroke, dtype="boolean")
    frame.loc[rng.random(patients) < 0.1, "stroke"] = pd.NA  # not eligible: e.g. no index date
    frame["coronary_heart_disease"] = pd.array(rng.random(patients) < 0.2, dtype="boolean")
    frame["alzheimers_disease"] = pd.array(rng.random(patients) < 0.1, dtype="boolean")
    return frame


def manifest_for(frame: pd.DataFrame, dataset_id: str = "ds-test-0001") -> dict[str, object]:
    modalities = {"clinical": CLINICAL, "genomic": GENOMIC, "imaging": IMAGING}
    prevalence = {}
    for outcome in OUTCOMES:
        eligible = frame[outcome].dropna()
        prevalence[outcome] = {
            "eligible": len(eligible),
            "positives": int(eligible.sum()),
            "prevalence": float(eligible.mean()),
        }
    return {
        "dataset_id": dataset_id,
        "created_at": "2026-11-01T00:00:00+00:00",
        "run_id": "run-test",
        "rows": len(frame),
        "outcomes": OUTCOMES,
        "modalities": modalities,
        "patients_per_modality": {m: int(frame[c].notna().any(axis=1).sum()) for m, c in modalities.items()},
        "prevalence": prevalence,
        # as mmhealth.training.dataset writes it from identity.links
        "linkage": {
            "patient_id": {"linked": len(frame), "unlinked": 0, "first_unlinked": []},
            "vcf_sample": {
                "linked": 640,
                "unlinked": 2,
                "first_unlinked": ["SYNTH_OC_0007", "SYNTH_OC_0009"],
            },
            "dicom_patient_id": {"linked": 120, "unlinked": 0, "first_unlinked": []},
        },
    }


def patients_for(frame: pd.DataFrame, count: int) -> list[dict[str, object]]:
    return [
        {
            "patient_id": pid,
            "timeline": [
                {
                    "date": "2021-03-04",
                    "kind": "Condition",
                    "code": "59621000",
                    "display": "Essential hypertension",
                },
                {
                    "date": "2019-01-02",
                    "kind": "Observation",
                    "code": "8480-6",
                    "display": f"Systolic BP <b>{140 + i}</b>",
                },
            ],
            "variants": [
                {"gene": "APOE", "variant": "rs429358 C", "significance": "risk_factor", "zygosity": "het"},
                {"gene": "LDLR", "variant": "c.1A>G", "significance": "Pathogenic", "zygosity": "het"},
            ],
            "radiomics": {"hippocampus": {"volume_ml": 3.4123, "firstorder_mean": 512.3}},
            "header": {
                "age": 60 + i,
                "sex": "female" if i % 2 else "male",
                "index_date": "2020-01-01",
                "labels": {"stroke": {"label": i % 2, "onset": "2021-06-01" if i % 2 else None}},
            },
            "measurements": {"systolic_mmhg": [["2018-01-01", 130.0 + i], ["2019-01-02", 140.0 + i]]},
            "images": {"series_uid": f"1.2.{i}", "overlay": "images/1.2.0/overlay.png"} if i == 0 else {},
        }
        for i, pid in enumerate(frame["patient_id"].head(count))
    ]


def tiny_png(size: int = 8) -> bytes:
    """A valid grayscale PNG (a gradient): what the report embeds as a radiomics picture."""
    raw = b"".join(b"\x00" + bytes((x * 32) % 256 for x in range(size)) for _ in range(size))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", size, size, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


# The snapshot's population.json, as mmhealth.training.population writes it (counts only).
POPULATION = {
    "clinical": {
        "age_sex": [{"band": "60-69", "sex": "female", "patients": 3}, {"band": "60-69", "sex": "male", "patients": 2}],
        "encounters_by_month": [{"month": "2017-03", "count": 4}, {"month": "2017-04", "count": 6}],
        "conditions": [{"code": "44054006", "display": "Diabetes <type 2>", "patients": 3}],
        "procedures": [],
        "medications": [{"code": "314076", "display": "lisinopril", "patients": 2}],
        "claims_by_month": [{"month": "2017-03", "claims": 2, "total": 150.5}],
    },
    "genomic": {
        "carriers": [{"gene": "APOE", "significance": "pathogenic / likely pathogenic", "carriers": 4}],
        "burden": {"0": 10, "1": 4},
        "samples": 14,
    },
    "imaging": {
        "series": [{"modality": "MR", "body_part": "BRAIN", "series": 5}],
        "by_outcome": {"stroke": {"lesion_volume_ml": {"with": [4.5, 6.0], "without": [0.0, 0.1]}}},
    },
    "quality": {
        "files": {"clinical": 10, "genomic": 15, "imaging": 120},
        "rows": {"clinical.condition": 1234},
        "quarantined": [{"modality": "imaging", "reason": "dicom-missing-tag", "records": 6, "files": 6}],
        "patients_per_modality": {"clinical": 14, "genomic": 14, "imaging": 5},
    },
}  # fmt: skip


def write_channel(
    root: Path,
    patients: int,
    seed: int,
    hyperparameters: dict[str, str],
    *,
    with_patients: bool = True,
) -> Path:
    """The SageMaker layout under `root` (input/data/dataset, input/config); returns `root`."""
    frame = synthetic_frame(patients, seed)
    channel = root / "input" / "data" / "dataset"
    channel.mkdir(parents=True)
    frame.to_parquet(channel / "dataset.parquet", index=False)
    (channel / "manifest.json").write_text(json.dumps(manifest_for(frame)))
    if with_patients:
        (channel / "patients.json").write_text(json.dumps(patients_for(frame, 12)))
        (channel / "population.json").write_text(json.dumps(POPULATION))
        (channel / "images" / "1.2.0").mkdir(parents=True)
        (channel / "images" / "1.2.0" / "overlay.png").write_bytes(tiny_png())
    config = root / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    return root
