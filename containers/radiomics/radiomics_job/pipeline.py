"""Run the job over a set of manifests: load -> segment -> extract -> write, series by series.

Parallel design (a pool of `workers` spawned processes, each with its own pyradiomics extractor and one
ITK thread; at most 2 x workers series in flight, so memory stays bounded whatever the number of manifests):
- CPU: each worker runs a whole series - load (download + DICOM decode + assembly), segment (its own copy of
  the network, one torch thread), extract (pyradiomics). Segmentation is the largest stage, so it must
  scale with the workers too.
- CUDA: workers load and extract; segmentation runs in this process, which holds the one copy of the
  network on the GPU (one CUDA context, one series per forward pass) while the pool keeps it fed.
With workers == 1 everything runs inline in this process (no pool), which is what tests and debugging use.

Every series ends with features/<series_uid>.json (status ok or error with a reason) and, once segmented,
masks/<series_uid>.nii.gz. A failure in one series never stops the others.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from radiomics_job.errors import EMPTY_MASK, INTERNAL_ERROR, SERIES_DOWNLOAD_FAILED, SeriesError
from radiomics_job.manifest import SeriesManifest, parse_manifest
from radiomics_job.storage import download, is_s3, remove_tree

log = logging.getLogger("radiomics_job")


@dataclass(frozen=True)
class Source:
    """One manifest to process: its name (series uid by convention) and where it is (local path or s3://)."""

    name: str
    uri: str


@dataclass
class SeriesOutcome:
    """What one series produced so far; crosses the process boundary (plain data only)."""

    source: Source
    manifest: SeriesManifest | None = None
    volume: npt.NDArray[np.float32] | None = None
    geometry: Any = None  # volume.Geometry (kept Any so this module does not import SimpleITK)
    labels: npt.NDArray[np.uint8] | None = None
    regions: list[dict[str, Any]] = field(default_factory=list)
    seconds: dict[str, float | None] = field(
        default_factory=lambda: {"load": None, "segment": None, "extract": None, "total": None}
    )
    error: dict[str, str] | None = None

    def fail(self, reason: str, detail: str) -> SeriesOutcome:
        self.error = {"reason": reason, "detail": detail}
        return self


# ---------------------------------------------------------------------------------------------------------
# Stages (module-level functions: the pool pickles them by name)
# ---------------------------------------------------------------------------------------------------------

_extractor: Any = None
_segment_in_worker: Any = None


def init_worker(params: str, single_threaded: bool, weights: str | None = None) -> None:
    """Pool initializer: one pyradiomics extractor per process; ITK (and torch) on one thread when there
    are many; with `weights`, this process also segments (on CPU)."""
    global _extractor, _segment_in_worker
    import SimpleITK as sitk

    from radiomics_job.features import FeatureExtractor

    if single_threaded:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)  # type: ignore[no-untyped-call, unused-ignore]
    _extractor = FeatureExtractor(Path(params))
    if weights is not None:
        import torch

        from radiomics_job.segment import Segmenter

        if single_threaded:
            torch.set_num_threads(1)
        _segment_in_worker = Segmenter(Path(weights), torch.device("cpu")).predict


def _fetch(manifest: SeriesManifest, scratch: Path) -> list[Path]:
    paths = []
    for index, uri in enumerate(manifest.instances):
        try:
            if is_s3(uri):
                name = f"{index:05d}-{uri.rsplit('/', 1)[-1]}"
                paths.append(download(uri, scratch / name))
            else:
                path = Path(uri)
                if not path.is_absolute() or not path.is_file():
                    raise FileNotFoundError(f"no such local file (absolute path expected): {uri}")
                paths.append(path)
        except Exception as error:  # botocore ClientError, EndpointConnectionError, OSError...
            raise SeriesError(SERIES_DOWNLOAD_FAILED, f"{uri}: {error}") from error
    return paths


