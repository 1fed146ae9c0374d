"""One outcome's evaluation from its test-split scores (pure numpy/pandas: no AutoGluon here).

Each predictor is scored at its own decision threshold (chosen out-of-fold on the training split,
thresholds.py) on:
- the whole test split: METRICS with bootstrap intervals, the confusion matrix, PR and reliability curves,
  and the paired AUC difference against the age + sex baseline;
- available cases: the test patients who have every modality of the set, and the test patients who have all
  three modalities (the reference design of AWS's multimodal guidance), where every set is compared and the
  multimodal gain is measured again;
- subgroups of the full set: by sex and by age band (AGE_BANDS: under 45, 45-64, 65 and over, the age on the
  index date; a patient without a value is in "unknown").

Sample-size rules: a subset (available cases, subgroup) gets numbers only when it holds at least
MIN_CASES positive and MIN_CASES negative patients, else a note says how many it has; the whole test split
always gets numbers (the cohort step already requires both classes). Wherever a scope has fewer than
SMALL_SAMPLE_POSITIVES positives, a warning goes with the numbers. A threshold that predicts no positive in
a scope is flagged (`no_positive_predicted`): precision and F1 are then 0 by convention, not measured.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from training_job import MODALITIES
from training_job.curves import pr_points, reliability_bins
from training_job.dataset import AGE_COLUMN, SEX_COLUMN
from training_job.evaluate import Estimate, classification_metrics, confusion_counts, paired_auc_difference
from training_job.parameters import modalities_of

MIN_CASES = 5
SMALL_SAMPLE_POSITIVES = 10
AGE_BANDS: tuple[tuple[str, float, float], ...] = (
    ("<45", -np.inf, 45.0),
    ("45-64", 45.0, 65.0),
    ("65+", 65.0, np.inf),
)
UNKNOWN = "unknown"
ALL_MODALITIES = "+".join(MODALITIES)

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]


@dataclass(frozen=True)
class Scored:
    """A predictor's test-split probabilities and its decision threshold."""

    y_score: FloatArray
    threshold: float


@dataclass(frozen=True)
class References:
    full: str
    clinical: str | None
    """The set the multimodal gain is measured against (None: no gain)."""
    age_sex: str | None
    """The age + sex baseline's name when it was trained."""

    def gain_pair(self, scored: Mapping[str, Scored]) -> tuple[Scored, Scored] | None:
        """(full, clinical) when both were scored and differ: the multimodal gain compares them."""
        if (
            self.clinical is None
            or self.clinical == self.full
            or not {self.clinical, self.full} <= set(scored)
        ):
            return None
        return scored[self.full], scored[self.clinical]


@dataclass(frozen=True)
class ScopeResult:
    """A predictor on some test patients: n and positives always; numbers when there are enough of both."""

    n: int
    positives: int
    metrics: dict[str, Estimate] | None
    confusion: dict[str, int] | None
    note: str | None
    """Why there are no numbers."""
    warning: str | None
    """Fewer than SMALL_SAMPLE_POSITIVES positives."""

    @property
    def no_positive_predicted(self) -> bool:
        return self.confusion is not None and self.confusion["tp"] + self.confusion["fp"] == 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "positives": self.positives,
            "metrics": {m: e.as_dict() for m, e in self.metrics.items()} if self.metrics else None,
            "confusion": self.confusion,
            "no_positive_predicted": self.no_positive_predicted,
            "note": self.note,
            "warning": self.warning,
        }


@dataclass
class OutcomeAssessment:
    outcome: str
    test: dict[str, ScopeResult] = field(default_factory=dict)
    curves: dict[str, dict[str, Any]] = field(default_factory=dict)
    versus_age_sex: dict[str, Estimate] = field(default_factory=dict)
    gain: Estimate | None = None
    available_case: dict[str, Any] = field(default_factory=dict)
    subgroups: dict[str, Any] = field(default_factory=dict)
    warnings: list[dict[str, str]] = field(default_factory=list)


