"""The synthetic cohort generator: deterministic, and every modality is valid and linked by patient id.

A 60-patient cohort (all modalities) is generated once per module and read back with the libraries the
pipeline uses (pysam, cyvcf2, json, pydicom); labels are checked on a 120-patient clinical-only cohort of the
same seed, and an 8-patient cohort is generated twice for determinism.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cyvcf2
import numpy as np
import pydicom
import pysam
import pytest

from mmpipe.synth import generate_cohort

pytestmark = pytest.mark.slow

OUTCOME_CODES = {
    "59621000": "hypertension",
    "53741008": "coronary_heart_disease",
    "230690007": "stroke",
    "26929004": "alzheimers_disease",
}
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


SEED = 20240607
PATIENTS = 60


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cohort") / "delivery"
    generate_cohort(out, patients=PATIENTS, seed=SEED)
    return out


@pytest.fixture(scope="module")
def label_truth(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    # Labels do not depend on the modalities written, so the cheapest delivery carries them for 120 patients.
    out = tmp_path_factory.mktemp("labels") / "delivery"
    generate_cohort(out, patients=120, seed=SEED, modalities={"clinical"})
    return json.loads((out / ".truth" / "truth.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def resources(cohort: Path) -> dict[str, list[dict[str, Any]]]:
    by_type: dict[str, list[dict[str, Any]]] = {}
    for path in sorted((cohort / "clinical").glob("*.ndjson")):
        by_type[path.stem] = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return by_type


@pytest.fixture(scope="module")
def patient_ids(resources: dict[str, list[dict[str, Any]]]) -> set[str]:
    return {p["id"] for p in resources["Patient"]}


@pytest.fixture(scope="module")
def truth(cohort: Path) -> dict[str, Any]:
    return json.loads((cohort / ".truth" / "truth.json").read_text(encoding="utf-8"))


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def references(node: Any) -> Iterator[str]:
    """Every Reference.reference string anywhere in a resource."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                yield value
            else:
                yield from references(value)
    elif isinstance(node, list):
        for item in node:
            yield from references(item)


def referenced_id(reference: str) -> str:
    return reference.removeprefix("urn:uuid:").rsplit("/", 1)[-1]


def subject_id(resource: dict[str, Any]) -> str:
    return referenced_id((resource.get("subject") or resource["patient"])["reference"])


def patient_vcfs(cohort: Path) -> list[Path]:
    return sorted(p for p in (cohort / "genomic").glob("*.vcf.gz") if not p.name.startswith("clinvar"))


def htslib_complaints(stderr: str) -> list[str]:
    # pysam reports every unindexed file with "[E::idx_find_and_load]" (pysam#939); anything else counts.
    return [line for line in stderr.splitlines() if line.startswith("[") and "idx_find_and_load" not in line]


# (a) determinism ------------------------------------------------------------------------------------------


def test_same_seed_gives_byte_identical_delivery(tmp_path: Path) -> None:
    # Given two empty folders
    # When the same small cohort is generated into each
    first = generate_cohort(tmp_path / "a", patients=8, seed=11)
    second = generate_cohort(tmp_path / "b", patients=8, seed=11)
    # Then every file (data, truth and masks) has the same bytes, and the summaries agree
    digest = tree_digest(tmp_path / "a")
    assert digest == tree_digest(tmp_path / "b")
    assert first == second
    assert any(name.endswith(".dcm") for name in digest)
    assert any(name.startswith(".truth/masks/") for name in digest)


def test_another_seed_gives_another_cohort(tmp_path: Path) -> None:
    generate_cohort(tmp_path / "a", patients=3, seed=11, modalities={"clinical"})
    generate_cohort(tmp_path / "b", patients=3, seed=12, modalities={"clinical"})
    assert tree_digest(tmp_path / "a") != tree_digest(tmp_path / "b")