def read_source(source: Source, scratch: Path) -> str:
    if is_s3(source.uri):
        return download(source.uri, scratch / "manifest.json").read_text()
    return Path(source.uri).read_text()


def load(source: Source, scratch_root: str) -> SeriesOutcome:
    """Manifest -> instances (downloaded when s3://) -> assembled volume. Never raises."""
    import SimpleITK as sitk

    from radiomics_job.volume import Geometry, assemble_series

    started = time.perf_counter()
    outcome = SeriesOutcome(source)
    scratch = Path(scratch_root) / f"series-{source.name}"
    try:
        try:
            outcome.manifest = parse_manifest(source.name, read_source(source, scratch))
        except OSError as error:
            raise SeriesError(SERIES_DOWNLOAD_FAILED, f"{source.uri}: {error}") from error
        image = assemble_series(_fetch(outcome.manifest, scratch))
        outcome.volume = sitk.GetArrayFromImage(image)
        outcome.geometry = Geometry.of(image)
    except SeriesError as error:
        outcome.fail(error.reason, error.detail)
    except Exception as error:  # a bug must not stop the other series; the traceback goes to the record
        outcome.fail(INTERNAL_ERROR, _describe(error))
    finally:
        remove_tree(scratch)
    outcome.seconds["load"] = round(time.perf_counter() - started, 4)
    return outcome


def extract(outcome: SeriesOutcome, mask_path: str) -> SeriesOutcome:
    """Write the label map as NIfTI and compute features per region. Never raises."""
    import SimpleITK as sitk

    started = time.perf_counter()
    try:
        if outcome.volume is None or outcome.labels is None:
            raise RuntimeError("extract needs a loaded and segmented series")
        geometry = outcome.geometry
        image = geometry.apply(sitk.GetImageFromArray(outcome.volume))
        sitk.WriteImage(
            geometry.apply(sitk.GetImageFromArray(outcome.labels)), mask_path, useCompression=True
        )
        outcome.regions = _extractor.regions(image, outcome.labels, geometry)
        if not np.any(outcome.labels):
            outcome.fail(EMPTY_MASK, "the segmentation found no voxel of any region")
    except Exception as error:
        outcome.fail(INTERNAL_ERROR, _describe(error))
    outcome.volume = outcome.labels = None  # nothing big travels back
    outcome.seconds["extract"] = round(time.perf_counter() - started, 4)
    return outcome


def _describe(error: BaseException) -> str:
    frames = traceback.extract_tb(error.__traceback__)
    where = f" at {frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno}" if frames else ""
    return f"{type(error).__name__}: {error}{where}"


# ---------------------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSettings:
    workers: int
    scratch: Path
    params: Path
    mask_dir: Path  # local folder the masks are written to (the output, or scratch before upload)
    worker_weights: Path | None = None  # set: workers segment on CPU themselves (see the module docstring)


Segment = Callable[[npt.NDArray[np.float32]], npt.NDArray[np.uint8]]
Finish = Callable[[SeriesOutcome], None]


def _segment(outcome: SeriesOutcome, segment: Segment) -> SeriesOutcome:
    started = time.perf_counter()
    try:
        if outcome.volume is None:
            raise RuntimeError("segment needs a loaded series")
        outcome.labels = segment(outcome.volume)
    except Exception as error:
        outcome.fail(INTERNAL_ERROR, _describe(error))
        outcome.volume = None
    outcome.seconds["segment"] = round(time.perf_counter() - started, 4)
    return outcome


def _mask_path(mask_dir: Path, outcome: SeriesOutcome) -> str:
    uid = outcome.manifest.series_uid if outcome.manifest else outcome.source.name
    return str(mask_dir / f"{uid}.nii.gz")


