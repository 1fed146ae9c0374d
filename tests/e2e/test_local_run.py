"""`mmpipe synth` + `mmpipe local run` + `mmpipe summary`, as a user runs them (subprocesses)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pysam
import pytest

pytestmark = pytest.mark.e2e

MMPIPE = [sys.executable, "-m", "mmpipe.cli"]


def carried_alt_alleles(path: Path) -> int:
    """Independent count (pysam): sample x site x ALT allele present in the sample's genotype."""
    with pysam.VariantFile(str(path)) as vcf:
        return sum(
            len({a for a in (s.get("GT") or ()) if a not in (None, 0)})
            for r in vcf
            for s in r.samples.values()
        )


def test_a_generated_cohort_runs_end_to_end(tmp_path: Path) -> None:
    cohort, out = tmp_path / "input", tmp_path / "out"
    subprocess.run([*MMPIPE, "synth", "--patients", "6", "--seed", "5", "--out", str(cohort)], check=True)

    run = subprocess.run(
        [*MMPIPE, "local", "run", "--input", str(cohort), "--out", str(out), "--delivery", "e2e"],
        capture_output=True,
        text=True,
        timeout=600,
    )

    assert run.returncode == 0, run.stderr[-3000:]
    assert "uploaded" in run.stderr  # progress is shown while it runs
    assert "e2e-w1: " in run.stderr  # ... naming the run and its phase
    assert "not verified" not in run.stderr
    assert "Traceback" not in run.stderr
    document = json.loads((out / "run.json").read_text())
    assert document["status"] == "SUCCEEDED"
    assert all(e["status"] == "SUCCEEDED" for e in document["executions"])
    assert all("Prepare" in e["states"] for e in document["executions"])
    vcfs = [p for p in (cohort / "genomic").glob("*.vcf.gz") if not p.name.startswith("clinvar")]
    variants = pq.read_table(out / "tables" / "genomic.variants.parquet")
    assert variants.num_rows == sum(carried_alt_alleles(p) for p in vcfs)
    assert document["tables"]["genomic.variants"] == variants.num_rows
    assert document["modalities"]["genomic"]["files"] == len(vcfs) + 1  # + the ClinVar-style VCF
    assert document["modalities"]["genomic"]["rows_committed:genomic.variants"] == variants.num_rows
    assert (out / "quarantine.jsonl").exists()
    # No patient names or addresses reach the logs (the cohort's Patient resources carry both)
    logs = (out / "logs.jsonl").read_text()
    assert logs
    for line in (cohort / "clinical" / "Patient.ndjson").read_text().splitlines():
        patient = json.loads(line)
        assert patient["name"][0]["family"] not in logs
        assert patient["address"][0]["line"][0] not in logs

    summary = subprocess.run([*MMPIPE, "summary", str(out)], capture_output=True, text=True, check=True)
    assert "genomic.variants" in summary.stdout
    assert f"{variants.num_rows:,} rows" in summary.stdout
    patients = pq.read_table(out / "tables" / "clinical.patient.parquet").num_rows
    assert patients == len((cohort / "clinical" / "Patient.ndjson").read_text().splitlines())
    assert "hypertension" in summary.stdout
    assert "prevalence" in summary.stdout
