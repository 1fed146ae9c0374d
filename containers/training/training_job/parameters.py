"""The job's hyperparameters: hyperparameters.json, where SageMaker passes every value as a string."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training_job import MODALITIES, OUTCOMES
from training_job.errors import JobError

DEFAULT_MODALITY_SETS: tuple[str, ...] = (
    "clinical",
    "genomic",
    "imaging",
    "clinical+genomic",
    "clinical+genomic+imaging",
)
# The SageMaker Python SDK adds its own `sagemaker_*` entries for some estimators: tolerated, not used.
SDK_PREFIX = "sagemaker_"


def modalities_of(modality_set: str) -> tuple[str, ...]:
    """ "clinical+genomic" -> ("clinical", "genomic")."""
    return tuple(modality_set.split("+"))


@dataclass(frozen=True)
class TrainingParameters:
    time_limit: float = 30.0
    """Seconds per predictor (AutoGluon's fit time_limit)."""
    presets: str = "medium_quality"
    seed: int = 42
    """Train/test split, label shuffle and bootstrap resamples."""
    test_size: float = 0.3
    bootstrap: int = 1000
    """Bootstrap resamples per confidence interval; 0 = no intervals."""
    outcomes: tuple[str, ...] = OUTCOMES
    modality_sets: tuple[str, ...] = DEFAULT_MODALITY_SETS
    label_shuffle_control: bool = True
    label_shuffle_permutations: int = 20
    """Permutations of the training labels behind the control's null distribution and p-value."""
    oof_folds: int = 5
    """Bagging folds of every evaluated predictor: their out-of-fold predictions choose its threshold."""
    hyperparameters: str | dict[str, Any] | None = None
    """AutoGluon's `hyperparameters`: a preset name ("light", ...) or a dict; None = the presets' default."""
    importance_subsample: int = 200
    """Test rows for permutation feature importance; 0 = no feature importance."""
    ignored: tuple[str, ...] = field(default=())
    """`sagemaker_*` keys that were present and ignored."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "time_limit": self.time_limit,
            "presets": self.presets,
            "seed": self.seed,
            "test_size": self.test_size,
            "bootstrap": self.bootstrap,
            "outcomes": list(self.outcomes),
            "modality_sets": list(self.modality_sets),
            "label_shuffle_control": self.label_shuffle_control,
            "label_shuffle_permutations": self.label_shuffle_permutations,
            "oof_folds": self.oof_folds,
            "hyperparameters": self.hyperparameters,
            "importance_subsample": self.importance_subsample,
        }


def read_parameters(path: Path) -> TrainingParameters:
    """The parameters in hyperparameters.json (every default when the file is absent); JobError naming the
    file and the key when it is not a JSON object or a value is invalid."""
    if not path.exists():
        return TrainingParameters()
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise JobError(f"{path}: not readable as JSON ({error})") from error
    if not isinstance(raw, dict):
        raise JobError(f"{path}: expected a JSON object of hyperparameters, got {type(raw).__name__}")
    try:
        return parse_parameters(raw)
    except JobError as error:
        raise JobError(f"{path}: {error}") from error


def parse_parameters(raw: Mapping[str, Any]) -> TrainingParameters:
    """Parse SageMaker-style string values (plain values are accepted too); JobError on any invalid one."""
    defaults = TrainingParameters()
    known = set(defaults.as_dict())
    unknown = sorted(k for k in raw if k not in known and not k.startswith(SDK_PREFIX))
    if unknown:
        raise JobError(f"unknown hyperparameter(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    values = {k: _unquote(v) for k, v in raw.items() if k in known}

    def get(key: str, convert: Any, default: Any) -> Any:
        if key not in values or values[key] == "":
            return default
        try:
            return convert(values[key])
        except (TypeError, ValueError) as error:
            raise JobError(f"hyperparameter {key}={values[key]!r}: {error}") from error

    parameters = TrainingParameters(
        time_limit=get("time_limit", float, defaults.time_limit),
        presets=get("presets", str, defaults.presets),
        seed=get("seed", int, defaults.seed),
        test_size=get("test_size", float, defaults.test_size),
        bootstrap=get("bootstrap", int, defaults.bootstrap),
        outcomes=get("outcomes", _names, defaults.outcomes),
        modality_sets=get("modality_sets", _names, defaults.modality_sets),
        label_shuffle_control=get("label_shuffle_control", _boolean, defaults.label_shuffle_control),
        label_shuffle_permutations=get(
            "label_shuffle_permutations", int, defaults.label_shuffle_permutations
        ),
        oof_folds=get("oof_folds", int, defaults.oof_folds),
        hyperparameters=get("hyperparameters", _autogluon_hyperparameters, defaults.hyperparameters),
        importance_subsample=get("importance_subsample", int, defaults.importance_subsample),
        ignored=tuple(sorted(k for k in raw if k.startswith(SDK_PREFIX))),
    )
    _check(parameters)
    return parameters


def _check(p: TrainingParameters) -> None:
    problems = []
    if not p.time_limit > 0:
        problems.append(f"time_limit must be > 0 (got {p.time_limit})")
    if not 0 < p.test_size < 1:
        problems.append(f"test_size must be between 0 and 1 (got {p.test_size})")
    if not 0 <= p.seed < 2**32:
        problems.append(f"seed must be in [0, 2**32) (got {p.seed})")
    if p.bootstrap < 0:
        problems.append(f"bootstrap must be >= 0 (got {p.bootstrap})")
    if p.label_shuffle_permutations < 1:
        problems.append(f"label_shuffle_permutations must be >= 1 (got {p.label_shuffle_permutations})")
    if not 2 <= p.oof_folds <= 20:
        problems.append(f"oof_folds must be between 2 and 20 (got {p.oof_folds})")
    if p.importance_subsample < 0:
        problems.append(f"importance_subsample must be >= 0 (got {p.importance_subsample})")
    if not p.outcomes:
        problems.append("outcomes is empty")
    problems += [
        f"unknown outcome {o!r} (known: {', '.join(OUTCOMES)})" for o in p.outcomes if o not in OUTCOMES
    ]
    if len(set(p.outcomes)) != len(p.outcomes):
        problems.append(f"outcomes lists one twice: {', '.join(p.outcomes)}")
    if not p.modality_sets:
        problems.append("modality_sets is empty")
    seen: set[frozenset[str]] = set()
    for name in p.modality_sets:
        modalities = modalities_of(name)
        bad = [m for m in modalities if m not in MODALITIES]
        if bad:
            problems.append(
                f"modality set {name!r}: unknown modality {bad[0]!r} (known: {', '.join(MODALITIES)})"
            )
        elif len(set(modalities)) != len(modalities):
            problems.append(f"modality set {name!r} names a modality twice")
        elif frozenset(modalities) in seen:
            problems.append(f"modality set {name!r} repeats another set")
        seen.add(frozenset(modalities))
    if problems:
        raise JobError("; ".join(problems))


def _unquote(value: Any) -> Any:
    # The SageMaker SDK JSON-encodes string values ('"medium_quality"'); CreateTrainingJob callers do not.
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _names(value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, list) else str(value).split(",")
    return tuple(str(item).strip() for item in items if str(item).strip())


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"true", "1", "yes"}:
        return True
    if text in {"false", "0", "no"}:
        return False
    raise ValueError("expected true or false")


def _autogluon_hyperparameters(value: Any) -> str | dict[str, Any]:
    if isinstance(value, dict):
        return value
    text = str(value).strip()
    if text.startswith("{"):
        parsed = json.loads(text)  # ValueError -> JobError naming the key
        if not isinstance(parsed, dict):
            raise ValueError("expected a JSON object")
        return parsed
    return text
