"""Write events/: one realistic, chained sample event per function, from the files in tests/data/delivery.

    .venv/bin/python -m mmpipe.sample_events

The events name the dev stage's resources in moto's default account (123456789012, us-east-1), so they
work on the local runtime as they are, and with `sam local invoke` once the account is edited. The chain
(trigger -> prepare -> import -> catalog -> ... -> finalize) is consistent: the run id in prepare.json is
the one the trigger derives from trigger.json, and tests/unit/functions/test_events.py replays it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from mmhealth.classify import SNIFF_BYTES, classify
from mmhealth.contracts import ChunkRef, ChunkStatus, JobHandle, ManifestFile, RunConfig, RunPaths, S3Object
from mmhealth.ingest import run_id_for
from mmpipe.lambda_events import s3_notification, sqs_event

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "delivery"
EVENTS = REPO / "events"
ACCOUNT, REGION = "123456789012", "us-east-1"
LANDING = f"mmpipe-dev-landing-{ACCOUNT}-{REGION}"
LAKE = f"mmpipe-dev-lake-{ACCOUNT}-{REGION}"
DELIVERY = "2026-11-21-site-a"
STARTED_AT = "2026-11-21T09:30:02.512Z"


def _delivered() -> list[tuple[dict[str, Any], ManifestFile]]:
    out = []
    for path in sorted(p for p in DATA.rglob("*") if p.is_file()):
        key = f"incoming/{DELIVERY}/{path.relative_to(DATA).as_posix()}"
        body = path.read_bytes()
        etag = hashlib.md5(body).hexdigest()  # noqa: S324 - S3's ETag of a single-part upload
        kind = classify(key, body[:SNIFF_BYTES], len(body))
        obj = S3Object(bucket=LANDING, key=key, etag=etag, size=len(body))
        out.append((s3_notification(LANDING, key, len(body), etag), ManifestFile(object=obj, kind=kind.kind)))
    return out


def build_events() -> dict[str, Any]:
    delivered = _delivered()
    files = [f for _, f in delivered]
    run_id = run_id_for(files)
    paths = RunPaths(run_id)
    config = RunConfig(poll_seconds=5)
    counts = {m: sum(1 for f in files if _modality(f) == m) for m in ("genomic", "clinical", "imaging")}
    chunks = {
        m: ChunkRef(run_id=run_id, modality=m, chunk_id=f"{m}-0000", key=paths.chunk(m, 0), files=counts[m])
        for m in ("genomic", "clinical")
    }

    def import_event(modality: str) -> dict[str, Any]:
        return {
            "chunk": chunks[modality].model_dump(),
            "config": config.model_dump(),
            "execution_started_at": STARTED_AT,
        }

    def catalog_event(modality: str) -> dict[str, Any]:
        return {
            "run_id": run_id,
            "modality": modality,
            "chunks": [{"chunk_id": f"{modality}-0000", "status": "COMPLETED", "rows": 0, "quarantined": 0}],
        }

    branches = [
        {
            "run_id": run_id,
            "modality": "genomic",
            "quarantined": 0,
            "commits": [
                {
                    "table": "genomic.variants",
                    "rows_added": 7,
                    "rows_removed": 0,
                    "snapshot_id": 1,
                    "skipped": False,
                },
                {
                    "table": "genomic.clinvar",
                    "rows_added": 2,
                    "rows_removed": 0,
                    "snapshot_id": 2,
                    "skipped": False,
                },
            ],
        },
        {
            "run_id": run_id,
            "modality": "clinical",
            "quarantined": 1,
            "commits": [
                {
                    "table": "clinical.patient",
                    "rows_added": 2,
                    "rows_removed": 0,
                    "snapshot_id": 3,
                    "skipped": False,
                }
            ],
        },
    ]
    polled = ChunkStatus(
        chunk=chunks["genomic"],
        status="IN_PROGRESS",
        parts=3,
        rows=9,
        job=JobHandle(backend="healthomics", job_id="4842b5fa-2c39-4e0e-9c7a-1b2a3c4d5e6f"),
        wait_seconds=5,
        config=RunConfig(poll_seconds=5, genomic_backend="healthomics"),
    )
    return {
        "trigger": sqs_event(
            [m for m, _ in delivered], f"arn:aws:sqs:{REGION}:{ACCOUNT}:mmpipe-dev-IngestQueue"
        ),
        "prepare": {
            "run_id": run_id,
            "manifest": {"bucket": LAKE, "key": paths.manifest},
            "config": {"poll_seconds": 5},
        },
        "genomic_import": import_event("genomic"),
        "genomic_poll": polled.model_dump(),
        "genomic_catalog": catalog_event("genomic"),
        "clinical_import": import_event("clinical"),
        "clinical_poll": polled.model_copy(
            update={
                "chunk": chunks["clinical"],
                "job": JobHandle(backend="healthlake", job_id="c145fbb27b192af392f8ce6e7838e34f"),
                "config": RunConfig(poll_seconds=5, clinical_backend="healthlake"),
            }
        ).model_dump(),
        "clinical_catalog": catalog_event("clinical"),
        "features": {"run_id": run_id, "modalities": branches},
        "chunk_failure": {
            "chunk": chunks["genomic"].model_dump(),
            "config": config.model_dump(),
            "error": {
                "Error": "Lambda.Unknown",
                "Cause": "The Lambda function ran out of memory while importing the chunk (Runtime.OutOfMemory)",
            },
        },
        "finalize": {
            "run_id": run_id,
            "unknown": sum(1 for f in files if f.kind == "unknown"),
            "modalities": branches,
            "files": counts,
            "features": {"result": {"skipped": True}},
        },
    }


def _modality(file: ManifestFile) -> str | None:
    from mmhealth.contracts import KIND_TO_MODALITY

    return KIND_TO_MODALITY.get(file.kind)


def main() -> None:
    EVENTS.mkdir(exist_ok=True)
    for name, event in build_events().items():
        (EVENTS / f"{name}.json").write_text(json.dumps(event, indent=2) + "\n")


if __name__ == "__main__":
    main()
