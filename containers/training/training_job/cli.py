"""`python -m training_job [train]`: a dataset snapshot in, predictors + metrics + model card + report out
(a SageMaker training job; SageMaker starts the image with the argument `train`, accepted and ignored).

Exit codes: 0 when every output is written (an outcome or modality set that cannot be trained is listed in
metrics.json `skipped`); 1 when the job fails, with the reason in the failure file (/opt/ml/output/failure,
SageMaker's FailureReason); 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

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


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stderr
    )
    args = parse_arguments(argv)
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
    outputs.write_json(paths.model / outputs.MODEL_CARD_FILE, outputs.model_card(document, dataset))
    report = render_report(document, dataset, predictions, importance)
    (paths.output_data / REPORT_FILE).write_text(report, encoding="utf-8")
    log.info(
        "job done in %.1f s: %d predictors, %d skipped; outputs in %s, predictors in %s",
        time.perf_counter() - started,
        sum(len(s) for s in results.models.values()),
        len(results.skipped),
        paths.output_data,
        paths.model,
    )


def _fail(paths: JobPaths, reason: str) -> int:
    log.error("training job failed: %s", reason)
    try:
        paths.failure.parent.mkdir(parents=True, exist_ok=True)
        paths.failure.write_text(reason[:FAILURE_REASON_LIMIT])
    except OSError as error:
        log.error("cannot write the failure reason to %s: %s", paths.failure, error)
    return 1
