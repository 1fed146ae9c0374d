"""The genomic path on the local runtime: real template, real state machine, real handlers.

One test per path of the state machine — happy, retry, catch, poll loop, failed modality — each driven by
files dropped into the landing bucket (S3 event -> SQS -> trigger -> execution), asserting on the
execution history, the Iceberg tables, ops.quarantine and the SNS notification.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pysam
import pytest

from mmhealth import storage
from mmhealth.errors import TransientError
from mmhealth.lakehouse.catalog import read_table
from mmpipe.local import LocalRuntime
from mmpipe.synth import generate_cohort

pytestmark = pytest.mark.integration


def carried_alt_alleles(path: Path) -> int:
    """Independent count (pysam): sample x site x ALT allele present in the sample's genotype."""
    count = 0
    with pysam.VariantFile(str(path)) as vcf:
        for record in vcf:
            for sample in record.samples.values():
                alleles = {a for a in (sample.get("GT") or ()) if a not in (None, 0)}
                count += len(alleles)
    return count


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cohort") / "delivery"
    generate_cohort(out, patients=5, seed=3, modalities={"genomic"})
    return out


@pytest.fixture
def runtime() -> Iterator[LocalRuntime]:
    with LocalRuntime() as rt:
        yield rt


def _deliver(runtime: LocalRuntime, folder: Path, delivery: str) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not any(p.startswith(".") for p in path.relative_to(folder).parts):
            runtime.upload(path, f"incoming/{delivery}/{path.relative_to(folder).as_posix()}")
    runtime.complete(delivery)


def _history_types(runtime: LocalRuntime, execution: dict[str, Any]) -> list[str]:
    return [e["type"] for e in runtime.execution_history(execution["executionArn"])]


def _quarantine(runtime: LocalRuntime) -> list[dict[str, Any]]:
    table = read_table("ops.quarantine")
    return [] if table is None else sorted(table.to_pylist(), key=lambda r: r["key"])


