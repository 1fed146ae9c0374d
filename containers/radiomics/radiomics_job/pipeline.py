"""Run the job over a set of manifests: load -> segment -> extract -> write, series by series.

Parallel design (`workers` supervised processes - workers.py - each with its own pyradiomics extractor and
one ITK thread, each given one series at a time, so memory stays bounded whatever the number of manifests):
- CPU: each worker runs a whole series - load (download + DICOM decode + assembly), segment (its own copy of
  the network, one torch thread), extract (pyradiomics). Segmentation is the largest stage, so it must
  scale with the workers too.
- CUDA: workers load and extract; segmentation runs in this process, which holds the one copy of the
  network on the GPU (one CUDA context) while the workers keep it fed: every series loaded by the time the
  GPU is free is segmented in one call, those of the same network input shape in one forward pass
  (segment.Segmenter.segmentations, up to MAX_BATCH_VOXELS). Instance normalisation is per series, so a
  batch gives each series the labels it gets alone. The features documents and job.json name the device.

Isolation: nothing about one series stops the others. A series past `series_timeout` seconds in its worker
(load + extract on CUDA, the whole series on CPU) is stopped with its worker (series-timeout); a worker that
dies under a series - killed, out of memory, a segfault in a C decoder - fails that series only
(worker-died, with the exit code or signal); either way a fresh worker takes the next series. Only with
workers == 1 and no time limit does everything run inline in this process (no isolation: debugging, tests).

Every series ends with features/<series_uid>.json (status ok or error with a reason) and, once segmented,
masks/<series_uid>.nii.gz and its pictures features/<series_uid>/thumbnail.png and overlay.png
(thumbnails.py; drawn after the features, and a picture that cannot be drawn leaves the features as they are:
`images` null, the cause in `images_error`); `finish` (the caller's writer) is called once per series, in this
process.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from radiomics_job.errors import (
    EMPTY_MASK,
    INTERNAL_ERROR,
    SERIES_DOWNLOAD_FAILED,
    SERIES_TIMEOUT,
    WORKER_DIED,
    SeriesError,
    describe,
)
from radiomics_job.manifest import SeriesManifest, parse_manifest
from radiomics_job.storage import download, is_s3, remove_tree
from radiomics_job.workers import COMPLETED, DIED, TIMED_OUT, Done, Supervisor, Task, report_stage

log = logging.getLogger("radiomics_job")


@dataclass(frozen=True)
class Source:
    """One manifest to process: its name (series uid by convention) and where it is (local path or s3://)."""

    name: str
    uri: str


@dataclass(frozen=True)
class SeriesFiles:
    """Where one series' files go, relative to the job's output (a local folder or an s3:// prefix)."""

    series_uid: str

    @property
    def document(self) -> str:
        return f"features/{self.series_uid}.json"

    @property
    def mask(self) -> str:
        return f"masks/{self.series_uid}.nii.gz"

    @property
    def pictures(self) -> str:
        """The folder of the pictures, beside the features document."""
        return f"features/{self.series_uid}"

    @property
    def thumbnail(self) -> str:
        return f"{self.pictures}/thumbnail.png"

    @property
    def overlay(self) -> str:
        return f"{self.pictures}/overlay.png"


@dataclass
class SeriesOutcome:
    """What one series produced so far; crosses the process boundary (plain data only)."""

    source: Source
    manifest: SeriesManifest | None = None
    volume: npt.NDArray[np.float32] | None = None
    geometry: Any = None  # volume.Geometry (kept Any so this module does not import SimpleITK)
    display: Any = None  # thumbnails.DisplayHints: the modality and windows the headers give
    labels: npt.NDArray[np.uint8] | None = None
    notes: list[str] = field(default_factory=list)  # the segmenter's: regions not kept, fallback used
    regions: list[dict[str, Any]] = field(default_factory=list)
    images: dict[str, Any] | None = None  # thumbnails.Pictures.as_json(), once drawn
    images_error: str | None = None  # why there are no pictures of a segmented series
    seconds: dict[str, float | None] = field(
        default_factory=lambda: {"load": None, "segment": None, "extract": None, "total": None}
    )
    error: dict[str, str] | None = None

    def fail(self, reason: str, detail: str) -> SeriesOutcome:
        self.error = {"reason": reason, "detail": detail}
        return self

    @property
    def files(self) -> SeriesFiles:
        return SeriesFiles(self.manifest.series_uid if self.manifest else self.source.name)


# ---------------------------------------------------------------------------------------------------------
# Stages (module-level functions: the supervisor sends them to workers by name)
# ---------------------------------------------------------------------------------------------------------

_extractor: Any = None
_segment_in_worker: Any = None


def init_worker(
    params: str, single_threaded: bool, weights: str | None = None, fallback_params: str | None = None
) -> None:
    """Worker initializer: one pyradiomics extractor per process (the fallback region's parameters beside
    the network regions'); ITK (and torch) on one thread when there are many; with `weights`, this process
    also segments (on CPU)."""
    global _extractor, _segment_in_worker
    import SimpleITK as sitk

    from radiomics_job.features import FeatureExtractor

    if single_threaded:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)  # type: ignore[no-untyped-call, unused-ignore]
    _extractor = FeatureExtractor(Path(params), Path(fallback_params) if fallback_params else None)
    if weights is not None:
        import torch

        from radiomics_job.segment import Segmenter

        if single_threaded:
            torch.set_num_threads(1)
        _segment_in_worker = Segmenter(Path(weights), torch.device("cpu")).segmentations


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

    from radiomics_job.thumbnails import DisplayHints
    from radiomics_job.volume import Geometry, assemble_series

    report_stage("load")
    started = time.perf_counter()
    outcome = SeriesOutcome(source)
    scratch = _scratch(scratch_root, source)
    try:
        try:
            outcome.manifest = parse_manifest(source.name, read_source(source, scratch))
        except OSError as error:
            raise SeriesError(SERIES_DOWNLOAD_FAILED, f"{source.uri}: {error}") from error
        image = assemble_series(_fetch(outcome.manifest, scratch))
        outcome.volume = sitk.GetArrayFromImage(image)
        outcome.geometry = Geometry.of(image)
        outcome.display = DisplayHints.of(image)
    except SeriesError as error:
        outcome.fail(error.reason, error.detail)
    except Exception as error:  # a bug must not stop the other series; the traceback goes to the record
        outcome.fail(INTERNAL_ERROR, describe(error))
    finally:
        remove_tree(scratch)
    outcome.seconds["load"] = round(time.perf_counter() - started, 4)
    return outcome