def process(source: Source, scratch_root: str, mask_dir: str) -> SeriesOutcome:
    """A whole series in a CPU worker that has its own network (init_worker with weights). Never raises."""
    outcome = load(source, scratch_root)
    if outcome.error is None:
        outcome = _segment(outcome, _segment_in_worker)
    if outcome.error is None:
        outcome = extract(outcome, _mask_path(Path(mask_dir), outcome))
    return outcome


def run(sources: Sequence[Source], settings: RunSettings, segment: Segment, finish: Finish) -> None:
    """Process every source; `finish` is called once per series (in this process) with its outcome."""
    if settings.workers <= 1:
        init_worker(str(settings.params), single_threaded=False)
        for source in sources:
            outcome = load(source, str(settings.scratch))
            if outcome.error is None:
                outcome = _segment(outcome, segment)
            if outcome.error is None:
                outcome = extract(outcome, _mask_path(settings.mask_dir, outcome))
            finish(outcome)
        return
    _run_pool(sources, settings, segment, finish)


def _run_pool(sources: Sequence[Source], settings: RunSettings, segment: Segment, finish: Finish) -> None:
    pending: Iterator[Source] = iter(sources)
    in_flight: dict[Future[SeriesOutcome], Source] = {}
    context = multiprocessing.get_context("spawn")  # no fork after torch/ITK threads have started
    weights = str(settings.worker_weights) if settings.worker_weights is not None else None
    with ProcessPoolExecutor(
        settings.workers,
        mp_context=context,
        initializer=init_worker,
        initargs=(str(settings.params), True, weights),
    ) as pool:

        def submit(function: Callable[..., SeriesOutcome], source: Source, *args: Any) -> None:
            try:
                in_flight[pool.submit(function, *args)] = source
            except Exception as error:  # a broken pool: record the series, keep going with the rest
                finish(SeriesOutcome(source).fail(INTERNAL_ERROR, _describe(error)))

        def load_next() -> None:
            source = next(pending, None)
            if source is None:
                return
            if weights is not None:
                submit(process, source, source, str(settings.scratch), str(settings.mask_dir))
            else:
                submit(load, source, source, str(settings.scratch))

        for _ in range(2 * settings.workers):
            load_next()
        while in_flight:
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                source = in_flight.pop(future)
                try:
                    outcome = future.result()
                except Exception as error:  # the worker died (killed, out of memory)
                    finish(SeriesOutcome(source).fail(INTERNAL_ERROR, _describe(error)))
                    load_next()
                    continue
                # Loaded by a worker (the CUDA layout): segment here, extract in the pool.
                if outcome.error is None and outcome.volume is not None:
                    outcome = _segment(outcome, segment)
                    if outcome.error is None:
                        submit(extract, source, outcome, _mask_path(settings.mask_dir, outcome))
                        continue
                finish(outcome)
                load_next()


def record(outcome: SeriesOutcome, versions: dict[str, str]) -> dict[str, Any]:
    """The features/<series_uid>.json document of one series."""
    seconds = dict(outcome.seconds)
    stages = [v for k, v in seconds.items() if k != "total" and v is not None]
    seconds["total"] = round(sum(stages), 4)
    identity = (
        outcome.manifest.identity()
        if outcome.manifest
        else {"series_uid": outcome.source.name, "patient_id": None, "study_uid": None, "study_date": None}
    )
    return {
        **identity,
        "status": "error" if outcome.error else "ok",
        "error": outcome.error,
        **versions,
        "seconds": seconds,
        "geometry": outcome.geometry.as_json() if outcome.geometry is not None else None,
        "regions": outcome.regions,
    }


def log_line(document: dict[str, Any]) -> str:
    """One JSON line per series for the job log: enough to understand a failure without the outputs."""
    error = document["error"] or {}
    return json.dumps(
        {
            "series_uid": document["series_uid"],
            "status": document["status"],
            "reason": error.get("reason"),
            "detail": error.get("detail"),
            "seconds": document["seconds"]["total"],
            "voxels": {r["name"]: r["voxels"] for r in document["regions"]},
        }
    )