def test_happy_path_ingests_valid_files_and_quarantines_bad_ones(
    runtime: LocalRuntime, cohort: Path, tmp_path: Path
) -> None:
    # Given a delivery of valid VCFs, the ClinVar-style VCF, a truncated VCF, an empty VCF and a stray file
    delivery = tmp_path / "delivery"
    shutil.copytree(cohort, delivery)
    valid = sorted(p for p in (delivery / "genomic").glob("*.vcf.gz") if not p.name.startswith("clinvar"))
    whole = valid[0].read_bytes()
    (delivery / "genomic" / "truncated.vcf.gz").write_bytes(whole[: len(whole) // 2])
    (delivery / "genomic" / "empty.vcf").write_bytes(b"")
    (delivery / "scan-request.docx").write_bytes(b"PK\x03\x04 office document")
    inbox = runtime.subscribe()

    # When it is dropped into the landing bucket
    _deliver(runtime, delivery, "d-happy")
    runtime.drain()
    (execution,) = runtime.wait_for_executions(count=1)

    # Then the run succeeds and genomic.variants agrees with an independent pysam count
    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    variants = read_table("genomic.variants")
    assert variants is not None
    assert variants.num_rows == sum(carried_alt_alleles(p) for p in valid)
    assert set(variants["sample_id"].to_pylist()) == {p.name.removesuffix(".vcf.gz") for p in valid}
    clinvar = read_table("genomic.clinvar")
    assert clinvar is not None
    assert clinvar.num_rows > 0
    # And each bad file is one quarantine record with its reason
    reasons = {r["key"].rsplit("/", 1)[1]: (r["stage"], r["reason"]) for r in _quarantine(runtime)}
    assert reasons == {
        "truncated.vcf.gz": ("import", "truncated-gzip"),
        "empty.vcf": ("import", "empty-file"),
        "scan-request.docx": ("classify", "unrecognised-type"),
    }
    # And on-call gets one notification with the counts
    (note,) = inbox.receive(count=1)
    summary = json.loads(note.message)
    assert (summary["status"], summary["quarantined"]) == ("SUCCEEDED", 3)
    assert summary["modalities"]["genomic"]["tables"]["genomic.variants"] == variants.num_rows


def test_the_same_files_delivered_again_never_double_rows(runtime: LocalRuntime, cohort: Path) -> None:
    _deliver(runtime, cohort, "d-first")
    runtime.drain()
    runtime.wait_for_executions(count=1)
    rows = read_table("genomic.variants").num_rows  # type: ignore[union-attr]

    # When the same objects' events are replayed (same keys, same bytes) and the files come again in a new delivery
    _deliver(runtime, cohort, "d-first")
    _deliver(runtime, cohort, "d-second")
    runtime.drain()
    executions = runtime.wait_for_executions(count=2)

    # Then the replay started nothing, the re-delivery replaced the samples' rows, and the counts hold
    assert [e["status"] for e in executions] == ["SUCCEEDED", "SUCCEEDED"]
    assert read_table("genomic.variants").num_rows == rows  # type: ignore[union-attr]


def test_files_after_the_delivery_closed_make_a_follow_up_run_of_just_them(
    runtime: LocalRuntime, cohort: Path, tmp_path: Path
) -> None:
    # Given a delivery whose run closed on its completion marker (all but one VCF)
    vcfs = sorted((cohort / "genomic").glob("*.vcf.gz"))
    late = [p for p in vcfs if not p.name.startswith("clinvar")][-1]
    first = [p for p in vcfs if p != late]
    runtime.deliver({f"genomic/{p.name}": p for p in first}, "d-late")
    runtime.drain()
    (w1,) = runtime.wait_for_executions(names=["d-late-w1"])
    samples = read_table("genomic.samples").num_rows  # type: ignore[union-attr]

    # When the last VCF arrives after it, without a new marker
    runtime.upload(late, f"incoming/d-late/genomic/{late.name}")
    runtime.drain()
    (w2,) = runtime.wait_for_executions(names=["d-late-w2"])

    # Then a follow-up run of the same delivery ingested just that file, closed by the quiet period
    assert (w1["status"], w2["status"]) == ("SUCCEEDED", "SUCCEEDED")
    manifest = storage.read_json(runtime.lake_bucket, "runs/d-late-w2/manifest.json")
    assert sum(c["files"] for c in manifest["chunks"]) == 1
    collected = storage.read_json(runtime.lake_bucket, "runs/d-late-w2/summary.json")["delivery"]
    assert collected["closed"].startswith("no new object for")
    assert read_table("genomic.samples").num_rows == samples + 1  # type: ignore[union-attr]


def test_a_transient_import_failure_is_absorbed_by_the_retry(runtime: LocalRuntime, cohort: Path) -> None:
    real_import = runtime.real_handler("GenomicImportFunction")
    calls = {"n": 0}

    def flaky_import(event: dict[str, Any], context: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise TransientError("S3 SlowDown while downloading (simulated)")
        return real_import(event, context)

    with runtime.override_handlers({"GenomicImportFunction": flaky_import}):
        _deliver(runtime, cohort, "d-retry")
        runtime.drain()
        (execution,) = runtime.wait_for_executions(count=1, timeout=180)

    assert execution["status"] == "SUCCEEDED"
    types = _history_types(runtime, execution)
    assert types.count("TaskFailed") == 1  # the failed attempt is in the history, then the retry succeeded
    assert calls["n"] == 2
    assert read_table("genomic.variants").num_rows > 0  # type: ignore[union-attr]
    assert _quarantine(runtime) == []


def test_an_import_crash_is_caught_into_quarantine_records_and_a_notification(
    runtime: LocalRuntime, cohort: Path
) -> None:
    def crashing_import(event: dict[str, Any], context: Any) -> Any:
        raise MemoryError("Runtime.OutOfMemory while converting the chunk (simulated)")

    inbox = runtime.subscribe()
    with runtime.override_handlers({"GenomicImportFunction": crashing_import}):
        _deliver(runtime, cohort, "d-crash")
        runtime.drain()
        (execution,) = runtime.wait_for_executions(count=1)

    # Then the Catch quarantined every file of the chunk with the cause, and the run still finished
    assert execution["status"] == "SUCCEEDED"
    records = _quarantine(runtime)
    delivered = [p for p in cohort.rglob("*.vcf.gz")]
    assert len(records) == len(delivered)
    assert {r["reason"] for r in records} == {"MemoryError"}
    assert all("Runtime.OutOfMemory" in r["detail"] for r in records)
    assert read_table("genomic.variants") is None
    (note,) = inbox.receive(count=1)
    assert json.loads(note.message)["quarantined"] == len(delivered)


def test_a_backend_job_is_polled_with_backoff_until_it_completes(runtime: LocalRuntime, cohort: Path) -> None:
    # Given an import that starts a backend job (as with HealthOmics) and a poll that sees it finish later
    real_import = runtime.real_handler("GenomicImportFunction")
    polls = {"n": 0}

    def import_with_job(event: dict[str, Any], context: Any) -> Any:
        status = real_import(event, context)
        return status | {
            "status": "IN_PROGRESS",
            "job": {"backend": "healthomics", "job_id": "job-1"},
            "wait_seconds": 1,
        }

    def poll(event: dict[str, Any], context: Any) -> Any:
        from mmhealth.contracts import ChunkStatus
        from mmhealth.polling import next_poll

        polls["n"] += 1
        status = ChunkStatus.model_validate(event)
        if polls["n"] < 3:
            return next_poll(status).model_dump()
        return status.model_copy(update={"status": "COMPLETED"}).model_dump()

    with runtime.override_handlers({"GenomicImportFunction": import_with_job, "GenomicPollFunction": poll}):
        _deliver(runtime, cohort, "d-poll")
        runtime.drain()
        (execution,) = runtime.wait_for_executions(count=1, timeout=180)

    assert execution["status"] == "SUCCEEDED"
    history = runtime.execution_history(execution["executionArn"])
    waits = [e for e in history if e["type"] == "WaitStateEntered"]
    assert len(waits) == 3
    assert polls["n"] == 3


def test_a_failed_catalog_fails_the_run_after_notifying_with_the_cause(
    runtime: LocalRuntime, cohort: Path
) -> None:
    def broken_catalog(event: dict[str, Any], context: Any) -> Any:
        raise PermissionError("glue:UpdateTable denied on mmpipe_dev_genomic.variants (simulated)")

    inbox = runtime.subscribe()
    with runtime.override_handlers({"GenomicCatalogFunction": broken_catalog}):
        _deliver(runtime, cohort, "d-catalog")
        runtime.drain()
        (execution,) = runtime.wait_for_executions(count=1)

    assert execution["status"] == "FAILED"
    assert execution["error"] == "ModalityFailed"
    assert "genomic: PermissionError" in execution["cause"]
    assert "glue:UpdateTable denied" in execution["cause"]
    (note,) = inbox.receive(count=1)
    assert json.loads(note.message)["status"] == "FAILED"
    # The quarantine table is still committed for the run (nothing to quarantine here), originals untouched
    assert runtime.client("s3").head_object(
        Bucket=runtime.landing_bucket, Key="incoming/d-catalog/genomic/clinvar_annotations.vcf.gz"
    )


def test_originals_are_never_modified_or_deleted(runtime: LocalRuntime, cohort: Path) -> None:
    _deliver(runtime, cohort, "d-originals")
    s3 = runtime.client("s3")
    before = {
        o["Key"]: o["ETag"]
        for o in s3.list_objects_v2(Bucket=runtime.landing_bucket, Prefix="incoming/")["Contents"]
    }
    runtime.drain()
    runtime.wait_for_executions(count=1)
    after = {
        o["Key"]: o["ETag"]
        for o in s3.list_objects_v2(Bucket=runtime.landing_bucket, Prefix="incoming/")["Contents"]
    }
    assert after == before
    versions = s3.list_object_versions(Bucket=runtime.landing_bucket, Prefix="incoming/")
    assert len(versions.get("Versions", [])) == len(before)
    assert not versions.get("DeleteMarkers")