def extract(outcome: SeriesOutcome, output_dir: str) -> SeriesOutcome:
    """Write the label map as NIfTI, compute features per region, then draw the pictures (into the local
    output folder `output_dir`). Never raises."""
    import SimpleITK as sitk

    report_stage("extract")
    started = time.perf_counter()
    try:
        if outcome.volume is None or outcome.labels is None:
            raise RuntimeError("extract needs a loaded and segmented series")
        geometry = outcome.geometry
        image = geometry.apply(sitk.GetImageFromArray(outcome.volume))
        mask_path = Path(output_dir) / outcome.files.mask
        mask_path.parent.mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(
            geometry.apply(sitk.GetImageFromArray(outcome.labels)), str(mask_path), useCompression=True
        )
        outcome.regions = _extractor.regions(image, outcome.labels, geometry)
        if not np.any(outcome.labels):
            outcome.fail(EMPTY_MASK, "the segmentation found no voxel of any region")
    except Exception as error:
        outcome.fail(INTERNAL_ERROR, describe(error))
    draw_pictures(outcome, Path(output_dir))
    outcome.volume = outcome.labels = None  # nothing big travels back
    outcome.seconds["extract"] = round(time.perf_counter() - started, 4)
    return outcome


def draw_pictures(outcome: SeriesOutcome, output_dir: Path) -> None:
    """The segmented series' thumbnail and overlay (thumbnails.py) into `output_dir`, recorded in
    `images`. Never raises: a picture that cannot be drawn or written leaves `images` null and the cause
    in `images_error` - the features stand."""
    from radiomics_job.thumbnails import DisplayHints, render, write_png

    if outcome.volume is None or outcome.labels is None:
        return
    files = outcome.files
    try:
        pictures = render(outcome.volume, outcome.labels, outcome.geometry, outcome.display or DisplayHints())
        write_png(pictures.thumbnail, output_dir / files.thumbnail)
        write_png(pictures.overlay, output_dir / files.overlay)
        outcome.images = pictures.as_json(files.thumbnail, files.overlay)
    except Exception as error:
        remove_tree(output_dir / files.pictures)
        outcome.images, outcome.images_error = None, f"the pictures could not be drawn: {describe(error)}"


