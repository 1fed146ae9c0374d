"""What `mmpipe status` reads from an execution history: the failing state and cause, retries, progress.

The histories are written the way Step Functions records them (event types, `previousEventId` chains,
`*EventDetails`); the integration tier reads real ones from the local runtime.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from mmpipe.status import (
    failing_state,
    failures,
    linkage_line,
    modality_progress,
    open_states,
    render_run,
    training_line,
)

LAMBDA_CAUSE = json.dumps(
    {"errorMessage": "catalog store unreachable", "errorType": "RuntimeError", "stackTrace": ["  File x"]}
)


class History:
    """Builds a linear history: each event follows the previous one."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def add(self, kind: str, **details: Any) -> History:
        event: dict[str, Any] = {
            "id": len(self.events) + 1,
            "previousEventId": len(self.events),
            "type": kind,
            "timestamp": datetime(2026, 11, 22, 4, 0, len(self.events) % 60, tzinfo=UTC),
        }
        event.update(details)
        self.events.append(event)
        return self

    def state(self, kind: str, name: str) -> History:
        self.add(f"{kind}StateEntered", stateEnteredEventDetails={"name": name, "input": "{}"})
        return self

    def exit(self, kind: str, name: str) -> History:
        return self.add(f"{kind}StateExited", stateExitedEventDetails={"name": name, "output": "{}"})

    def task_failed(self, error: str, cause: str) -> History:
        self.add("TaskScheduled", taskScheduledEventDetails={"resource": "invoke", "resourceType": "lambda"})
        self.add("TaskStarted", taskStartedEventDetails={"resource": "invoke", "resourceType": "lambda"})
        return self.add("TaskFailed", taskFailedEventDetails={"error": error, "cause": cause})

    def task_succeeded(self) -> History:
        self.add("TaskScheduled", taskScheduledEventDetails={"resource": "invoke", "resourceType": "lambda"})
        self.add("TaskStarted", taskStartedEventDetails={"resource": "invoke", "resourceType": "lambda"})
        return self.add("TaskSucceeded", taskSucceededEventDetails={"output": "{}"})


def failed_catalog_history() -> list[dict[str, Any]]:
    """Prepare; the genomic chunk import retried once, then its chunk caught into quarantine; the catalog
    fails and is caught into GenomicFailed; the run fails in ModalityFailed; clinical was skipped."""
    h = History().add("ExecutionStarted", executionStartedEventDetails={"input": "{}"})
    h.state("Task", "Prepare").task_succeeded().exit("Task", "Prepare")
    h.state("Parallel", "IngestModalities").add("ParallelStateStarted")
    h.state("Choice", "HasClinicalFiles").exit("Choice", "HasClinicalFiles")
    h.state("Pass", "ClinicalSkipped").exit("Pass", "ClinicalSkipped")
    h.state("Choice", "HasGenomicFiles").exit("Choice", "HasGenomicFiles")
    h.state("Map", "ImportGenomicChunks").add("MapStateStarted")
    h.state("Task", "ImportGenomicChunk").task_failed("TransientError", "{}").task_succeeded()
    h.exit("Task", "ImportGenomicChunk").state("Pass", "GenomicChunkDone").exit("Pass", "GenomicChunkDone")
    h.state("Task", "ImportGenomicChunk").task_failed("States.TaskFailed", "bad chunk")
    h.exit("Task", "ImportGenomicChunk").state("Task", "RecordGenomicChunkFailure").task_succeeded()
    h.exit("Task", "RecordGenomicChunkFailure").state("Pass", "GenomicChunkDone").exit(
        "Pass", "GenomicChunkDone"
    )
    h.add("MapStateSucceeded").exit("Map", "ImportGenomicChunks")
    h.state("Task", "CatalogGenomic").task_failed("RuntimeError", LAMBDA_CAUSE)
    h.exit("Task", "CatalogGenomic").state("Pass", "GenomicFailed").exit("Pass", "GenomicFailed")
    h.add("ParallelStateSucceeded").exit("Parallel", "IngestModalities")
    h.state("Fail", "ModalityFailed")
    h.add(
        "ExecutionFailed",
        executionFailedEventDetails={
            "error": "ModalityFailed",
            "cause": "genomic: RuntimeError: catalog store unreachable",
        },
    )
    return h.events


def test_each_failed_attempt_is_named_with_its_state_and_what_became_of_it() -> None:
    found = failures(failed_catalog_history())

    assert [(f["state"], f["error"], f["outcome"], f["caught_by"]) for f in found] == [
        ("ImportGenomicChunk", "TransientError", "retried", None),
        ("ImportGenomicChunk", "States.TaskFailed", "caught", "RecordGenomicChunkFailure"),
        ("CatalogGenomic", "RuntimeError", "caught", "GenomicFailed"),
    ]
    # The Lambda error's JSON cause is cut to what an on-call engineer reads first (no stack trace).
    assert found[2]["cause"] == "RuntimeError: catalog store unreachable"


def test_the_failing_state_is_the_run_level_failure_not_a_quarantined_chunk() -> None:
    events = failed_catalog_history()

    failing = failing_state(failures(events), events)

    assert failing is not None
    assert (failing["state"], failing["cause"]) == (
        "CatalogGenomic",
        "RuntimeError: catalog store unreachable",
    )


