"""The decision threshold of each predictor, chosen on the training split only.

Source: AutoGluon's out-of-fold (OOF) predictions. Every predictor is fitted with k-fold bagging
(`oof_folds`, default 5, stratified by AutoGluon), so each training patient has a probability from the fold
model that did not see it; the test split plays no part in the choice.

Criterion: the threshold that maximises F1 on those OOF predictions (`max_f1`). Why F1 rather than Youden's J
(max sensitivity + specificity - 1): the outcomes are rare (11-18 % prevalence for stroke and CHD), and
Youden's J ignores precision, so at low prevalence it picks a low threshold that flags many false
positives for each true one; F1 weighs precision and recall of the positive class, which is what a flag
for follow-up has to balance, and it is the figure the evaluation is compared on (AWS's guidance reports F1).
For a calibrated model the F1-optimal threshold is half the best achievable F1 (Lipton et al., 2014), so it
adapts to the prevalence instead of the fixed 0.5 at which the rare outcomes were never predicted.
Balanced accuracy (Youden's J + 1) / 2 is still reported at the chosen threshold.

Candidates are the distinct OOF scores (predicted positive when the score is >= the threshold); among equal
F1 the highest threshold wins (fewest patients flagged).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from training_job.evaluate import checked

CRITERION = "max_f1"
SOURCE = "out-of-fold"


@dataclass(frozen=True)
class Threshold:
    value: float
    criterion: str
    source: str
    folds: int
    """Bagging folds behind the out-of-fold predictions."""
    oof_f1: float
    """F1 of the out-of-fold predictions at the threshold (optimistic: the threshold was chosen on them)."""
    n: int
    positives: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "threshold": round(self.value, 6),
            "criterion": self.criterion,
            "source": self.source,
            "folds": self.folds,
            "oof_f1": round(self.oof_f1, 6),
            "oof_n": self.n,
            "oof_positives": self.positives,
        }


def max_f1_threshold(y_true: NDArray[np.generic], oof_score: NDArray[np.generic], folds: int) -> Threshold:
    """The out-of-fold score at which F1 is highest (ValueError when the labels lack a class)."""
    y, score = checked(y_true, oof_score)
    order = np.argsort(-score, kind="mergesort")
    s_sorted = score[order]
    last_of_tie = np.r_[np.nonzero(np.diff(s_sorted))[0], len(y) - 1]
    tp = np.cumsum(y[order])[last_of_tie]
    predicted = last_of_tie + 1
    f1 = 2 * tp / (predicted + y.sum())
    best = int(np.argmax(f1))  # the first maximum: the highest threshold among equals
    return Threshold(
        value=float(s_sorted[last_of_tie[best]]),
        criterion=CRITERION,
        source=SOURCE,
        folds=folds,
        oof_f1=float(f1[best]),
        n=len(y),
        positives=int(y.sum()),
    )