def _scratch(scratch_root: str, source: Source) -> Path:
    return Path(scratch_root) / f"series-{source.name}"


# ---------------------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSettings:
    workers: int
    scratch: Path
    params: Path
    output_dir: Path  # local folder masks and pictures are written to (the output, or scratch before upload)
    worker_weights: Path | None = None  # set: workers segment on CPU themselves (see the module docstring)
    series_timeout: float = 0.0  # seconds a series may spend in its worker; 0: no limit
    fallback_params: Path | None = None  # the fallback region's parameters (None: the job's default)


# [(volume (slice, row, col), spacing in mm in SimpleITK's (x, y, z) order), ...] -> one segment.Segmentation
# each (a label map and the segmenter's notes; typed Any so this module does not import torch). Several series
# at once is how the CUDA layout batches them; a CPU worker passes one.
Segment = Callable[[Sequence[tuple[npt.NDArray[np.float32], tuple[float, float, float]]]], list[Any]]
Finish = Callable[[SeriesOutcome], None]


def _segment(outcome: SeriesOutcome, segment: Segment) -> SeriesOutcome:
    report_stage("segment")
    return _segment_all([outcome], segment)[0]


def _segment_all(outcomes: list[SeriesOutcome], segment: Segment) -> list[SeriesOutcome]:
    """Segment loaded series together (`seconds.segment` = the batch's time shared out); when the batch
    fails, each series again alone, so the error is only the series' that causes it."""
    started = time.perf_counter()
    try:
        series = [(o.volume, o.geometry.spacing) for o in outcomes if o.volume is not None and o.geometry]
        if len(series) < len(outcomes):
            raise RuntimeError("segment needs a loaded series")
        segmentations = segment(series)
    except Exception as error:
        if len(outcomes) > 1:
            return [_segment_all([o], segment)[0] for o in outcomes]
        outcomes[0].fail(INTERNAL_ERROR, describe(error))
        outcomes[0].volume = None
        segmentations = []
    for outcome, segmentation in zip(outcomes, segmentations, strict=False):
        outcome.labels, outcome.notes = segmentation.labels, list(segmentation.notes)
    share = round((time.perf_counter() - started) / len(outcomes), 4)
    for outcome in outcomes:
        outcome.seconds["segment"] = share
    return outcomes


def process(source: Source, scratch_root: str, output_dir: str) -> SeriesOutcome:
    """A whole series in a CPU worker that has its own network (init_worker with weights). Never raises."""
    outcome = load(source, scratch_root)
    if outcome.error is None:
        outcome = _segment(outcome, _segment_in_worker)
    if outcome.error is None:
        outcome = extract(outcome, output_dir)
    return outcome


def run(sources: Sequence[Source], settings: RunSettings, segment: Segment, finish: Finish) -> None:
    """Process every source; `finish` is called once per series (in this process) with its outcome.
    Raises only workers.WorkerStartError (workers cannot start at all)."""
    if settings.workers <= 1 and not settings.series_timeout:
        init_worker(str(settings.params), False, None, _optional(settings.fallback_params))
        for source in sources:
            outcome = load(source, str(settings.scratch))
            if outcome.error is None:
                outcome = _segment(outcome, segment)
            if outcome.error is None:
                outcome = extract(outcome, str(settings.output_dir))
            _finish(finish, outcome)
        return
    _run_supervised(sources, settings, segment, finish)


