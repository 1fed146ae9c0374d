"""Per-series failure reasons: a series that fails gets one of these in its features JSON; the job goes on."""

from __future__ import annotations

import traceback

NOT_DICOM = "not-dicom"
DICOM_NO_PIXELS = "dicom-no-pixels"
DICOM_NO_GEOMETRY = "dicom-no-geometry"
DICOM_UNSUPPORTED_TRANSFER_SYNTAX = "dicom-unsupported-transfer-syntax"
SERIES_MISSING_SLICE = "series-missing-slice"
SERIES_MIXED_GEOMETRY = "series-mixed-geometry"
SERIES_DUPLICATE_POSITION = "series-duplicate-position"
SERIES_DOWNLOAD_FAILED = "series-download-failed"
SERIES_TIMEOUT = "series-timeout"  # the series ran past --series-timeout: its worker was stopped
WORKER_DIED = "worker-died"  # the worker process died under the series (killed, out of memory, a segfault)
OUTPUT_FAILED = "output-failed"  # the series' features document or mask could not be written or uploaded
EMPTY_MASK = "empty-mask"
MANIFEST_INVALID = "manifest-invalid"
INTERNAL_ERROR = "internal-error"

REASONS = frozenset(
    {
        NOT_DICOM,
        DICOM_NO_PIXELS,
        DICOM_NO_GEOMETRY,
        DICOM_UNSUPPORTED_TRANSFER_SYNTAX,
        SERIES_MISSING_SLICE,
        SERIES_MIXED_GEOMETRY,
        SERIES_DUPLICATE_POSITION,
        SERIES_DOWNLOAD_FAILED,
        SERIES_TIMEOUT,
        WORKER_DIED,
        OUTPUT_FAILED,
        EMPTY_MASK,
        MANIFEST_INVALID,
        INTERNAL_ERROR,
    }
)


class SeriesError(Exception):
    """A series cannot be processed; `reason` is one of REASONS, `detail` names the file and the cause."""

    def __init__(self, reason: str, detail: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown series error reason {reason!r}")
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail

    def __reduce__(self) -> tuple[type[SeriesError], tuple[str, str]]:
        # Crosses process boundaries (the worker pipes) intact.
        return (SeriesError, (self.reason, self.detail))


def describe(error: BaseException) -> str:
    """`<type>: <message> at <file>:<line>` of the innermost frame: the detail of an unexpected error."""
    frames = traceback.extract_tb(error.__traceback__)
    where = f" at {frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno}" if frames else ""
    return f"{type(error).__name__}: {error}{where}"
