"""The label-shuffle control summarised over its permutations (pure numpy).

Each permutation refits the full set on the training labels permuted with seed + i (i = 0 .. n-1;
permutation 0 is the single control of earlier versions) and scores the unchanged test split. Its test AUC
is one draw from the null distribution "the features carry no information about the label" for this
pipeline, this training set size and this test split; one draw can land far from 0.5 by chance, the
distribution cannot.

- `control[outcome][metric]` (metrics.json): the mean over the permutations, with the 2.5th and 97.5th
  percentiles of the permutations as its interval (the spread of the null, not a bootstrap); the
  thresholded metrics use the full set's own decision threshold;
- the permutation p-value of the real model's test AUC: (1 + #{permutation AUC >= real AUC}) / (1 + n), the
  add-one estimate that is never 0 (Phipson & Smyth, 2010). With 20 permutations its smallest value is
  1/21 = 0.048.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from training_job.evaluate import CONFIDENCE, Estimate


def permutation_p_value(real: float, permuted: Sequence[float]) -> float:
    """(1 + number of permutation values >= the real one) / (1 + number of permutations)."""
    values = np.asarray(permuted, dtype=np.float64)
    return float((1 + np.count_nonzero(values >= real)) / (1 + values.size))


def null_distribution(values: Sequence[float]) -> dict[str, Any]:
    """mean, sd (ddof 1; 0 for one value), min, max and the values themselves, rounded to 6 decimals."""
    array = np.asarray(values, dtype=np.float64)
    return {
        "mean": round(float(array.mean()), 6),
        "sd": round(float(array.std(ddof=1)) if array.size > 1 else 0.0, 6),
        "min": round(float(array.min()), 6),
        "max": round(float(array.max()), 6),
        "values": [round(float(v), 6) for v in array],
    }


def control_estimates(
    per_permutation: Sequence[Mapping[str, float]], confidence: float = CONFIDENCE
) -> dict[str, Estimate]:
    """Per metric: the mean over permutations and the central `confidence` range of the permutations
    (NaN values, e.g. a metric undefined on one permutation, left out)."""
    estimates = {}
    for metric in per_permutation[0]:
        values = np.array([p[metric] for p in per_permutation], dtype=np.float64)
        values = values[~np.isnan(values)]
        if values.size == 0:
            estimates[metric] = Estimate(float("nan"), None, None)
            continue
        tail = (1 - confidence) / 2 * 100
        low, high = np.percentile(values, [tail, 100 - tail])
        estimates[metric] = Estimate(float(values.mean()), float(low), float(high))
    return estimates
