"""Write events/: one realistic, chained sample event per function, from the files in tests/data/delivery.

    .venv/bin/python -m mmpipe.sample_events

The events name the dev stage's resources in moto's default account (123456789012, us-east-1), so they
work on the local runtime as they are, and with `sam local invoke` once the account is edited. The chain
(trigger -> collect -> prepare -> import -> catalog -> ... -> finalize) is consistent: the run in collect.json
and prepare.json is the wave the trigger opens for trigger.json's delivery, and
tests/unit/functions/test_events.py replays it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from mmhealth.classify import SNIFF_BYTES, classify
from mmhealth.contracts import (
    CatalogResult,
    ChunkRef,
    ChunkStatus,
    JobHandle,
    ManifestFile,
    RadiomicsRun,
    RunConfig,
    S3Object,
    TableCommit,
    TrainingRun,
)
from mmhealth.imaging.radiomics_job import job_name
from mmhealth.lakehouse.layout import RunPaths
from mmhealth.naming import run_name
from mmhealth.training import job as training
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
    run_id = run_name(DELIVERY, 1)
    paths = RunPaths(run_id)
    config = RunConfig(poll_seconds=5)
    counts = {m: sum(1 for f in files if _modality(f) == m) for m in ("genomic", "clinical", "imaging")}
    chunks = {
        m: ChunkRef(run_id=run_id, modality=m, chunk_id=f"{m}-0000", key=paths.chunk(m, 0), files=counts[m])
        for m in ("genomic", "clinical", "imaging")
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
            "config": config.model_dump(),
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
    imaging_catalogued = CatalogResult(
        run_id=run_id,
        modality="imaging",
        quarantined=0,
        commits=[
            TableCommit(table="imaging.instances", rows_added=6, snapshot_id=4),
            TableCommit(table="imaging.series", rows_added=1, snapshot_id=5),
        ],
    )
    branches.append(imaging_catalogued.model_dump())
    radiomics = RadiomicsRun(
        run_id=run_id,
        status="IN_PROGRESS",
        config=config,
        catalog=imaging_catalogued,
        series=1,
        job=JobHandle(backend="sagemaker", job_id=job_name(run_id)),
        wait_seconds=5,
        output_uri=f"s3://{LAKE}/radiomics/{run_id}/output/",
    )
    dataset_id = "5d41402abc4b2a76b9719d91"
    features = {
        "result": {
            "patients": 2,
            "genomic_patients": 2,
            "imaging_patients": 1,
            "dataset": {
                "dataset_id": dataset_id,
                "uri": f"s3://{LAKE}/datasets/{dataset_id}/",
                "run_id": run_id,
                "created_at": "2026-11-21T09:34:10.000000+00:00",
                "rows": 2,
                "patients_per_modality": {"clinical": 2, "genomic": 2, "imaging": 1},
                "prevalence": {"hypertension": {"eligible": 2, "positives": 1, "prevalence": 0.5}},
            },
        }
    }
    trained = TrainingRun(
        run_id=run_id,
        status="IN_PROGRESS",
        config=config,
        job=JobHandle(backend="sagemaker", job_id=training.job_name(run_id)),
        dataset_id=dataset_id,
        dataset_uri=f"s3://{LAKE}/datasets/{dataset_id}/",
        wait_seconds=5,
        output_uri=f"s3://{LAKE}/training/{run_id}/",
    )
    polled = ChunkStatus(
        chunk=chunks["genomic"],
        status="IN_PROGRESS",
        parts=3,
        rows=9,
        job=JobHandle(backend="healthomics", job_id="4842b5fa-2c39-4e0e-9c7a-1b2a3c4d5e6f"),
        wait_seconds=5,
        config=RunConfig(poll_seconds=5, genomic_backend="healthomics"),
    )
    execution_input = {"run_id": run_id, "delivery": DELIVERY, "wave": 1, "config": {"poll_seconds": 5}}
    collected = {
        "closed": True,
        "reason": "no new object for 0 s (quiet period 0 s)",
        "wait_seconds": 0,
        "delivery": DELIVERY,
        "wave": 1,
        "objects": len(files),
        "marker": None,
        "missing": 0,
        "missing_first": [],
    }
    delivery = {
        "name": DELIVERY,
        "wave": 1,
        "files": len(files),
        "closed": collected["reason"],
        "missing": 0,
        "missing_first": [],
    }
    return {
        "trigger": sqs_event(
            [m for m, _ in delivered], f"arn:aws:sqs:{REGION}:{ACCOUNT}:mmpipe-dev-IngestQueue"
        ),
        "collect": {**execution_input, "config": {"poll_seconds": 5, "delivery_quiet_seconds": 0}},
        "prepare": {**execution_input, "collect": {"result": collected}},
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
        "imaging_import": import_event("imaging"),
        "imaging_poll": polled.model_copy(
            update={
                "chunk": chunks["imaging"],
                "job": JobHandle(backend="healthimaging", job_id="9f1e6a4c2b3d4e5f60718293a4b5c6d7"),
                "config": RunConfig(poll_seconds=5, imaging_backend="healthimaging"),
            }
        ).model_dump(),
        "imaging_catalog": catalog_event("imaging"),
        "radiomics_start": {
            "run_id": run_id,
            "config": config.model_dump(),
            "catalog": imaging_catalogued.model_dump(),
        },
        "radiomics_poll": radiomics.model_dump(),
        "radiomics_catalog": radiomics.model_copy(update={"status": "COMPLETED", "attempt": 3}).model_dump(),
        "features": {"run_id": run_id, "modalities": branches},
        "training_start": {"run_id": run_id, "config": config.model_dump(), "features": features},
        "training_poll": trained.model_dump(),
        "training_catalog": trained.model_copy(update={"status": "COMPLETED", "attempt": 4}).model_dump(),
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
            "delivery": delivery,
            "unknown": sum(1 for f in files if f.kind == "unknown"),
            "modalities": branches,
            "files": counts,
            "features": {"result": {"skipped": True}},
            "training": {
                "result": {"run_id": run_id, "status": "COMPLETED", "skipped": "training is off for this run"}
            },
        },
    }


def _modality(file: ManifestFile) -> str | None:
    from mmhealth.contracts import KIND_TO_MODALITY

    return KIND_TO_MODALITY.get(file.kind)


def write_sample_series(folder: Path) -> list[Path]:
    """tests/data/delivery/imaging/: pt-0001's small brain MR series (6 axial 16 x 16 slices, 5 mm apart,
    files numbered in reverse slice order), deterministic, written once and checked in."""
    import numpy as np
    from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, MRImageStorage, generate_uid

    study, series, frame = (
        generate_uid(entropy_srcs=["mmpipe-sample", part]) for part in ("study", "series", "for")
    )
    yy, xx = np.mgrid[0:16, 0:16]
    paths = []
    for k in range(6):
        sop = generate_uid(entropy_srcs=["mmpipe-sample", "sop", str(k)])
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = MRImageStorage, sop
        meta.TransferSyntaxUID, meta.ImplementationClassUID = (
            ExplicitVRLittleEndian,
            PYDICOM_IMPLEMENTATION_UID,
        )
        ds = FileDataset("", Dataset(), file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = MRImageStorage, sop, "MR"
        ds.PatientID, ds.PatientName, ds.StudyDate = "pt-0001", "Testperson^Alexandra", "20160601"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.SeriesDescription, ds.BodyPartExamined, ds.InstanceNumber = "AX T2 FLAIR", "BRAIN", k + 1
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-40.0, -40.0, -12.5 + 5.0 * k]
        ds.PixelSpacing, ds.SliceThickness = [5.0, 5.0], 5.0
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows = ds.Columns = 16
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleSlope, ds.RescaleIntercept = 1, 0
        head = ((yy - 7.5) ** 2 + (xx - 7.5) ** 2 < 36).astype(np.uint16) * (400 + 20 * k)
        ds.PixelData = head.astype("<u2").tobytes()
        path = folder / f"{6 - k:04d}.dcm"
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def main() -> None:
    EVENTS.mkdir(exist_ok=True)
    for name, event in build_events().items():
        (EVENTS / f"{name}.json").write_text(json.dumps(event, indent=2) + "\n")


if __name__ == "__main__":
    main()