def test_an_uncaught_failure_ends_the_execution_there() -> None:
    h = History().add("ExecutionStarted", executionStartedEventDetails={"input": "{}"})
    h.state("Task", "Prepare").task_failed("ManifestError", json.dumps({"errorType": "ManifestError"}))
    h.add("ExecutionFailed", executionFailedEventDetails={"error": "ManifestError", "cause": "x"})

    [failure] = failures(h.events)

    assert (failure["state"], failure["outcome"]) == ("Prepare", "uncaught")
    assert failing_state([failure], h.events) == failure


def test_progress_per_modality_from_the_manifest_and_the_history() -> None:
    manifest = {
        "chunks": [
            {"modality": "genomic", "chunk_id": "genomic-0000", "files": 25},
            {"modality": "genomic", "chunk_id": "genomic-0001", "files": 3},
            {"modality": "imaging", "chunk_id": "imaging-0000", "files": 6},
        ]
    }
    h = History().add("ExecutionStarted")
    h.state("Choice", "HasGenomicFiles").exit("Choice", "HasGenomicFiles").state("Map", "ImportGenomicChunks")
    h.state("Task", "ImportGenomicChunk").task_succeeded().exit("Task", "ImportGenomicChunk")
    h.state("Pass", "GenomicChunkDone").exit("Pass", "GenomicChunkDone")
    h.state("Task", "ImportGenomicChunk").task_succeeded().exit("Task", "ImportGenomicChunk")
    h.state("Choice", "GenomicImportFinished").exit("Choice", "GenomicImportFinished")
    h.state("Wait", "WaitForGenomicImport")
    h.state("Choice", "HasImagingFiles").exit("Choice", "HasImagingFiles").state("Map", "ImportImagingChunks")
    h.state("Pass", "ImagingChunkDone").exit("Pass", "ImagingChunkDone").exit("Map", "ImportImagingChunks")
    h.state("Task", "CatalogImaging").task_succeeded().exit("Task", "CatalogImaging")
    h.state("Task", "StartRadiomics")

    progress = modality_progress(h.events, manifest)

    assert progress == {
        "genomic": {"phase": "importing", "files": 28, "chunks": 2, "chunks_done": 1, "chunks_failed": 0},
        "imaging": {"phase": "radiomics", "files": 6, "chunks": 1, "chunks_done": 1, "chunks_failed": 0},
    }
    assert open_states(h.events) == {
        "ImportGenomicChunks": 1,
        "StartRadiomics": 1,
        "WaitForGenomicImport": 1,
    }


def test_training_is_shown_as_skipped_failed_or_trained() -> None:
    assert training_line({"skipped": "superseded by run r2"}) == "skipped: superseded by run r2"
    assert training_line({"status": "failed", "error": "BackendJobFailed", "cause": "x"}) == (
        "failed: BackendJobFailed: x"
    )
    trained = {
        "model_uri": "s3://lake/training/r1/model.tar.gz",
        "report_uri": "s3://lake/training/r1/report/report.html",
        "headline": {"stroke": {"roc_auc": 0.8123, "f1": None}},
    }
    assert training_line(trained) == (
        "model s3://lake/training/r1/model.tar.gz; report s3://lake/training/r1/report/report.html; "
        "stroke AUC 0.812 F1 -"
    )


def test_the_human_output_names_the_failing_state_and_quarantined_files_by_reason_only() -> None:
    events = failed_catalog_history()
    failed = failures(events)
    doc = {
        "run_id": "site-a-0123",
        "execution": {
            "execution": "site-a-0123",
            "execution_arn": "arn:aws:states:us-east-1:123456789012:execution:pipeline:site-a-0123",
            "status": "FAILED",
            "started_at": "2026-11-22T04:00:00+00:00",
            "seconds": 12.0,
        },
        "attempts": [],
        "deliveries": ["site-a"],
        "unknown_files": 1,
        "modalities": {"genomic": {"status": "failed", "files": 3, "error": "RuntimeError", "cause": "c"}},
        "open_states": {},
        "failing_state": failing_state(failed, events),
        "failures": failed,
        "execution_failure": None,
        "training": {"skipped": "the features step failed"},
        "quarantined": 1,
        "quarantine": [
            {
                "key": "incoming/site-a/notes.txt",
                "modality": "unknown",
                "stage": "classify",
                "reason": "unrecognised-type",
                "line": None,
            }
        ],
    }

    text = render_run(doc)

    assert "failing state: CatalogGenomic: RuntimeError: catalog store unreachable" in text
    assert "also ImportGenomicChunk (caught by RecordGenomicChunkFailure): States.TaskFailed" in text
    assert "training: skipped: the features step failed" in text
    assert "unrecognised-type" in text
    assert "incoming/site-a/notes.txt" in text


def test_what_identity_left_unlinked_is_shown_per_kind_with_the_first_ids() -> None:
    unlinked = {
        "vcf_sample": {"count": 7, "first": ["S1", "S2", "S3", "S4", "S5", "S6", "S7"]},
        "identifier": {"count": 1, "first": ["http://h/mrn|9"]},
        "patient_id": {"count": 0, "first": []},
    }
    line = linkage_line(unlinked)
    assert line == (
        "1 identifier(s) no Patient carries unlinked (http://h/mrn|9); "
        "7 VCF sample(s) unlinked (S1, S2, S3, S4, S5 ...)"
    )
    assert linkage_line({}) == "every patient reference, VCF sample and DICOM PatientID is linked"
