"""The job's input: one JSON manifest per series, and the stable shard a series belongs to."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from radiomics_job.errors import MANIFEST_INVALID, SeriesError

DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class SeriesManifest:
    """`{"series_uid", "patient_id", "study_uid", "study_date": "YYYY-MM-DD" | null, "instances": [uri, ...]}`;
    each instance is `s3://bucket/key` or a local absolute path."""

    series_uid: str
    patient_id: str
    study_uid: str
    study_date: str | None
    instances: tuple[str, ...]

    def identity(self) -> dict[str, Any]:
        return {
            "series_uid": self.series_uid,
            "patient_id": self.patient_id,
            "study_uid": self.study_uid,
            "study_date": self.study_date,
        }


def parse_manifest(name: str, text: str) -> SeriesManifest:
    """Validate one manifest; SeriesError(manifest-invalid) naming the file and the problem."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise SeriesError(MANIFEST_INVALID, f"{name}: not JSON: {error}") from error
    if not isinstance(document, dict):
        raise SeriesError(MANIFEST_INVALID, f"{name}: not a JSON object")
    for key in ("series_uid", "patient_id", "study_uid"):
        if not isinstance(document.get(key), str) or not document[key]:
            raise SeriesError(MANIFEST_INVALID, f"{name}: {key} must be a non-empty string")
    study_date = document.get("study_date")
    if study_date is not None and not (isinstance(study_date, str) and DATE.match(study_date)):
        raise SeriesError(
            MANIFEST_INVALID, f"{name}: study_date must be YYYY-MM-DD or null, got {study_date!r}"
        )
    instances = document.get("instances")
    if not isinstance(instances, list) or not instances or not all(isinstance(i, str) for i in instances):
        raise SeriesError(MANIFEST_INVALID, f"{name}: instances must be a non-empty list of URIs")
    return SeriesManifest(
        series_uid=document["series_uid"],
        patient_id=document["patient_id"],
        study_uid=document["study_uid"],
        study_date=study_date,
        instances=tuple(instances),
    )


def shard_of(series_uid: str, shard_count: int) -> int:
    """Stable shard of a series (sha256 of its uid), the same on every machine and Python version."""
    return int(hashlib.sha256(series_uid.encode()).hexdigest()[:16], 16) % shard_count


def manifests_for_folder(imaging_root: Path, out_dir: Path) -> list[Path]:
    """Write one manifest (local absolute paths) per series found under `imaging_root` (*.dcm files,
    grouped by SeriesInstanceUID); for local runs and tests. Returns the manifest paths."""
    import pydicom

    series: dict[str, dict[str, Any]] = {}
    for path in sorted(imaging_root.rglob("*.dcm")):
        header = pydicom.dcmread(path, stop_before_pixels=True)
        uid = str(header.SeriesInstanceUID)
        entry = series.setdefault(
            uid,
            {
                "series_uid": uid,
                "patient_id": str(header.PatientID),
                "study_uid": str(header.StudyInstanceUID),
                "study_date": _iso_date(str(header.get("StudyDate", ""))),
                "instances": [],
            },
        )
        entry["instances"].append(str(path.resolve()))
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for uid, entry in sorted(series.items()):
        target = out_dir / f"{uid}.json"
        target.write_text(json.dumps(entry, indent=2) + "\n")
        written.append(target)
    return written


def _iso_date(dicom_date: str) -> str | None:
    return f"{dicom_date[:4]}-{dicom_date[4:6]}-{dicom_date[6:8]}" if len(dicom_date) == 8 else None


if __name__ == "__main__":
    import sys

    # python -m radiomics_job.manifest IMAGING_FOLDER MANIFEST_FOLDER
    print(len(manifests_for_folder(Path(sys.argv[1]), Path(sys.argv[2]))), "manifests")