def test_refuses_unknown_modalities_and_non_empty_folders(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown modalities"):
        generate_cohort(tmp_path / "x", patients=2, seed=1, modalities={"genomic", "proteomic"})
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "stale.txt").write_text("left over")
    with pytest.raises(FileExistsError):
        generate_cohort(tmp_path / "busy", patients=2, seed=1)


def test_delivery_holds_only_data_folders_and_the_hidden_truth(cohort: Path) -> None:
    assert {p.name for p in cohort.iterdir()} == {"genomic", "clinical", "imaging", ".truth"}


# (b) per-patient VCFs -------------------------------------------------------------------------------------


def test_every_vcf_opens_cleanly_in_pysam_and_cyvcf2_with_a_known_sample(
    cohort: Path, patient_ids: set[str], capfd: pytest.CaptureFixture[str]
) -> None:
    vcfs = patient_vcfs(cohort)
    assert 0.7 * PATIENTS <= len(vcfs) <= PATIENTS
    seen: Counter[str] = Counter()
    for path in vcfs:
        with pysam.VariantFile(str(path)) as vcf:
            sample = list(vcf.header.samples)
            contigs = set(vcf.header.contigs)
            keys = []
            for record in vcf:
                assert record.chrom in contigs, f"{path.name}: {record.chrom} has no ##contig line"
                keys.append((list(vcf.header.contigs).index(record.chrom), record.pos))
                genotype = record.samples[0]["GT"]
                seen["multi-allelic"] += len(record.alts or ()) > 1
                seen["no-call"] += None in genotype
                seen["1/2"] += set(genotype) == {1, 2}
                seen["phased"] += record.samples[0].phased and len(genotype) == 2
                seen["hom-alt"] += len(set(genotype)) == 1 and genotype[0] not in (None, 0)
                seen["LowQual"] += "LowQual" in record.filter
                seen["rsID"] += (record.id or "").startswith("rs")
        assert sample == [path.name.removesuffix(".vcf.gz")]
        assert sample[0] in patient_ids
        assert keys == sorted(keys), f"{path.name} is not sorted by contig then position"
        assert 200 <= len(keys) <= 1600
        cyvcf = cyvcf2.VCF(str(path))
        assert cyvcf.samples == sample
        assert sum(1 for _ in cyvcf) == len(keys)
        cyvcf.close()
    assert all(
        seen[k] > 0 for k in ("multi-allelic", "1/2", "no-call", "phased", "hom-alt", "LowQual", "rsID")
    ), seen
    assert htslib_complaints(capfd.readouterr().err) == []


def test_apoe_sites_are_reported_for_everyone_and_match_the_truth(
    cohort: Path, truth: dict[str, Any]
) -> None:
    for patient in truth["patients"]:
        if "genomic" not in patient["modalities"]:
            continue
        with pysam.VariantFile(str(cohort / "genomic" / f"{patient['id']}.vcf.gz")) as vcf:
            apoe = {r.id: r.samples[0]["GT"] for r in vcf if r.id in ("rs429358", "rs7412")}
        assert sum(apoe["rs429358"]) == patient["signals"]["apoe_e4_dosage"]
        assert sum(apoe["rs7412"]) == patient["signals"]["apoe_e2_dosage"]


# (c) ClinVar annotation VCF -------------------------------------------------------------------------------


