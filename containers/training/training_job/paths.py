"""SageMaker's training-container layout (/opt/ml/...), every path overridable for a local run.

Precedence per path: its command-line flag, then its environment variable (the names the SageMaker training
toolkit uses), then the layout under --ml-root (default /opt/ml).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_ML_ROOT = Path("/opt/ml")
CHANNEL = "dataset"

DATASET_ENV = "SM_CHANNEL_DATASET"
MODEL_ENV = "SM_MODEL_DIR"
OUTPUT_DATA_ENV = "SM_OUTPUT_DATA_DIR"
CONFIG_ENV = "SM_INPUT_CONFIG_DIR"  # holds hyperparameters.json
OUTPUT_ENV = "SM_OUTPUT_DIR"  # holds the failure file


@dataclass(frozen=True)
class JobPaths:
    dataset: Path
    """The `dataset` channel: dataset.parquet, manifest.json, optional patients.json."""
    hyperparameters: Path
    """hyperparameters.json (every value a string); absent = every default."""
    model: Path
    """Predictors and model_card.json; SageMaker uploads it as model.tar.gz."""
    output_data: Path
    """metrics.json, leaderboard.csv, feature_importance.csv, predictions.parquet, report.html."""
    failure: Path
    """Written on failure: SageMaker shows its text as DescribeTrainingJob's FailureReason."""

    @classmethod
    def resolve(
        cls,
        *,
        ml_root: Path | None = None,
        dataset: Path | None = None,
        hyperparameters: Path | None = None,
        model: Path | None = None,
        output_data: Path | None = None,
        failure: Path | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> JobPaths:
        env = os.environ if environ is None else environ
        root = ml_root or DEFAULT_ML_ROOT

        def pick(flag: Path | None, variable: str, default: Path) -> Path:
            if flag is not None:
                return flag
            return Path(env[variable]) if env.get(variable) else default

        config = pick(None, CONFIG_ENV, root / "input" / "config")
        output = pick(None, OUTPUT_ENV, root / "output")
        return cls(
            dataset=pick(dataset, DATASET_ENV, root / "input" / "data" / CHANNEL),
            hyperparameters=hyperparameters or config / "hyperparameters.json",
            model=pick(model, MODEL_ENV, root / "model"),
            output_data=pick(output_data, OUTPUT_DATA_ENV, output / "data"),
            failure=failure or output / "failure",
        )
