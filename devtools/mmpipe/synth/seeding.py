"""Deterministic randomness and identifiers.

Every (modality, patient) pair draws from its own numpy stream keyed by (seed, stream, patient index), so
the output of one modality never depends on which other modalities were requested, on the number of
patients after it, or on the order the files are written in. Identifiers are name-based (UUIDv5, and
pydicom's hash-based UIDs), never random or time-based.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from enum import IntEnum

import numpy as np
from pydicom.uid import generate_uid

# Fixed namespace for UUIDv5 resource ids (itself a UUIDv5 of the generator's name).
ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/mmpipe/synth")


class Stream(IntEnum):
    """Independent random streams; the values are part of the output contract (changing one changes data)."""

    COHORT = 1
    SITE_POOL = 2
    GENOME = 3
    CLINVAR = 4
    CLINICAL = 5
    IMAGING_PLAN = 6
    IMAGING_PIXELS = 7
    IDENTITY = 8


def rng_for(seed: int, stream: Stream, index: int = 0) -> np.random.Generator:
    """The random stream of one patient (or of a cohort-level object when index is 0)."""
    return np.random.default_rng([seed, int(stream), index])


def stable_uuid(*parts: object) -> str:
    """A UUIDv5 of the parts: the same parts always give the same id."""
    return str(uuid.uuid5(ID_NAMESPACE, "/".join(str(p) for p in parts)))


def stable_dicom_uid(*parts: object) -> str:
    """A DICOM UID under pydicom's root, hashed from the parts (pydicom's deterministic mode)."""
    return str(generate_uid(entropy_srcs=[str(p) for p in parts]))


def day_offset(start: date, days: int) -> date:
    return start + timedelta(days=int(days))


def fhir_datetime(day: date, minutes_after_midnight: int) -> str:
    """FHIR dateTime in UTC with seconds, e.g. 2019-03-04T10:15:00+00:00."""
    moment = datetime.combine(day, time(0, 0), tzinfo=UTC) + timedelta(minutes=int(minutes_after_midnight))
    return moment.isoformat(timespec="seconds")
