"""`python -m training_job [train]`: a dataset snapshot in, predictors + metrics + model card + report out
(a SageMaker training job; SageMaker starts the image with the argument `train`, accepted and ignored).

`python -m training_job score --model-dir M --dataset D --output-dir O --model-id ID`: a trained model and a
dataset snapshot in, one risk score per eligible patient and outcome out (training_job.scoring; a SageMaker
Processing job with the same image, its paths under /opt/ml/processing/ by default).

`python -m training_job serve`: the optional real-time endpoint's HTTP server (training_job.serving).

Exit codes: 0 when every output is written (an outcome or modality set that cannot be trained is listed in
metrics.json `skipped`); 1 when the job fails, with the reason in the failure file (training:
/opt/ml/output/failure, SageMaker's FailureReason; scoring: /opt/ml/output/message, DescribeProcessingJob's
ExitMessage); 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from training_job import __version__
from training_job.errors import JobError
from training_job.paths import (
    CONFIG_ENV,
    DATASET_ENV,
    DEFAULT_ML_ROOT,
    MODEL_ENV,
    OUTPUT_DATA_ENV,
    OUTPUT_ENV,
    JobPaths,
)

FAILURE_REASON_LIMIT = 1024  # DescribeTrainingJob's FailureReason holds at most this many characters

log = logging.getLogger("training_job")


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m training_job",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("mode", nargs="?", choices=("train",), help="SageMaker's argument; ignored")
    parser.add_argument(
        "--ml-root", type=Path, help=f"the SageMaker layout's root (default {DEFAULT_ML_ROOT})"
    )
    parser.add_argument(
        "--dataset", type=Path, help=f"dataset channel (${DATASET_ENV}, <root>/input/data/dataset)"
    )
    parser.add_argument(
        "--hyperparameters",
        type=Path,
        help=f"hyperparameters.json (${CONFIG_ENV}/hyperparameters.json, <root>/input/config/...)",
    )
    parser.add_argument(
        "--model-dir", type=Path, help=f"predictors + model card (${MODEL_ENV}, <root>/model)"
    )
    parser.add_argument(
        "--output-data-dir",
        type=Path,
        help=f"metrics, tables, report (${OUTPUT_DATA_ENV}, <root>/output/data)",
    )
    parser.add_argument(
        "--failure-file", type=Path, help=f"failure reason (${OUTPUT_ENV}/failure, <root>/output/failure)"
    )
    return parser.parse_args(argv)


PROCESSING_ROOT = Path("/opt/ml/processing")
PROCESSING_MESSAGE = Path("/opt/ml/output/message")  # SageMaker Processing's ExitMessage (first 1 KB)


def parse_score_arguments(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m training_job score",
        description="Score a dataset snapshot with a trained model (training_job.scoring).",
    )
    parser.add_argument("mode", choices=("score",))
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=PROCESSING_ROOT / "model",
        help="model.tar.gz (or its unpacked content)",
    )
    parser.add_argument(
        "--dataset",
        type=Path,
        default=PROCESSING_ROOT / "dataset",
        help="the dataset snapshot (dataset.parquet, manifest.json)",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=PROCESSING_ROOT / "output",
        help="predictions.parquet, scoring.json",
    )
    parser.add_argument("--model-id", required=True, help="the model's id (its training job name)")
    parser.add_argument("--failure-file", type=Path, default=PROCESSING_MESSAGE, help="failure reason")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stderr
    )
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["score"]:
        return score_main(parse_score_arguments(arguments))
    if arguments[:1] == ["serve"]:
        return serve_main()
    args = parse_arguments(arguments)
    paths = JobPaths.resolve(
        ml_root=args.ml_root,
        dataset=args.dataset,
        hyperparameters=args.hyperparameters,
        model=args.model_dir,
        output_data=args.output_data_dir,
        failure=args.failure_file,
    )
    try:
        run(paths)
    except JobError as error:
        return _fail(paths, str(error))
    except Exception as error:  # a bug or an AutoGluon failure: the reason still reaches DescribeTrainingJob
        log.error("unexpected error\n%s", traceback.format_exc())
        return _fail(paths, f"internal error: {type(error).__name__}: {error}")
    return 0


def run(paths: JobPaths) -> None:
    """Check the inputs, train, evaluate and write every output; JobError when the job cannot."""
    from training_job.dataset import load_dataset, reference_sets
    from training_job.parameters import read_parameters

    started = time.perf_counter()
    parameters = read_parameters(paths.hyperparameters)
    dataset = load_dataset(paths.dataset, parameters.outcomes)
    references = reference_sets(dataset, parameters)
    log.info(
        "training job %s: dataset %s, %d patients, outcomes %s, sets %s (full %s), time_limit %s s, presets %s",
        __version__,
        dataset.dataset_id,
        len(dataset.frame),
        ",".join(parameters.outcomes),
        ",".join(parameters.modality_sets),
        references.full,
        parameters.time_limit,
        parameters.presets,
    )
    try:
        paths.model.mkdir(parents=True, exist_ok=True)
        paths.output_data.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise JobError(f"cannot create the output folders: {error}") from error

    # AutoGluon, plotly: imported once the inputs are known to be good.
    from training_job import outputs
    from training_job.job import train_and_evaluate
    from training_job.report import REPORT_FILE, render_report

    results = train_and_evaluate(dataset, parameters, references, paths.model)
    predictions = outputs.predictions_frame(results)
    importance = outputs.importance_frame(results)
    outputs.write_tables(paths.output_data, predictions, importance, outputs.leaderboard_frame(results))
    document = outputs.metrics_document(results, dataset, parameters, time.perf_counter() - started)
    outputs.write_json(paths.output_data / outputs.METRICS_FILE, document)
    card = outputs.model_card(document, dataset, results.training_patients)
    outputs.write_json(paths.model / outputs.MODEL_CARD_FILE, card)
    report = render_report(
        document, dataset, predictions, importance, dataset_dir=paths.dataset, risks=_risks(paths)
    )
    (paths.output_data / REPORT_FILE).write_text(report, encoding="utf-8")
    log.info(
        "job done in %.1f s: %d predictors, %d skipped; outputs in %s, predictors in %s",
        time.perf_counter() - started,
        sum(len(s) for s in results.models.values()),
        len(results.skipped),
        paths.output_data,
        paths.model,
    )


def _risks(paths: JobPaths) -> Any:
    """Every eligible patient's predicted risks for the report's patient view: the scoring job's own code on
    the predictors just written (the numbers the scoring step will commit); None if it cannot run."""
    import tempfile

    import pandas as pd

    from training_job.scoring import PREDICTIONS_FILE, score

    with tempfile.TemporaryDirectory(prefix="report-risks-") as folder:
        try:
            score(paths.model, paths.dataset, Path(folder), model_id="this training job")
        except JobError as error:
            log.warning("no predicted risks in the report: %s", error)
            return None
        return pd.read_parquet(Path(folder) / PREDICTIONS_FILE)


def score_main(args: argparse.Namespace) -> int:
    from training_job.scoring import score

    try:
        summary = score(args.model_dir, args.dataset, args.output_dir, args.model_id)
    except JobError as error:
        return _write_failure(args.failure_file, "scoring", str(error))
    except Exception as error:  # a bug or an AutoGluon failure: the reason still reaches ExitMessage
        log.error("unexpected error\n%s", traceback.format_exc())
        return _write_failure(
            args.failure_file, "scoring", f"internal error: {type(error).__name__}: {error}"
        )
    log.info("scoring done: %d predictions in %s", summary["rows"], args.output_dir)
    return 0


def serve_main() -> int:
    """SageMaker's `serve`: the real-time endpoint's HTTP server on port 8080 (training_job.serving)."""
    from training_job.serving import server

    try:
        httpd = server()
    except JobError as error:
        log.error("cannot serve the model: %s", error)
        return 1
    httpd.serve_forever()
    return 0


def _fail(paths: JobPaths, reason: str) -> int:
    return _write_failure(paths.failure, "training", reason)


def _write_failure(path: Path, job: str, reason: str) -> int:
    log.error("%s job failed: %s", job, reason)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(reason[:FAILURE_REASON_LIMIT])
    except OSError as error:
        log.error("cannot write the failure reason to %s: %s", path, error)
    return 1