def test_clinvar_vcf_is_sites_only_with_clinvar_info_fields(
    cohort: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    path = cohort / "genomic" / "clinvar_annotations.vcf.gz"
    with pysam.VariantFile(str(path)) as vcf:
        assert list(vcf.header.samples) == []
        assert {"CLNSIG", "GENEINFO", "CLNDN", "CLNREVSTAT"} <= set(vcf.header.info)
        records = list(vcf)
    significance = Counter(s for r in records for s in r.info["CLNSIG"])
    assert {"Pathogenic", "Likely_pathogenic", "Uncertain_significance", "Benign", "risk_factor"} <= set(
        significance
    )
    by_rsid = {f"rs{r.info['RS'][0]}": r for r in records if "RS" in r.info}
    assert by_rsid["rs6025"].info["GENEINFO"] == "F5:2153"
    assert str(by_rsid["rs429358"].id).isdigit()
    assert all(len(r.alts or ()) == 1 for r in records)
    assert cyvcf2.VCF(str(path)).samples == []
    assert htslib_complaints(capfd.readouterr().err) == []


# (d) FHIR NDJSON ------------------------------------------------------------------------------------------


def test_every_ndjson_line_is_a_resource_with_type_and_id(cohort: Path) -> None:
    for path in (cohort / "clinical").glob("*.ndjson"):
        ids = set()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            resource = json.loads(line)
            assert isinstance(resource, dict), f"{path.name}:{number}"
            assert resource["resourceType"] == path.stem
            assert resource["id"] not in ids, f"{path.name}:{number} duplicate id"
            ids.add(resource["id"])


def test_every_reference_resolves_and_every_subject_is_a_patient(
    resources: dict[str, list[dict[str, Any]]], patient_ids: set[str]
) -> None:
    all_ids = {r["id"] for items in resources.values() for r in items}
    styles: Counter[str] = Counter()
    for resource_type, items in resources.items():
        for resource in items:
            for reference in references(resource):
                styles["urn:uuid" if reference.startswith("urn:uuid:") else reference.split("/")[0]] += 1
                assert referenced_id(reference) in all_ids, f"{resource_type}/{resource['id']}: {reference}"
            if resource_type != "Patient":
                assert subject_id(resource) in patient_ids
    assert styles["Patient"] > 0
    assert styles["urn:uuid"] > 0


def test_outcome_conditions_are_exactly_the_truth_labels(
    resources: dict[str, list[dict[str, Any]]], truth: dict[str, Any]
) -> None:
    from_conditions = {
        (subject_id(c), OUTCOME_CODES[c["code"]["coding"][0]["code"]], c["onsetDateTime"][:10])
        for c in resources["Condition"]
        if c["code"]["coding"][0]["code"] in OUTCOME_CODES
    }
    from_truth = {
        (p["id"], outcome, label["onset"])
        for p in truth["patients"]
        for outcome, label in p["labels"].items()
        if label["label"] == 1
    }
    assert from_conditions == from_truth


def test_blood_pressure_before_a_hypertension_diagnosis_carries_the_signal(
    resources: dict[str, list[dict[str, Any]]], truth: dict[str, Any]
) -> None:
    # Given each patient's systolic readings dated before the onset (negatives: before the onset window)
    onset = {p["id"]: p["labels"]["hypertension"]["onset"] for p in truth["patients"]}
    readings: dict[str, list[float]] = {}
    for observation in resources["Observation"]:
        if observation["code"]["coding"][0]["code"] != "85354-9":
            continue
        patient = subject_id(observation)
        if observation["effectiveDateTime"][:10] < (onset[patient] or "2018-01-01"):
            systolic = observation["component"][0]
            assert systolic["code"]["coding"][0]["code"] == "8480-6"
            assert systolic["valueQuantity"]["code"] == "mm[Hg]"
            readings.setdefault(patient, []).append(systolic["valueQuantity"]["value"])
    # Then future hypertensives already have clearly higher pre-onset blood pressure
    mean = {pid: float(np.mean(values)) for pid, values in readings.items()}
    positives = [mean[pid] for pid, day in onset.items() if day and pid in mean]
    negatives = [mean[pid] for pid, day in onset.items() if not day and pid in mean]
    assert np.mean(positives) - np.mean(negatives) > 8.0


# (e) DICOM ------------------------------------------------------------------------------------------------


def test_dicom_series_are_valid_linked_and_geometrically_consistent(
    cohort: Path, resources: dict[str, list[dict[str, Any]]], patient_ids: set[str]
) -> None:
    studies_on_disk = set()
    for series_dir in sorted((cohort / "imaging").glob("*/*")):
        files = sorted(series_dir.glob("*.dcm"))
        datasets = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
        first = datasets[0]
        assert files[0].read_bytes()[128:132] == b"DICM"
        assert first.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert first.SOPClassUID == MR_IMAGE_STORAGE
        assert first.Modality == "MR"
        assert first.PatientID == series_dir.parent.name
        assert first.PatientID in patient_ids
        assert first.SeriesInstanceUID == series_dir.name
        assert {d.StudyInstanceUID for d in datasets} == {first.StudyInstanceUID}
        studies_on_disk.add(first.StudyInstanceUID)
        # File numbering is shuffled; InstanceNumber follows the position along the slice normal.
        by_name = [d.InstanceNumber for d in sorted(datasets, key=lambda d: int(Path(str(d.filename)).stem))]
        assert by_name != sorted(by_name)
        orientation = np.array(first.ImageOrientationPatient, dtype=float)
        normal = np.cross(orientation[:3], orientation[3:])
        ordered = sorted(datasets, key=lambda d: int(d.InstanceNumber))
        along = [float(np.dot(np.array(d.ImagePositionPatient, dtype=float), normal)) for d in ordered]
        assert np.allclose(np.diff(along), float(first.SpacingBetweenSlices), atol=1e-3)
        assert float(first.RescaleSlope) != 1.0 or float(first.RescaleIntercept) != 0.0
    image_studies = {
        identifier["value"].removeprefix("urn:oid:")
        for study in resources["ImagingStudy"]
        for identifier in study["identifier"]
        if identifier["system"] == "urn:dicom:uid"
    }
    assert image_studies == studies_on_disk
    assert 0.4 * PATIENTS <= len(studies_on_disk) <= 0.8 * PATIENTS


def test_masks_match_their_volume_and_the_planted_lesions(cohort: Path, truth: dict[str, Any]) -> None:
    imaged = [p for p in truth["patients"] if p["imaging"]]
    for patient in imaged:
        series_uid = patient["imaging"]["series_uid"]
        mask = np.load(cohort / ".truth" / "masks" / f"{series_uid}.npz")["mask"]
        series_dir = cohort / "imaging" / patient["id"] / series_uid
        first = pydicom.dcmread(next(series_dir.glob("*.dcm")), stop_before_pixels=True)
        assert mask.dtype == np.uint8
        assert mask.shape == (len(list(series_dir.glob("*.dcm"))), first.Rows, first.Columns)
        has_lesion = patient["signals"]["lesion_volume_mm3"] > 0
        assert bool((mask == 1).any()) == has_lesion
    assert any(p["signals"]["lesion_volume_mm3"] > 0 for p in imaged)


# (f) labels -----------------------------------------------------------------------------------------------


def test_every_outcome_has_both_classes_and_a_documented_model(label_truth: dict[str, Any]) -> None:
    assert label_truth["seed"] == SEED
    outcomes = label_truth["model"]["label_model"]["outcomes"]
    assert set(outcomes) == set(OUTCOME_CODES.values())
    for outcome in outcomes:
        labels = [p["labels"][outcome]["label"] for p in label_truth["patients"]]
        assert set(labels) == {0, 1}, outcome
        assert 0.03 <= np.mean(labels) <= 0.6, outcome
        for patient in label_truth["patients"]:
            positive = bool(patient["labels"][outcome]["label"])
            assert (patient["labels"][outcome]["onset"] is not None) == positive


def test_a_patient_is_the_same_person_whatever_the_cohort_size_or_modalities(
    truth: dict[str, Any], label_truth: dict[str, Any]
) -> None:
    small = [(p["id"], p["labels"], p["signals"]) for p in truth["patients"]]
    large = [(p["id"], p["labels"], p["signals"]) for p in label_truth["patients"][:PATIENTS]]
    assert small == large
