"""Training on the local runtime: a delivery of VCFs + FHIR ends with the AutoGluon job's metrics and report.

Real template, state machine and handlers; the SageMaker training job is answered by the local runtime,
which runs the real entry point (`python -m training_job train`, containers/training) in a subprocess with
SageMaker's paths and tarballs. Fits are tiny (one small LightGBM per predictor). A second delivery that
changes nothing trains nothing (its run built no new dataset snapshot).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from mmhealth import storage
from mmhealth.lakehouse.catalog import read_table
from mmpipe.local import LocalRuntime
from mmpipe.synth import generate_cohort

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TINY_FITS = {
    "training_time_limit": 10,
    "training_hyperparameters": json.dumps({"GBM": {"num_boost_round": 30}}),
    "training_bootstrap": 100,
    "training_permutations": 3,
    "training_oof_folds": 2,
}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cohort") / "delivery"
    generate_cohort(out, patients=60, seed=11, modalities={"genomic", "clinical"})
    return out


@pytest.fixture
def runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalRuntime]:
    monkeypatch.setenv("RUN_CONFIG", json.dumps(TINY_FITS))
    with LocalRuntime(max_batching_window=30) as rt:  # the whole delivery in one batch
        yield rt


def upload(runtime: LocalRuntime, cohort: Path, delivery: str) -> None:
    with runtime.events_held():  # one batch, one run
        for path in sorted(cohort.rglob("*")):
            if path.is_file() and ".truth" not in path.parts:
                runtime.upload(path, f"incoming/{delivery}/{path.relative_to(cohort).as_posix()}")
        runtime.complete(delivery)


def summary_of(runtime: LocalRuntime, execution: dict[str, object]) -> dict[str, object]:
    run_id = str(execution["name"])
    return dict(storage.read_json(runtime.lake_bucket, f"runs/{run_id}/summary.json"))


def test_a_delivery_trains_the_outcome_models_once_and_names_the_artifacts(
    runtime: LocalRuntime, cohort: Path
) -> None:
    # Given a delivery of the cohort's VCFs and FHIR, as one run
    upload(runtime, cohort, "d-train")
    runtime.drain()
    [execution] = runtime.wait_for_executions(count=1, timeout=900)

    # Then the run succeeded, trained, and its summary names the model, the report and the headline metrics
    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    training = summary_of(runtime, execution)["training"]
    assert isinstance(training, dict)
    assert training.get("skipped") is None, training
    assert {"model_uri", "report_uri", "metrics_uri", "dataset_id"} <= set(training)
    assert set(training["headline"]) == {
        "hypertension",
        "coronary_heart_disease",
        "stroke",
        "alzheimers_disease",
    }
    # And the job's outputs sit next to the run: metrics per outcome x modality set, a report page
    bucket, _, key = training["metrics_uri"].removeprefix("s3://").partition("/")
    metrics = storage.read_json(bucket, key)
    assert metrics["dataset_id"] == training["dataset_id"]
    for outcome, by_set in metrics["metrics"].items():
        assert {"clinical", "genomic", "clinical+genomic"} <= set(by_set), outcome
        assert 0.0 <= by_set["clinical"]["roc_auc"]["value"] <= 1.0
    bucket, _, key = training["report_uri"].removeprefix("s3://").partition("/")
    page = storage.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    assert page.lstrip().lower().startswith("<!doctype html")
    # And features.metrics holds the evaluation, features.genomic the genomic features
    rows = read_table("features.metrics")
    assert rows is not None
    assert set(rows["run_id"].to_pylist()) == {execution["name"]}
    assert "control" in set(rows["modality_set"].to_pylist())
    genomic = read_table("features.genomic")
    assert genomic is not None
    assert genomic.num_rows == len(
        [p for p in (cohort / "genomic").glob("*.vcf.gz") if "clinvar" not in p.name]
    )
    # And the model was put to use: the scoring job scored every eligible patient for every outcome,
    # with the model registered in features.models, on the run's own snapshot
    [model] = read_table("features.models").to_pylist()  # type: ignore[union-attr]
    assert (model["run_id"], model["model_uri"]) == (execution["name"], training["model_uri"])
    scoring = summary_of(runtime, execution)["scoring"]
    assert isinstance(scoring, dict)
    assert (scoring["model_id"], scoring["dataset_id"]) == (model["model_id"], training["dataset_id"])
    predictions = read_table("features.predictions")
    assert predictions is not None
    assert predictions.num_rows == scoring["rows"]
    labels = read_table("features.labels")
    assert labels is not None
    for outcome in training["headline"]:
        mine = [r for r in predictions.to_pylist() if r["outcome"] == outcome]
        eligible = [p for p, label in zip(labels["patient_id"].to_pylist(), labels[outcome].to_pylist(), strict=True)
                    if label is not None]  # fmt: skip
        assert sorted(r["patient_id"] for r in mine) == sorted(eligible), outcome
        assert all(r["decision"] == (r["probability"] >= r["threshold"]) for r in mine)

    # When a later delivery changes no feature (a file no branch ingests)
    runtime.put_object("incoming/d-train-2/README.txt", b"delivery notes, not data\n")
    runtime.complete("d-train-2")
    runtime.drain()
    later = [e for e in runtime.wait_for_executions(count=2, timeout=300) if e["name"] != execution["name"]]

    # Then it succeeds and trains nothing (its rows changed nothing), saying why
    assert [e["status"] for e in later] == ["SUCCEEDED"]
    skipped = summary_of(runtime, later[0])["training"]
    assert isinstance(skipped, dict)
    assert "no clinical, imaging or genomic rows changed" in str(skipped.get("skipped"))
    # ... and scores nothing new: its snapshot was scored with this model already (no doubled rows)
    rescored = summary_of(runtime, later[0])["scoring"]
    assert isinstance(rescored, dict)
    assert "skipped" in rescored, rescored
    assert read_table("features.predictions").num_rows == predictions.num_rows  # type: ignore[union-attr]
