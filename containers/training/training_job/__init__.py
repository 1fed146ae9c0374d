"""The training job: a dataset snapshot -> one AutoGluon TabularPredictor per outcome x modality set, evaluated
on a held-out split, with metrics, a model card and a self-contained HTML report.

A separate deployable (containers/training/Dockerfile), not part of the Lambda package: it must not import
`mmhealth`. Entry point: `python -m training_job` (SageMaker runs the image with the argument `train`).
"""

from __future__ import annotations

__version__ = "1.0.0"

OUTCOMES: tuple[str, ...] = ("hypertension", "stroke", "coronary_heart_disease", "alzheimers_disease")
MODALITIES: tuple[str, ...] = ("clinical", "genomic", "imaging")
CONTROL = "control"
"""The label-shuffle control's name wherever a modality set name goes (predictions, leaderboard, model dir)."""
