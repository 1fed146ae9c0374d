"""`local up`'s console: a line per delivery and per phase change, per-file lines only when asked."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

from mmpipe.console import DeliveryConsole, phase


@dataclass(frozen=True)
class File:
    relative: str
    key: str
    size: int


def test_the_phase_follows_the_open_states_in_pipeline_order() -> None:
    assert phase(["Collect"]) == phase(["WaitForDelivery"]) == "waiting for the delivery to complete"
    assert (
        phase(["IngestModalities", "ImportGenomicChunks", "WaitForRadiomics"]) == "ingesting + radiomics job"
    )
    assert phase(["StartTraining"]) == phase(["WaitForTraining"]) == "training"
    assert phase(["BuildFeatures"]) == "building features"
    assert phase(["IngestModalities"]) == ""  # a container alone says nothing new


def test_an_upload_burst_is_one_line_per_delivery_and_a_line_per_file_only_when_verbose() -> None:
    files = [
        File("site-b/genomic/p1.vcf", "incoming/site-b/genomic/p1.vcf", 2_000),
        File("site-b/notes.txt", "incoming/site-b/notes.txt", 300),
        File("loose.vcf", "incoming/inbox-2026-12-04/loose.vcf", 150_000),
    ]
    runtime = SimpleNamespace(landing_bucket="landing")
    quiet: list[str] = []
    DeliveryConsole(runtime, quiet.append, reports=None, verbose=False).uploaded(files)  # type: ignore[arg-type]
    assert quiet == ["inbox-2026-12-04: 1 file uploaded (0.1 MB)", "site-b: 2 files uploaded (2 kB)"]

    verbose: list[str] = []
    DeliveryConsole(runtime, verbose.append, reports=None, verbose=True).uploaded(files)  # type: ignore[arg-type]
    assert len(verbose) == 5
    assert (
        verbose[0]
        == "uploaded site-b/genomic/p1.vcf (2000 bytes) -> s3://landing/incoming/site-b/genomic/p1.vcf"
    )
