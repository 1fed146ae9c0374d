"""Error types whose names appear in Step Functions Retry/Catch clauses and in quarantine records."""

from __future__ import annotations


class PipelineError(Exception):
    """Base class: every error the pipeline raises on purpose."""


class InvalidInputError(PipelineError):
    """A delivered file cannot be ingested. Never retried: the file goes to quarantine.

    `reason` is short and machine-friendly ("truncated-gzip", "vcf-header", ...); `detail` is the
    human explanation naming what is wrong (never patient data).
    """

    def __init__(self, reason: str, detail: str, *, line: int | None = None) -> None:
        super().__init__(f"{reason}: {detail}" + (f" (line {line})" if line is not None else ""))
        self.reason = reason
        self.detail = detail
        self.line = line


class TransientError(PipelineError):
    """A dependency failed in a way worth retrying (throttling, a timeout). Retried by the state machine."""


class ManifestError(PipelineError):
    """The run manifest is missing or malformed: the run cannot proceed. Not retried."""


class BackendJobFailed(PipelineError):
    """An operational backend (HealthOmics, HealthLake, HealthImaging) reported a failed import job."""


class SupersededObject(PipelineError):
    """The delivered version of an object can no longer be read: it was overwritten (and, unversioned, is
    gone) or its version deleted. Its successor arrives as its own event; this one is recorded as
    superseded, never read under the newer bytes."""
