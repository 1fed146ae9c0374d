"""The training job is a separate deployable (containers/training): put its folder on sys.path.

Fixture: one end-to-end run of `python -m training_job train` on a synthetic snapshot in the SageMaker
layout, shared by the tests that read its outputs.

Why 1000 patients (not ~120): the label-shuffle control's test AUC varies with the model it happens to fit
on noise, not only with the test rows, and more so when the features carry strong signal. Measured here
with these fits: at 500 patients and twice this signal, a standard deviation of about 0.07 over permutations
(|AUC - 0.5| reached 0.2); at 1000 patients with this signal, over 48 controls (6 cohort seeds x 2 outcomes
x 4 permutations) mean 0.505, standard deviation 0.037, largest |AUC - 0.5| 0.089. So the test's bound of
0.15 sits about 4 standard deviations out (the control's value is now the mean of PERMUTATIONS
permutations, tighter still). Fits stay under a second each either way; every evaluated predictor is
5-fold bagged (out-of-fold thresholds).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.unit.training.cohort import write_channel

JOB_HOME = Path(__file__).resolve().parents[3] / "containers" / "training"
if str(JOB_HOME) not in sys.path:
    sys.path.insert(0, str(JOB_HOME))

PATIENTS = 1000
COHORT_SEED = 7
OUTCOMES = ("hypertension", "stroke")
SETS = ("clinical", "genomic", "imaging", "clinical+genomic", "clinical+genomic+imaging")
FULL = "clinical+genomic+imaging"
AGE_SEX = "age_sex"
PERMUTATIONS = 5
# Tiny fits: 20 boosting rounds of LightGBM (well under a second each); time_limit only as a guard.
HYPERPARAMETERS = {
    "time_limit": "30",
    "seed": "42",
    "bootstrap": "1000",
    "outcomes": ",".join(OUTCOMES),
    "hyperparameters": '{"GBM": {"num_boost_round": 20}}',
    "importance_subsample": "200",
    "label_shuffle_permutations": str(PERMUTATIONS),
}


@dataclass(frozen=True)
class JobRun:
    root: Path
    returncode: int
    stderr: str

    @property
    def output(self) -> Path:
        return self.root / "output" / "data"

    @property
    def model(self) -> Path:
        return self.root / "model"

    def metrics(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads((self.output / "metrics.json").read_text())
        return document


def run_job(root: Path, *arguments: str, timeout: float = 300) -> JobRun:
    """`python -m training_job train --ml-root root ...` in a subprocess, as SageMaker and the local runtime run it."""
    env = {**os.environ, "PYTHONPATH": str(JOB_HOME)}
    for variable in (
        "SM_CHANNEL_DATASET",
        "SM_MODEL_DIR",
        "SM_OUTPUT_DATA_DIR",
        "SM_INPUT_CONFIG_DIR",
        "SM_OUTPUT_DIR",
    ):
        env.pop(variable, None)
    completed = subprocess.run(
        [sys.executable, "-m", "training_job", "train", "--ml-root", str(root), *arguments],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return JobRun(root, completed.returncode, completed.stderr)


@pytest.fixture(scope="session")
def job_run(tmp_path_factory: pytest.TempPathFactory) -> JobRun:
    root = write_channel(tmp_path_factory.mktemp("training") / "ml", PATIENTS, COHORT_SEED, HYPERPARAMETERS)
    run = run_job(root)
    assert run.returncode == 0, run.stderr[-4000:]
    return run