def evaluate_scope(
    y_true: NDArray[np.generic],
    y_score: NDArray[np.generic],
    threshold: float,
    *,
    resamples: int,
    seed: int,
    min_cases: int = MIN_CASES,
) -> ScopeResult:
    """METRICS and the confusion matrix at `threshold` on these rows, or a note when either class has fewer
    than `min_cases` patients."""
    y = np.asarray(y_true).astype(np.int8)
    n, positives = len(y), int(y.sum())
    warning = (
        f"only {positives} positive patients (< {SMALL_SAMPLE_POSITIVES}): the interval is wide and the "
        "point estimate unstable"
        if positives < SMALL_SAMPLE_POSITIVES
        else None
    )
    if min(positives, n - positives) < max(min_cases, 1):
        note = (
            f"too few to estimate: {positives} positive and {n - positives} negative patients "
            f"(needs {max(min_cases, 1)} of each)"
        )
        return ScopeResult(n, positives, None, None, note, warning)
    metrics = classification_metrics(y, y_score, threshold=threshold, resamples=resamples, seed=seed)
    return ScopeResult(n, positives, metrics, confusion_counts(y, y_score, threshold), None, warning)


def modality_presence(test: pd.DataFrame, columns: Mapping[str, list[str]]) -> dict[str, BoolArray]:
    """Per modality, which test patients have a value in any of its columns (all False without columns)."""
    return {
        m: (
            test[columns[m]].notna().any(axis=1).to_numpy()
            if columns.get(m)
            else np.zeros(len(test), dtype=bool)
        )
        for m in MODALITIES
    }


def has_modalities(presence: Mapping[str, BoolArray], modality_set: str) -> BoolArray:
    """The patients who have every modality of the set."""
    masks = [presence[m] for m in modalities_of(modality_set)]
    return np.logical_and.reduce(masks)


def assess_outcome(
    outcome: str,
    test: pd.DataFrame,
    scored: Mapping[str, Scored],
    presence: Mapping[str, BoolArray],
    references: References,
    *,
    resamples: int,
    seed: int,
) -> OutcomeAssessment:
    """Every evaluation of the outcome's predictors (`scored`, by set name) on its test split."""
    y = test[outcome].to_numpy().astype(np.int8)
    result = OutcomeAssessment(outcome)
    for name, s in scored.items():
        scope = evaluate_scope(y, s.y_score, s.threshold, resamples=resamples, seed=seed, min_cases=1)
        result.test[name] = scope
        _note_warnings(result, name, "test split", scope)
        recall, precision = pr_points(y, s.y_score)
        result.curves[name] = {
            "pr": {"recall": recall, "precision": precision},
            "reliability": reliability_bins(y, s.y_score),
        }
    baseline = scored.get(references.age_sex or "")
    if baseline is not None:
        for name, s in scored.items():
            if name != references.age_sex:
                result.versus_age_sex[name] = paired_auc_difference(
                    y, s.y_score, baseline.y_score, resamples=resamples, seed=seed
                )
    pair = references.gain_pair(scored)
    if pair:
        result.gain = paired_auc_difference(
            y, pair[0].y_score, pair[1].y_score, resamples=resamples, seed=seed
        )
    result.available_case = _available_case(result, y, scored, presence, references, resamples, seed)
    if references.full in scored:
        result.subgroups = _subgroups(
            result, test, y, references.full, scored[references.full], resamples, seed
        )
    return result


