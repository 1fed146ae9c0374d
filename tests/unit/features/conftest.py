"""A 200-patient synthetic cohort (seed 7, clinical only) as `clinical.*` tables, with its answer key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from mmpipe.synth import generate_cohort
from tests.unit.features.fhir_tables import clinical_tables

SEED = 7
PATIENTS = 200


@pytest.fixture(scope="session")
def cohort_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("features-cohort") / "delivery"
    generate_cohort(out, patients=PATIENTS, seed=SEED, modalities={"clinical"})
    return out


@pytest.fixture(scope="session")
def tables(cohort_dir: Path) -> dict[str, pa.Table]:
    """Arrow tables are immutable: tests derive edited copies, never change these."""
    return clinical_tables(cohort_dir / "clinical")


@pytest.fixture(scope="session")
def truth(cohort_dir: Path) -> dict[str, dict[str, Any]]:
    """The generator's truth.json patients, by patient id."""
    document = json.loads((cohort_dir / ".truth" / "truth.json").read_text(encoding="utf-8"))
    return {p["id"]: p for p in document["patients"]}
