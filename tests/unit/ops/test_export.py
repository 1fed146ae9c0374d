"""`mmpipe export`: a trained run's files from a lake on moto (S3, Glue and Iceberg tables through the same
APIs as in AWS), found through the state file of a running `mmpipe local up`."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mmhealth.lakehouse.catalog import lakehouse_catalog, replace_all, replace_rows
from mmhealth.training.job import REPORT_FILES
from mmpipe import report
from mmpipe.cli import main
from tests.unit.ops.conftest import Pipeline

RUN = "site-a-w2"


def _quarantine_row(run_id: str, key: str) -> dict[str, object]:
    return {
        "run_id": run_id,
        "object_id": f"obj-{key}",
        "bucket": "landing",
        "key": key,
        "etag": "e",
        "modality": "clinical",
        "stage": "import",
        "reason": "invalid-json",
        "detail": "line 5: Expecting value",
        "line": 5,
        "recorded_at": "2026-12-04T10:00:00+00:00",
    }


def _parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


@pytest.fixture
def trained_run(pipeline: Pipeline) -> Pipeline:
    """site-a in two waves; the second trained a model. The lake holds what Finalize, CatalogTraining and
    the features step leave, and what no export carries (identity.links, another run's quarantine rows)."""
    pipeline.start("site-a-w1")
    pipeline.start(RUN)
    lake = f"s3://{pipeline.lake}"
    training = {
        "dataset_id": "ds1",
        "job": "mmpipe-train-0123",
        "model_uri": f"{lake}/training/{RUN}/mmpipe-train-0123/output/model.tar.gz",
        "report_uri": f"{lake}/training/{RUN}/report/report.html",
        "metrics_uri": f"{lake}/training/{RUN}/report/metrics.json",
        "headline": {"stroke": {"roc_auc": 0.81, "f1": 0.5}},
    }
    pipeline.put_json(
        f"runs/{RUN}/summary.json", {"run_id": RUN, "status": "SUCCEEDED", "training": training}
    )
    pipeline.put_json(f"runs/{RUN}/manifest.json", {"run_id": RUN, "deliveries": ["site-a"], "chunks": []})
    pipeline.put_json(
        f"runs/{RUN}/quarantine/import-obj1-0000.json", _quarantine_row(RUN, "incoming/site-a/c.ndjson")
    )
    for name in REPORT_FILES:
        pipeline.s3.put_object(
            Bucket=pipeline.lake, Key=f"training/{RUN}/report/{name}", Body=f"<{name}>".encode()
        )
    model = io.BytesIO()
    with tarfile.open(fileobj=model, mode="w:gz") as archive:
        card = json.dumps({"dataset_id": "ds1"}).encode()
        member = tarfile.TarInfo("model_card.json")
        member.size = len(card)
        archive.addfile(member, io.BytesIO(card))
    pipeline.s3.put_object(
        Bucket=pipeline.lake,
        Key=f"training/{RUN}/mmpipe-train-0123/output/model.tar.gz",
        Body=model.getvalue(),
    )
    dataset = pa.table({"patient_id": ["p1", "p2", "p3"], "stroke": [1, 0, None]})
    pipeline.s3.put_object(Bucket=pipeline.lake, Key="datasets/ds1/dataset.parquet", Body=_parquet(dataset))
    catalog = lakehouse_catalog()
    replace_rows(
        "features.labels", pa.table({"patient_id": ["p1", "p2"], "stroke": [1, 0]}), RUN, replace_all, catalog
    )
    quarantine = pa.Table.from_pylist(
        [
            _quarantine_row(RUN, "incoming/site-a/c.ndjson"),
            _quarantine_row("site-a-w1", "incoming/site-a/d.ndjson"),
        ]
    )
    replace_rows("ops.quarantine", quarantine, RUN, replace_all, catalog)
    links = pa.table(
        {
            "source_kind": ["vcf_sample"],
            "source_value": ["S1"],
            "person_id": ["p1"],
            "rule": ["id"],
            "detail": [None],
        }
    )
    replace_rows("identity.links", links, RUN, replace_all, catalog)
    return pipeline


def test_export_writes_the_run_s_files_report_and_tables(
    trained_run: Pipeline, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "export"

    code = main(["export", *trained_run.local, "--run", "site-a", "--out", str(out)])

    text = capsys.readouterr().out
    assert code == 0
    # The delivery's newest run, its lake files as written
    assert json.loads((out / "summary.json").read_text())["run_id"] == RUN
    assert json.loads((out / "manifest.json").read_text())["deliveries"] == ["site-a"]
    [record] = [json.loads(line) for line in (out / "quarantine.jsonl").read_text().splitlines()]
    assert record["key"] == "incoming/site-a/c.ndjson"
    # The training job's output, byte for byte, and the model card from the model tarball
    for name in REPORT_FILES:
        assert (out / name).read_bytes() == f"<{name}>".encode()
    assert json.loads((out / "model_card.json").read_text()) == {"dataset_id": "ds1"}
    # Tables: features whole, the run's quarantine rows only, the dataset it trained on; nothing else
    tables = sorted(p.name for p in (out / "tables").iterdir())
    assert tables == ["dataset.parquet", "features.labels.parquet", "ops.quarantine.parquet"]
    assert pq.read_table(out / "tables" / "ops.quarantine.parquet")["run_id"].to_pylist() == [RUN]
    assert pq.read_table(out / "tables" / "features.labels.parquet").num_rows == 2
    assert pq.read_table(out / "tables" / "dataset.parquet").num_rows == 3
    # What a person reads: each file, and the report to open
    assert text.startswith(f"run {RUN} (SUCCEEDED) from local runtime")
    assert "tables/ops.quarantine.parquet" in text
    assert f"training report: {(out / 'report.html').resolve()}" in text


def test_export_of_a_run_without_a_summary_says_why_and_writes_the_rest(
    pipeline: Pipeline, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pipeline.start("site-b-w1", "fail")  # failed before Finalize: no summary.json
    pipeline.put_json("runs/site-b-w1/manifest.json", {"run_id": "site-b-w1", "chunks": []})

    code = main(["export", *pipeline.local, "--run", "site-b-w1", "--out", str(tmp_path), "--json"])

    result = json.loads(capsys.readouterr().out)
    assert code == 0
    assert (result["status"], result["report"]) == ("FAILED", None)
    assert sorted(result["files"]) == ["manifest.json", "quarantine.jsonl"]
    assert (tmp_path / "quarantine.jsonl").read_text() == ""


def test_export_of_a_name_that_matches_nothing_is_one_line(
    pipeline: Pipeline, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pipeline.start("site-a-w1")

    code = main(["export", *pipeline.local, "--run", "site-aa", "--out", str(tmp_path / "x")])

    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: no run or delivery 'site-aa'")
    assert err.rstrip().endswith("did you mean site-a?")
    assert not (tmp_path / "x").exists()


def test_local_run_s_exports_take_every_table_whole_and_the_newest_trained_run(
    trained_run: Pipeline, tmp_path: Path
) -> None:
    # `mmpipe local run` shares these with export: its lakehouse holds only its own delivery.
    summary = json.loads(
        trained_run.s3.get_object(Bucket=trained_run.lake, Key=f"runs/{RUN}/summary.json")["Body"].read()
    )
    skipped = {"summary": {"training": {"skipped": "superseded"}}}

    counts = report.export_tables(tmp_path, os.environ["GLUE_DATABASE_PREFIX"])
    written = report.export_training(tmp_path, trained_run.s3, [{"summary": summary}, skipped])

    assert counts == {"features.labels": 2, "identity.links": 1, "ops.quarantine": 2}
    assert written is not None
    assert sorted(written) == sorted([*REPORT_FILES, "model_card.json"])
    assert report.export_training(tmp_path, trained_run.s3, [skipped]) is None