def _available_case(
    result: OutcomeAssessment,
    y: NDArray[np.int8],
    scored: Mapping[str, Scored],
    presence: Mapping[str, BoolArray],
    references: References,
    resamples: int,
    seed: int,
) -> dict[str, Any]:
    """by_set: each modality set on its own available cases; all_modalities: every predictor (the age + sex
    baseline included) on the patients with all three modalities, and the gain there."""

    def scope(name: str, mask: BoolArray, where: str) -> ScopeResult:
        s = scored[name]
        evaluated = evaluate_scope(y[mask], s.y_score[mask], s.threshold, resamples=resamples, seed=seed)
        _note_warnings(result, name, where, evaluated)
        return evaluated

    by_set = {}
    for name in scored:
        if name == references.age_sex:
            continue
        mask = has_modalities(presence, name)
        by_set[name] = {
            "modalities": list(modalities_of(name)),
            **scope(name, mask, "available cases").as_dict(),
        }
    everything = has_modalities(presence, ALL_MODALITIES)
    y_all = y[everything]
    gain: dict[str, Any] = {"full": references.full, "baseline": references.clinical, "metric": "roc_auc"}
    positives = int(y_all.sum())
    pair = references.gain_pair(scored)
    if pair is None:
        gain["note"] = "needs both the full and the clinical predictor"
    elif min(positives, len(y_all) - positives) < MIN_CASES:
        gain["note"] = (
            f"too few to estimate: {positives} positive of {len(y_all)} patients with all modalities"
        )
    else:
        estimate = paired_auc_difference(
            y_all,
            pair[0].y_score[everything],
            pair[1].y_score[everything],
            resamples=resamples,
            seed=seed,
        )
        gain.update(estimate.as_dict())
    return {
        "by_set": by_set,
        "all_modalities": {
            "modalities": list(MODALITIES),
            "n": int(everything.sum()),
            "positives": positives,
            "sets": {name: scope(name, everything, "all modalities").as_dict() for name in scored},
            "gain": gain,
        },
    }


def _subgroups(
    result: OutcomeAssessment,
    test: pd.DataFrame,
    y: NDArray[np.int8],
    name: str,
    s: Scored,
    resamples: int,
    seed: int,
) -> dict[str, Any]:
    groups: list[dict[str, Any]] = []
    for by, labels in (("sex", _sex_groups(test)), ("age_band", _age_bands(test))):
        if labels is None:
            continue
        for group in sorted(set(labels), key=_group_order):
            mask = labels == group
            scope = evaluate_scope(y[mask], s.y_score[mask], s.threshold, resamples=resamples, seed=seed)
            _note_warnings(result, name, f"{by} {group}", scope)
            groups.append({"by": by, "group": group, **scope.as_dict()})
    return {"set": name, "age_bands": [band for band, _, _ in AGE_BANDS], "groups": groups}


def _sex_groups(test: pd.DataFrame) -> NDArray[np.object_] | None:
    if SEX_COLUMN not in test:
        return None
    sex = test[SEX_COLUMN].astype("string").str.strip().str.lower()
    return sex.fillna(UNKNOWN).replace("", UNKNOWN).to_numpy(dtype=object)


def _age_bands(test: pd.DataFrame) -> NDArray[np.object_] | None:
    if AGE_COLUMN not in test:
        return None
    age = pd.to_numeric(test[AGE_COLUMN], errors="coerce").to_numpy(dtype=np.float64)
    labels = np.full(len(age), UNKNOWN, dtype=object)
    for band, low, high in AGE_BANDS:
        labels[(age >= low) & (age < high)] = band
    return labels


def _group_order(group: str) -> tuple[bool, int, str]:
    # Age bands youngest first, other groups by name, "unknown" last.
    bands = [band for band, _, _ in AGE_BANDS]
    return group == UNKNOWN, bands.index(group) if group in bands else len(bands), group


def _note_warnings(result: OutcomeAssessment, name: str, where: str, scope: ScopeResult) -> None:
    for message in (
        scope.warning,
        "the threshold predicts no positive patient: precision and F1 are 0 by convention"
        if scope.no_positive_predicted
        else None,
    ):
        if message:
            result.warnings.append(
                {"outcome": result.outcome, "set": name, "scope": where, "message": message}
            )
