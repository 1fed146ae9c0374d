"""`python -m radiomics_job`: manifests in, features + masks + job.json out (SageMaker Processing / Batch).

Exit codes: 0 when the job ran (whatever happened to individual series: see job.json and each
features/<series_uid>.json), 1 when it cannot run (no input, unreadable weights or parameters, no CUDA for
--device cuda, output not writable, worker processes that cannot start), 2 for bad arguments; on SIGTERM or
SIGINT the job stops its workers and exits 128 + the signal number.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from radiomics_job import DEFAULT_FALLBACK_PARAMS, DEFAULT_PARAMS, DEFAULT_WEIGHTS, __version__
from radiomics_job.errors import OUTPUT_FAILED, describe
from radiomics_job.manifest import shard_of
from radiomics_job.pipeline import RunSettings, SeriesFiles, SeriesOutcome, Source, log_line, record, run
from radiomics_job.storage import OutputSink, is_s3, list_json, remove_tree
from radiomics_job.workers import WorkerStartError

DEFAULT_INPUT = "/opt/ml/processing/input/manifests"
DEFAULT_OUTPUT = "/opt/ml/processing/output"
SHARD_INDEX_ENV = "AWS_BATCH_JOB_ARRAY_INDEX"  # set by AWS Batch in each child of an array job
SHARD_COUNT_ENV = "RADIOMICS_SHARD_COUNT"  # Batch does not tell a child the array size: pass it in
SERIES_TIMEOUT_ENV = "RADIOMICS_SERIES_TIMEOUT"
# Seconds one series may spend in its worker. On one CPU core a synthetic 64 x 64 x 24 series takes about
# 0.5 s and a real 256 x 256 x 20 brain MR about 4 s: 15 minutes leaves room for series tens of times larger,
# yet bounds what a stuck series costs (a 1024 x 1024 MR slice once ran for more than 14 minutes) to one
# worker for 15 minutes, well inside SageMaker's 6 h limit for the whole job.
DEFAULT_SERIES_TIMEOUT = 900.0

log = logging.getLogger("radiomics_job")


class JobError(Exception):
    """The job as a whole cannot run (exit code 1)."""


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the container's CPU set, not the host's
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m radiomics_job",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--input", default=DEFAULT_INPUT, help="manifest folder or s3://bucket/prefix/")
    parser.add_argument("--output", default=DEFAULT_OUTPUT, help="output folder or s3://bucket/prefix/")
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS, help="segmenter weights (.pt)")
    parser.add_argument(
        "--params", type=Path, default=DEFAULT_PARAMS, help="pyradiomics parameters of the network's regions"
    )
    parser.add_argument(
        "--fallback-params",
        type=Path,
        default=DEFAULT_FALLBACK_PARAMS,
        help="pyradiomics parameters of the fallback region (used when the network finds none)",
    )
    parser.add_argument("--workers", type=int, default=available_cpus(), help="processes (default: CPUs)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument(
        "--shard-index",
        type=int,
        default=int(os.environ.get(SHARD_INDEX_ENV, "0")),
        help=f"default ${SHARD_INDEX_ENV}",
    )
    parser.add_argument(
        "--shard-count",
        type=int,
        default=int(os.environ.get(SHARD_COUNT_ENV, "1")),
        help=f"default ${SHARD_COUNT_ENV}",
    )
    parser.add_argument(
        "--series-timeout",
        type=float,
        default=os.environ.get(SERIES_TIMEOUT_ENV, str(DEFAULT_SERIES_TIMEOUT)),  # a string: `type` applies
        metavar="SECONDS",
        help=f"time limit per series, 0 = none (default ${SERIES_TIMEOUT_ENV}, else {DEFAULT_SERIES_TIMEOUT:g})",
    )
    parser.add_argument("--scratch", type=Path, help="folder for downloads (default: the system temp folder)")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be >= 1")
    if not args.series_timeout >= 0:  # also refuses nan
        parser.error("--series-timeout must be >= 0 (0: no limit)")
    if args.shard_count < 1 or not 0 <= args.shard_index < args.shard_count:
        parser.error(
            f"shard {args.shard_index} of {args.shard_count}: need 0 <= index < count "
            f"(set {SHARD_COUNT_ENV} to the array size in a Batch array job)"
        )
    return args


def list_sources(location: str) -> list[Source]:
    """Every manifest (*.json) at the input; JobError when the input does not exist."""
    if is_s3(location):
        try:
            uris = list_json(location)
        except Exception as error:  # no bucket, no credentials, no endpoint
            raise JobError(f"cannot list {location}: {error}") from error
        return [Source(uri.rsplit("/", 1)[-1].removesuffix(".json"), uri) for uri in uris]
    folder = Path(location)
    if not folder.is_dir():
        raise JobError(f"input folder {folder} does not exist")
    return [Source(path.stem, str(path)) for path in sorted(folder.glob("*.json"))]


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stderr
    )
    args = parse_arguments(argv)
    with _signals_end_the_job():
        try:
            return _run(args)
        except JobError as error:
            log.error("job cannot run: %s", error)
            return 1


@contextmanager
def _signals_end_the_job() -> Iterator[None]:
    """SIGTERM (SageMaker and Batch stopping the job, the local runtime ending) raises SystemExit, so the
    `finally`s run: the supervisor stops its workers and scratch is removed. SIGINT raises
    KeyboardInterrupt already. Python would otherwise die on SIGTERM at once and leave the workers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, _frame: object) -> None:
        log.warning("job stopped by %s", signal.Signals(signum).name)
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    # Imported here so --help and argument errors do not pay for torch.
    import torch

    from radiomics_job.features import FeatureExtractor
    from radiomics_job.segment import Segmenter, resolve_device

    try:
        device = resolve_device(args.device)
        segmenter = Segmenter(args.weights, device)
        params_version = FeatureExtractor(args.params, args.fallback_params).version
    except (ValueError, OSError) as error:
        raise JobError(str(error)) from error
    sources = [s for s in list_sources(args.input) if shard_of(s.name, args.shard_count) == args.shard_index]
    scratch = Path(tempfile.mkdtemp(prefix="radiomics-", dir=args.scratch))
    try:
        try:
            sink = OutputSink(args.output, scratch)
        except OSError as error:
            raise JobError(f"cannot write to {args.output}: {error}") from error
        versions = {
            "model_version": segmenter.version,
            "params_version": params_version,
            "device": device.type,
        }
        workers = min(args.workers, max(1, len(sources)))
        log.info(
            "radiomics job %s: %d series (shard %d/%d), %d workers, device %s, %s, %s",
            __version__,
            len(sources),
            args.shard_index,
            args.shard_count,
            workers,
            device.type,
            segmenter.version,
            params_version,
        )
        statuses: Counter[str] = Counter()
        reasons: Counter[str] = Counter()
        unwritten: list[str] = []

        def finish(outcome: SeriesOutcome) -> None:
            document = record(outcome, versions)
            if not _write(sink, document):
                unwritten.append(document["series_uid"])
            statuses[document["status"]] += 1
            if document["error"]:
                reasons[document["error"]["reason"]] += 1
            log.info("series %s", log_line(document))

        # On CPU the workers segment too (one torch thread each); with CUDA this process does, on the GPU.
        # (Inline - one worker, no time limit - this process does everything.)
        worker_weights = args.weights if device.type == "cpu" else None
        settings = RunSettings(
            workers,
            scratch / "work",
            args.params,
            sink.local_root,
            worker_weights,
            args.series_timeout,
            args.fallback_params,
        )
        settings.scratch.mkdir()
        with torch.inference_mode():
            try:
                run(sources, settings, segmenter.segmentations, finish)
            except WorkerStartError as error:
                raise JobError(str(error)) from error
        summary: dict[str, Any] = {
            "job_version": __version__,
            "series": len(sources),
            "ok": statuses["ok"],
            "errors": dict(sorted(reasons.items())),
            "error_count": statuses["error"],
            "wall_seconds": round(time.perf_counter() - started, 3),
            "unwritten": unwritten,
            "workers": workers,
            "series_timeout": args.series_timeout,
            "device": device.type,
            "shard": {"index": args.shard_index, "count": args.shard_count},
            "model_version": segmenter.version,
            "params_version": params_version,
            "input": args.input,
            "output": args.output,
            "started_at": started_at,
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        sink.put_json("job.json", summary)
        log.info(
            "job done: %d ok, errors %s, %.1f s", summary["ok"], summary["errors"], summary["wall_seconds"]
        )
        return 0
    finally:
        remove_tree(scratch)


def _write(sink: OutputSink, document: dict[str, Any]) -> bool:
    """Publish the series' mask (when there is one) and pictures, then its features document - last, so a
    document that says ok has its mask, and one with `images` its pictures. Pictures that cannot be
    published only lose the pictures (`images` null, the cause in `images_error`). When the rest fails (an
    upload error, a value JSON cannot hold), the document is replaced by an output-failed error so the
    series is still accounted for; False when not even that could be written (logged; job.json lists the
    series under "unwritten")."""
    uid = document["series_uid"]
    files = SeriesFiles(uid)
    try:
        if sink.local_path(files.mask).exists():
            sink.publish(files.mask)
        _publish_pictures(sink, files, document)
        sink.put_json(files.document, document)
        return True
    except Exception as error:
        detail = f"the series' outputs could not be written: {describe(error)}"
        log.error("series %s: %s", uid, detail)
    document.update(
        status="error",
        error={"reason": OUTPUT_FAILED, "detail": detail},
        geometry=None,
        regions=[],
        images=None,
    )
    try:
        sink.put_json(files.document, document)
        return True
    except Exception as error:
        log.error("series %s: its error document could not be written either: %s", uid, describe(error))
        return False


def _publish_pictures(sink: OutputSink, files: SeriesFiles, document: dict[str, Any]) -> None:
    """Upload the series' pictures when it has them; on failure drop them from the document (logged with
    the series uid and the cause only) - the features stand without them."""
    if document.get("images"):
        try:
            for relative in (files.thumbnail, files.overlay):
                sink.publish(relative)
        except Exception as error:
            document.update(images=None, images_error=f"the pictures could not be written: {describe(error)}")
    if document.get("images_error"):
        log.warning("series %s: no pictures: %s", files.series_uid, document["images_error"])
