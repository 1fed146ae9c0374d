"""s3:// input and output (AWS Batch style) against the in-process moto server (AWS_ENDPOINT_URL)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from radiomics_job import storage
from radiomics_job.cli import main


@pytest.fixture
def s3(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    requests.post(f"{moto_endpoint}/moto-api/reset", timeout=10)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    storage.s3_client.cache_clear()
    yield boto3.client("s3", endpoint_url=moto_endpoint)
    storage.s3_client.cache_clear()


def test_manifests_and_instances_in_s3_give_outputs_in_s3(
    s3: Any, synthetic_manifests: list[Path], tmp_path: Path
) -> None:
    # Given one series' instances and its manifest (with s3:// instance URIs) in a bucket, and a manifest
    # naming an object that is not there
    client = s3
    client.create_bucket(Bucket="images")
    local = json.loads(synthetic_manifests[0].read_text())
    uris = []
    for n, path in enumerate(local["instances"]):
        key = f"dicom/{local['series_uid']}/{n}.dcm"
        client.upload_file(path, "images", key)
        uris.append(f"s3://images/{key}")
    manifest = {**local, "instances": uris}
    client.put_object(Bucket="images", Key=f"manifests/{local['series_uid']}.json", Body=json.dumps(manifest))
    lost = {**manifest, "series_uid": "1.2.3.lost", "instances": ["s3://images/dicom/lost.dcm"]}
    client.put_object(Bucket="images", Key="manifests/1.2.3.lost.json", Body=json.dumps(lost))
    # When the job reads s3://images/manifests/ and writes s3://images/results/run-1/
    code = main(
        ["--input", "s3://images/manifests/", "--output", "s3://images/results/run-1/", "--workers", "1"]
    )
    # Then features, mask, pictures and job.json are in the bucket, with the missing object as a download
    # failure
    assert code == 0
    keys = {o["Key"] for o in client.list_objects_v2(Bucket="images", Prefix="results/")["Contents"]}
    uid = local["series_uid"]
    assert keys == {
        "results/run-1/job.json",
        f"results/run-1/features/{uid}.json",
        f"results/run-1/masks/{uid}.nii.gz",
        f"results/run-1/features/{uid}/thumbnail.png",
        f"results/run-1/features/{uid}/overlay.png",
        "results/run-1/features/1.2.3.lost.json",
    }

    def read(key: str) -> dict[str, Any]:
        return json.loads(client.get_object(Bucket="images", Key=key)["Body"].read())

    assert read(f"results/run-1/features/{uid}.json")["status"] == "ok"
    assert (
        read(f"results/run-1/features/{uid}.json")["images"]["thumbnail"] == f"features/{uid}/thumbnail.png"
    )
    assert read("results/run-1/features/1.2.3.lost.json")["error"]["reason"] == "series-download-failed"
    assert read("results/run-1/job.json")["errors"] == {"series-download-failed": 1}
