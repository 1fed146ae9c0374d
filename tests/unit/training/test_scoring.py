"""`python -m training_job score`: the trained model applied to a dataset snapshot, as the Processing job runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pandas as pd
import pytest

from tests.unit.training.conftest import FULL, JOB_HOME, OUTCOMES, JobRun


def run_score(model: Path, dataset: Path, output: Path, failure: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "training_job",
            "score",
            "--model-dir",
            str(model),
            "--dataset",
            str(dataset),
            "--output-dir",
            str(output),
            "--model-id",
            "mmpipe-train-test",
            "--failure-file",
            str(failure),
        ],
        env={**os.environ, "PYTHONPATH": str(JOB_HOME)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def packed_model(job_run: JobRun, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The model folder as SageMaker uploads it (model.tar.gz), in the folder the Processing input fills."""
    folder = tmp_path_factory.mktemp("model")
    with tarfile.open(folder / "model.tar.gz", "w:gz") as archive:
        for path in job_run.model.iterdir():
            archive.add(path, arcname=path.name)
    return folder


@pytest.fixture(scope="module")
def scored(job_run: JobRun, packed_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("scored")
    done = run_score(packed_model, job_run.root / "input" / "data" / "dataset", output, output / "failure")
    assert done.returncode == 0, done.stderr[-3000:]
    return output


def test_every_eligible_patient_gets_one_score_per_outcome(job_run: JobRun, scored: Path) -> None:
    dataset = pd.read_parquet(job_run.root / "input" / "data" / "dataset" / "dataset.parquet")
    predictions = pd.read_parquet(scored / "predictions.parquet")

    for outcome in OUTCOMES:
        mine = predictions[predictions["outcome"] == outcome]
        eligible = set(dataset.loc[dataset[outcome].notna(), "patient_id"].astype(str))
        assert set(mine["patient_id"]) == eligible
        assert mine["patient_id"].is_unique
        assert (mine["modality_set"] == FULL).all()
    assert predictions["probability"].between(0, 1).all()
    assert (predictions["model_id"] == "mmpipe-train-test").all()
    assert (
        predictions["dataset_id"] == json.loads((scored / "scoring.json").read_text())["dataset_id"]
    ).all()


def test_the_decision_is_the_probability_at_the_model_cards_threshold(job_run: JobRun, scored: Path) -> None:
    card = json.loads((job_run.model / "model_card.json").read_text())
    predictions = pd.read_parquet(scored / "predictions.parquet")

    for outcome in OUTCOMES:
        mine = predictions[predictions["outcome"] == outcome]
        expected = ((card.get("thresholds") or {}).get(outcome) or {}).get(FULL, {}).get("threshold", 0.5)
        assert (mine["threshold"] == expected).all()
        assert (mine["decision"] == (mine["probability"] >= expected)).all()


def test_the_scores_are_the_predictors_own(job_run: JobRun, scored: Path) -> None:
    """The test split's scores equal the ones the training job evaluated (same predictor, same rows)."""
    evaluated = pd.read_parquet(job_run.output / "predictions.parquet")
    evaluated = evaluated[evaluated["set"] == FULL]
    predictions = pd.read_parquet(scored / "predictions.parquet")
    joined = evaluated.merge(predictions, on=["patient_id", "outcome"])

    assert len(joined) == len(evaluated)
    assert (joined["y_score"] - joined["probability"]).abs().max() < 1e-9


def test_a_patient_without_imaging_is_scored_and_says_so(scored: Path) -> None:
    predictions = pd.read_parquet(scored / "predictions.parquet")

    assert (predictions["modalities"] == "clinical+genomic+imaging").any()
    assert predictions["modalities"].str.contains("clinical").all()
    assert (~predictions["modalities"].str.contains("imaging")).any()


def test_a_broken_model_archive_fails_with_its_reason(job_run: JobRun, tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.tar.gz").write_bytes(b"not a tarball")

    done = run_score(
        tmp_path / "model",
        job_run.root / "input" / "data" / "dataset",
        tmp_path / "out",
        tmp_path / "message",
    )

    assert done.returncode == 1
    assert (tmp_path / "message").read_text().startswith("cannot unpack model.tar.gz")
    assert not (tmp_path / "out" / "predictions.parquet").exists()


def test_the_endpoint_serves_the_scores_of_the_scoring_job(job_run: JobRun, scored: Path) -> None:
    """`serve`: /ping, then /invocations answers what the scoring job computed for the same patients."""
    import threading
    import urllib.error
    import urllib.request

    from training_job.serving import server

    dataset = pd.read_parquet(job_run.root / "input" / "data" / "dataset" / "dataset.parquet")
    patients = dataset.head(3)
    httpd = server(job_run.model, port=0, host="127.0.0.1")
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=30) as ping:
            assert json.loads(ping.read())["outcomes"] == sorted(OUTCOMES)
        instances = json.loads(patients.drop(columns=["patient_id", *OUTCOMES]).to_json(orient="records"))
        request = urllib.request.Request(
            f"{url}/invocations", data=json.dumps({"instances": instances}).encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=60) as answer:
            served = json.loads(answer.read())["predictions"]
        bad = urllib.request.Request(f"{url}/invocations", data=b'{"rows": []}', method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(bad, timeout=30)
        assert refused.value.code == 400
    finally:
        httpd.shutdown()

    predictions = pd.read_parquet(scored / "predictions.parquet").set_index(["patient_id", "outcome"])
    for patient, answer in zip(patients["patient_id"], served, strict=True):
        for outcome in OUTCOMES:
            if (str(patient), outcome) in predictions.index:
                expected = predictions.loc[(str(patient), outcome)]
                assert answer[outcome]["probability"] == pytest.approx(expected["probability"], abs=1e-6)
                assert answer[outcome]["decision"] == bool(expected["decision"])


def test_scores_of_patients_the_model_was_fitted_on_are_marked_in_sample(
    job_run: JobRun, scored: Path
) -> None:
    card = json.loads((job_run.model / "model_card.json").read_text())
    evaluated = pd.read_parquet(job_run.output / "predictions.parquet")
    predictions = pd.read_parquet(scored / "predictions.parquet")

    for outcome in OUTCOMES:
        mine = predictions[predictions["outcome"] == outcome].set_index("patient_id")
        trained_on = set(card["training_patients"][outcome])
        tested = set(evaluated.loc[evaluated["outcome"] == outcome, "patient_id"].astype(str))
        assert trained_on.isdisjoint(tested)
        assert mine.loc[sorted(trained_on), "in_training_split"].all()
        assert not mine.loc[sorted(tested), "in_training_split"].any()
