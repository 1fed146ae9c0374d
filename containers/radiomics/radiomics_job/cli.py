"""`python -m radiomics_job`: manifests in, features + masks + job.json out (SageMaker Processing / Batch).

Exit codes: 0 when the job ran (whatever happened to individual series: see job.json and each
features/<series_uid>.json), 1 when it cannot run (no input, unreadable weights or parameters, no CUDA for
--device cuda, output not writable), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from radiomics_job import DEFAULT_PARAMS, DEFAULT_WEIGHTS, __version__
from radiomics_job.manifest import shard_of
from radiomics_job.pipeline import RunSettings, SeriesOutcome, Source, log_line, record, run
from radiomics_job.storage import OutputSink, is_s3, list_json, remove_tree

DEFAULT_INPUT = "/opt/ml/processing/input/manifests"
DEFAULT_OUTPUT = "/opt/ml/processing/output"
SHARD_INDEX_ENV = "AWS_BATCH_JOB_ARRAY_INDEX"  # set by AWS Batch in each child of an array job
SHARD_COUNT_ENV = "RADIOMICS_SHARD_COUNT"  # Batch does not tell a child the array size: pass it in

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
    parser.add_argument("--params", type=Path, default=DEFAULT_PARAMS, help="pyradiomics parameters (.yaml)")
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
    parser.add_argument("--scratch", type=Path, help="folder for downloads (default: the system temp folder)")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be >= 1")
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
    try:
        return _run(args)
    except JobError as error:
        log.error("job cannot run: %s", error)
        return 1


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
        params_version = FeatureExtractor(args.params).version
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

        def finish(outcome: SeriesOutcome) -> None:
            document = record(outcome, versions)
            uid = document["series_uid"]
            sink.put_json(f"features/{uid}.json", document)
            if sink.local_path(f"masks/{uid}.nii.gz").exists():
                sink.publish(f"masks/{uid}.nii.gz")
            statuses[document["status"]] += 1
            if document["error"]:
                reasons[document["error"]["reason"]] += 1
            log.info("series %s", log_line(document))

        # On CPU the workers segment too (one torch thread each); with CUDA this process does, on the GPU.
        worker_weights = args.weights if device.type == "cpu" and workers > 1 else None
        settings = RunSettings(
            workers, scratch / "work", args.params, sink.local_path("masks"), worker_weights
        )
        settings.scratch.mkdir()
        with torch.inference_mode():
            run(sources, settings, segmenter.predict, finish)
        summary: dict[str, Any] = {
            "job_version": __version__,
            "series": len(sources),
            "ok": statuses["ok"],
            "errors": dict(sorted(reasons.items())),
            "error_count": statuses["error"],
            "wall_seconds": round(time.perf_counter() - started, 3),
            "workers": workers,
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
