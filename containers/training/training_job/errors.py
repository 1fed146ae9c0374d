"""The two ways work does not happen: the whole job cannot run, or one outcome / modality set cannot be trained."""

from __future__ import annotations


class JobError(Exception):
    """The job cannot run or finish; the message becomes SageMaker's FailureReason (/opt/ml/output/failure)."""


class NotTrainable(Exception):
    """An outcome or a modality set cannot be trained on this dataset (too few cases, no values); the job goes
    on and records the reason in metrics.json `skipped`."""
