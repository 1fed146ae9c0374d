"""The metrics the dashboard and alarms read, as the handlers print them (CloudWatch EMF on stdout):

- a per-modality or per-job dimension stays on its own metrics and never leaks onto the invocation's others;
- a failed radiomics or training job is counted (JobsFailed{job}) even though its poll then raises;
- a real import and catalog of each modality publish FilesIngested, RowsStaged, RowsCommitted,
  FilesQuarantined, ImportSeconds and CatalogSeconds with their modality (moto, the sample delivery).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.stub import Stubber

from mmhealth.contracts import CatalogResult, JobHandle, RadiomicsRun, TrainingRun
from mmhealth.errors import BackendJobFailed
from mmhealth.handlers import radiomics_poll, training_poll
from mmhealth.observability import MetricUnit, job_failed, metrics, timed
from tests.conftest import REPO, FakeLambdaContext
from tests.unit.backend_fixtures import stubbed_in_handlers
from tests.unit.functions.test_events import dev_account  # noqa: F401  (a fixture, used by name)
from tests.unit.ops_template.ops_support import dimension_sets, emf_documents, metric_values

CONTEXT = FakeLambdaContext()
RUN_ID = "2026-11-21-site-a-ce93d71848bd1c6d6de3"
AT = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def no_leftover_metrics(capsys: pytest.CaptureFixture[str]) -> Iterator[None]:
    """Metrics is process-wide: start each test from an empty set and an empty stdout."""
    metrics.clear_metrics()
    capsys.readouterr()
    yield
    metrics.clear_metrics()


def printed(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return emf_documents(capsys.readouterr().out)


# ---------------------------------------------------------------------------------- the mechanism


def test_a_modality_dimension_stays_on_its_own_metrics(capsys: pytest.CaptureFixture[str]) -> None:
    @metrics.log_metrics
    def handler(event: dict[str, Any], context: Any) -> None:
        metrics.add_metric(name="DuplicateFilesSkipped", unit=MetricUnit.Count, value=4)
        for modality in ("genomic", "genomic", "clinical"):
            metrics.add_dimensioned_metric("FilesQuarantined", MetricUnit.Count, 1, modality=modality)

    handler({}, CONTEXT)
    docs = printed(capsys)
    assert metric_values(docs, "DuplicateFilesSkipped") == [4.0]
    assert dimension_sets(docs, "DuplicateFilesSkipped") == [{"service"}]
    # counts of one invocation are summed: one value per modality, whatever the number of records
    assert metric_values(docs, "FilesQuarantined", modality="genomic") == [2.0]
    assert metric_values(docs, "FilesQuarantined", modality="clinical") == [1.0]
    assert dimension_sets(docs, "FilesQuarantined") == [{"service", "modality"}] * 2

    handler_without_quarantine = metrics.log_metrics(lambda event, context: None)
    handler_without_quarantine({}, CONTEXT)
    assert not [d for d in printed(capsys) if "FilesQuarantined" in d]  # flushed means forgotten


def test_a_job_failure_is_published_although_the_handler_raises(capsys: pytest.CaptureFixture[str]) -> None:
    @metrics.log_metrics
    def handler(event: dict[str, Any], context: Any) -> None:
        job_failed("radiomics")
        raise BackendJobFailed("sagemaker job j Failed: ClientError")

    with pytest.raises(BackendJobFailed):
        handler({}, CONTEXT)
    docs = printed(capsys)
    assert metric_values(docs, "JobsFailed", job="radiomics") == [1.0]
    assert dimension_sets(docs, "JobsFailed") == [{"service", "job"}]


def test_a_timed_block_is_recorded_only_when_it_completes() -> None:
    with timed("CatalogSeconds", modality="clinical"):
        pass
    with pytest.raises(ValueError, match="no duration"), timed("ImportSeconds", modality="clinical"):
        raise ValueError("a failed step has no duration worth plotting")
    ((dims, named),) = metrics.dimensioned_metrics().items()
    assert dims == (("modality", "clinical"),)
    assert set(named) == {"CatalogSeconds"}
    unit, (seconds,) = named["CatalogSeconds"]
    assert unit == MetricUnit.Seconds
    assert 0 <= seconds < 5


def test_nothing_is_printed_when_metrics_are_disabled(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # what `mmpipe local run` sets: EMF would flood the console
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")

    @metrics.log_metrics
    def handler(event: dict[str, Any], context: Any) -> None:
        metrics.add_dimensioned_metric("RowsStaged", MetricUnit.Count, 7, modality="clinical")

    handler({}, CONTEXT)
    assert printed(capsys) == []
    assert metrics.dimensioned_metrics() == {}  # and nothing piles up in a long-lived process


# ---------------------------------------------------------------------------------- failed jobs


@pytest.fixture
def sagemaker(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubber]:
    with stubbed_in_handlers(monkeypatch, "sagemaker") as stubber:
        yield stubber


def described_training(status: str) -> dict[str, Any]:
    return {
        "TrainingJobName": "mmpipe-train-j", "TrainingJobStatus": status, "SecondaryStatus": "Training",
        "TrainingJobArn": "arn:aws:sagemaker:us-east-1:123456789012:training-job/mmpipe-train-j",
        "CreationTime": AT, "ModelArtifacts": {"S3ModelArtifacts": "s3://x/y"},
        "AlgorithmSpecification": {"TrainingInputMode": "File"},
        "ResourceConfig": {"InstanceType": "ml.m5.2xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 4500},
        **({"FailureReason": "AlgorithmError: out of memory"} if status == "Failed" else {}),
    }  # fmt: skip


def described_processing(status: str) -> dict[str, Any]:
    return {
        "ProcessingJobName": "mmpipe-radiomics-j", "ProcessingJobStatus": status, "CreationTime": AT,
        "ProcessingJobArn": "arn:aws:sagemaker:us-east-1:123456789012:processing-job/mmpipe-radiomics-j",
        "ProcessingResources": {
            "ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.g4dn.xlarge", "VolumeSizeInGB": 30}
        },
        "AppSpecification": {"ImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/mmpipe-radiomics:1"},
        **({"FailureReason": "ClientError: out of GPU memory"} if status == "Failed" else {}),
    }  # fmt: skip


def training_event() -> dict[str, Any]:
    job = JobHandle(backend="sagemaker", job_id="mmpipe-train-j")
    return TrainingRun(run_id=RUN_ID, status="IN_PROGRESS", job=job).model_dump()


def radiomics_event() -> dict[str, Any]:
    catalog = CatalogResult(run_id=RUN_ID, modality="imaging", commits=[], quarantined=0)
    job = JobHandle(backend="sagemaker", job_id="mmpipe-radiomics-j")
    return RadiomicsRun(run_id=RUN_ID, status="IN_PROGRESS", job=job, catalog=catalog).model_dump()


def test_a_failed_training_job_is_counted(sagemaker: Stubber, capsys: pytest.CaptureFixture[str]) -> None:
    sagemaker.add_response("describe_training_job", described_training("InProgress"))
    sagemaker.add_response("describe_training_job", described_training("Failed"))

    training_poll.lambda_handler(training_event(), CONTEXT)
    assert metric_values(printed(capsys), "JobsFailed", job="training") == []  # still running: nothing

    with pytest.raises(BackendJobFailed, match="out of memory"):
        training_poll.lambda_handler(training_event(), CONTEXT)
    docs = printed(capsys)
    assert metric_values(docs, "JobsFailed", job="training") == [1.0]
    assert metric_values(docs, "JobsFailed", job="radiomics") == []


def test_a_failed_radiomics_job_is_counted(sagemaker: Stubber, capsys: pytest.CaptureFixture[str]) -> None:
    sagemaker.add_response("describe_processing_job", described_processing("Completed"))
    sagemaker.add_response("describe_processing_job", described_processing("Failed"))

    assert radiomics_poll.lambda_handler(radiomics_event(), CONTEXT)["status"] == "COMPLETED"
    assert metric_values(printed(capsys), "JobsFailed", job="radiomics") == []

    with pytest.raises(BackendJobFailed, match="out of GPU memory"):
        radiomics_poll.lambda_handler(radiomics_event(), CONTEXT)
    assert metric_values(printed(capsys), "JobsFailed", job="radiomics") == [1.0]


# ---------------------------------------------------------------------------------- per modality


def _invoke(name: str, context: Any) -> dict[str, Any]:
    module = __import__(f"mmhealth.handlers.{name}", fromlist=["lambda_handler"])
    event = json.loads((REPO / "events" / f"{name}.json").read_text())
    result: dict[str, Any] = module.lambda_handler(event, context)
    return result


def test_imports_and_catalogs_publish_their_modality_metrics(
    dev_account: SimpleNamespace,  # noqa: F811
    lambda_context: FakeLambdaContext,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given the sample delivery (tests/data/delivery): 2 VCFs + a ClinVar VCF, 2 FHIR files with one
    # broken line, one 6-slice DICOM series, and notes.txt that nobody can classify
    _invoke("trigger", lambda_context)
    docs = printed(capsys)
    assert metric_values(docs, "Files_genomic") == [2.0]
    # The wave closes and Prepare quarantines what nobody can classify
    _invoke("collect", lambda_context)
    _invoke("prepare", lambda_context)
    assert metric_values(printed(capsys), "FilesQuarantined", modality="unknown") == [1.0]

    # When each modality's import and catalog run, then each publishes under its own modality
    expected = {
        # modality: (files ingested, rows staged, quarantined, rows committed)
        "genomic": (3, 11, 0, 11),  # variants 7 + samples 2 + clinvar 2
        "clinical": (2, 7, 1, 7),  # the broken NDJSON line is quarantined, the file still ingested
        "imaging": (6, 6, 0, 7),  # 6 instances, then 1 series row
    }
    for modality, (files, rows, quarantined, committed) in expected.items():
        imported = _invoke(f"{modality}_import", lambda_context)
        docs = printed(capsys)
        assert (imported["rows"], imported["quarantined"]) == (rows, quarantined)
        assert metric_values(docs, "FilesIngested", modality=modality) == [files]
        assert metric_values(docs, "RowsStaged", modality=modality) == [rows]
        assert metric_values(docs, "FilesQuarantined", modality=modality) == (
            [quarantined] if quarantined else []
        )
        (seconds,) = metric_values(docs, "ImportSeconds", modality=modality)
        assert 0 <= seconds < 120

        _invoke(f"{modality}_catalog", lambda_context)
        docs = printed(capsys)
        assert metric_values(docs, "RowsCommitted", modality=modality) == [committed]
        (seconds,) = metric_values(docs, "CatalogSeconds", modality=modality)
        assert 0 <= seconds < 300
        # no modality dimension leaks onto the invocation's other metrics, and no other modality appears
        for doc in docs:
            assert doc.get("modality") in (None, modality)
            if "modality" not in doc:
                assert not {"RowsCommitted", "CatalogSeconds"} & set(doc)
