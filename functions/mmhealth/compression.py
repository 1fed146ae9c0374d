"""Reading gzip/BGZF deliveries: one translation of a broken stream into the quarantine reason."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

from mmhealth.errors import InvalidInputError


@contextmanager
def gzip_damage_is_invalid_input() -> Iterator[None]:
    """Inside the block, a cut or corrupt compressed stream raises InvalidInputError("truncated-gzip")."""
    try:
        yield
    except EOFError as exc:
        raise InvalidInputError(
            "truncated-gzip", "compressed stream ends early: the file is truncated"
        ) from exc
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise InvalidInputError("truncated-gzip", f"corrupt compressed data ({exc})") from exc