def _run_supervised(
    sources: Sequence[Source], settings: RunSettings, segment: Segment, finish: Finish
) -> None:
    limit = settings.series_timeout if 0 < settings.series_timeout < math.inf else None
    scratch, output_dir = str(settings.scratch), str(settings.output_dir)
    weights = str(settings.worker_weights) if settings.worker_weights is not None else None
    initargs = (str(settings.params), settings.workers > 1, weights, _optional(settings.fallback_params))
    with Supervisor(settings.workers, init_worker, initargs) as supervisor:
        for source in sources:
            if weights is not None:
                supervisor.submit(Task(source, process, (source, scratch, output_dir), limit))
            else:
                supervisor.submit(Task(source, load, (source, scratch), limit))
        while supervisor.outstanding:
            loaded: list[tuple[Done, SeriesOutcome]] = []
            for done in [supervisor.next_done(), *supervisor.done_now()]:
                outcome = _outcome_of(done, settings)
                if done.task.function is load and outcome.error is None:
                    loaded.append((done, outcome))  # the CUDA layout: segmented here, together
                else:
                    _finish(finish, outcome)
            if loaded:
                _segment_loaded(supervisor, loaded, segment, settings, finish)


def _segment_loaded(
    supervisor: Supervisor,
    loaded: list[tuple[Done, SeriesOutcome]],
    segment: Segment,
    settings: RunSettings,
    finish: Finish,
) -> None:
    """The CUDA layout: the series loaded by now segmented in one batch here, then each extracted in a
    worker - first in the queue, with what is left of the series' time."""
    limit = settings.series_timeout if 0 < settings.series_timeout < math.inf else None
    output_dir = str(settings.output_dir)
    for (done, _), outcome in zip(loaded, _segment_all([o for _, o in loaded], segment), strict=True):
        if outcome.error is not None:
            _finish(finish, outcome)
            continue
        left = None if limit is None else max(limit - done.seconds, 1.0)
        supervisor.submit(Task(done.task.key, extract, (outcome, output_dir), left), first=True)


def _outcome_of(done: Done, settings: RunSettings) -> SeriesOutcome:
    """The series' outcome from its worker's result, or the failure when the worker gave none."""
    if done.status == COMPLETED and isinstance(done.result, SeriesOutcome):
        return done.result
    source: Source = done.task.key
    started = done.task.args[0]  # the loaded series of an extract task (CUDA layout), else the Source
    outcome = started if isinstance(started, SeriesOutcome) else SeriesOutcome(source)
    outcome.volume = outcome.labels = None
    for stage, seconds in (done.stages or {}).items():
        outcome.seconds[stage] = seconds
    where = f" in {done.stage}" if done.stage else ""
    if done.status == TIMED_OUT:
        limit = f"{settings.series_timeout:g} s"
        outcome.fail(
            SERIES_TIMEOUT, f"stopped{where}: over the per-series time limit of {limit} (--series-timeout)"
        )
    elif done.status == DIED:
        outcome.fail(WORKER_DIED, f"the worker process died{where} after {done.seconds:.1f} s: {done.detail}")
    else:
        outcome.fail(INTERNAL_ERROR, done.detail or f"the worker returned {type(done.result).__name__}")
    if done.status in (TIMED_OUT, DIED):  # what the stopped worker left behind: downloads, mask, pictures
        remove_tree(_scratch(str(settings.scratch), source))
        (settings.output_dir / outcome.files.mask).unlink(missing_ok=True)
        remove_tree(settings.output_dir / outcome.files.pictures)
    return outcome


def _finish(finish: Finish, outcome: SeriesOutcome) -> None:
    try:
        finish(outcome)
    except (
        Exception
    ) as error:  # the caller's writer should not raise; one series' output must not end the run
        log.error("series %s: finishing failed: %s", outcome.source.name, describe(error))


def _optional(path: Path | None) -> str | None:
    return str(path) if path is not None else None


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
        "segmentation_notes": outcome.notes,
        "regions": outcome.regions,
        "images": outcome.images,
        "images_error": outcome.images_error,
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
