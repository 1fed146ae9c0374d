"""The radiomics job is a separate deployable (containers/radiomics): put its folder on sys.path.

Fixtures: a small synthetic delivery (seed 7, never used to train the shipped weights) and its manifests.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

JOB_HOME = Path(__file__).resolve().parents[3] / "containers" / "radiomics"
if str(JOB_HOME) not in sys.path:
    sys.path.insert(0, str(JOB_HOME))

# Seed 7, 4 patients: 3 imaged series, 2 with a white-matter lesion. The shipped weights were trained on
# seeds 101 (train) and 202 (held out), so these series are unseen.
SYNTH_SEED = 7
SYNTH_PATIENTS = 4


@pytest.fixture(scope="session")
def synthetic_delivery(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mmpipe.synth import generate_cohort

    out = tmp_path_factory.mktemp("synth") / "delivery"
    generate_cohort(out, patients=SYNTH_PATIENTS, seed=SYNTH_SEED, modalities={"imaging"})
    return out


@pytest.fixture(scope="session")
def synthetic_manifests(synthetic_delivery: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from radiomics_job.manifest import manifests_for_folder

    return manifests_for_folder(synthetic_delivery / "imaging", tmp_path_factory.mktemp("manifests"))
