"""`python -m radiomics_job.train`: one epoch on a tiny cohort writes changed weights and a model card."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from radiomics_job import DEFAULT_WEIGHTS
from radiomics_job.segment import Segmenter
from radiomics_job.train import in_holdout, main


def test_one_epoch_fine_tunes_the_weights_and_writes_the_card(
    synthetic_delivery: Path, tmp_path: Path
) -> None:
    # Given the shipped weights and a three-series synthetic cohort
    out = tmp_path / "model" / "segmenter-test.pt"
    # When training runs one epoch from the shipped weights, holding out the same tiny cohort
    code = main(
        [
            "--cohort",
            str(synthetic_delivery),
            "--holdout-cohort",
            str(synthetic_delivery),
            "--out",
            str(out),
            "--epochs",
            "1",
            "--seed",
            "3",
            "--init",
            str(DEFAULT_WEIGHTS),
            "--batch-size",
            "2",
        ]
    )
    # Then new weights load in the job's segmenter and differ from where training started
    assert code == 0
    before = Segmenter(DEFAULT_WEIGHTS, torch.device("cpu")).network.state_dict()
    after = Segmenter(out, torch.device("cpu")).network.state_dict()
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before if before[k].is_floating_point())
    # and the card beside them describes the run
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["model_version"].startswith("segmenter-test.pt:")
    assert card["training"]["epochs"] == 1
    assert card["training"]["cohorts"][0] == {
        "path": "delivery",
        "synth_seed": 7,
        "patients": 4,
        "series": 3,
        "series_with_lesion": 2,
    }
    assert card["training"]["init"].startswith("segmenter-v1.pt:")
    assert set(card["heldout"]["dice"]) == {"lesion", "hippocampus"}
    assert card["heldout"]["series"] == 3
    assert card["parameters"] > 0
    assert card["versions"]["torch"] == torch.__version__


def test_the_holdout_split_is_stable_and_about_the_fraction_asked() -> None:
    uids = [f"1.2.826.0.1.{n}" for n in range(2000)]
    held = [u for u in uids if in_holdout(u, 0.2)]
    assert held == [u for u in uids if in_holdout(u, 0.2)]
    assert 0.17 < len(held) / len(uids) < 0.23


def test_training_refuses_a_folder_without_imaging(tmp_path: Path) -> None:
    (tmp_path / "empty" / "imaging").mkdir(parents=True)
    with pytest.raises(ValueError, match="no imaging series"):
        main(["--cohort", str(tmp_path / "empty"), "--out", str(tmp_path / "w.pt"), "--epochs", "1"])
