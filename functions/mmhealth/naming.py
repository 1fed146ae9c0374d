"""Names people type: a delivery, its waves, and the run (execution) of each wave.

A delivery is the folder ops drop: `incoming/<delivery>/...` (objects directly under `incoming/` form the
delivery `loose`). Its first run is wave 1; files that arrive after a wave's run has closed its file list
form the next wave. The execution of a wave is named `<delivery>-w<wave>`:

    run_name("2026-12-04-cohort", 1) == "2026-12-04-cohort-w1"

Step Functions names allow 80 characters of [A-Za-z0-9_-]. A delivery name that is not already such a name
(other characters, or longer than 60) is made safe and given 8 hex digits of its SHA-256, so two deliveries
never share a run name: `cohort 1/` -> `cohort-1-3f2a9c1d-w1`.
"""

from __future__ import annotations

import hashlib
import re

LOOSE_DELIVERY = "loose"
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_SAFE_MAX = 60
_RUN_NAME = re.compile(r"^(?P<slug>.+)-w(?P<wave>[1-9][0-9]*)$")


def delivery_slug(delivery: str) -> str:
    """The delivery's part of its run names (see the module docstring)."""
    safe = _UNSAFE.sub("-", delivery).strip("-")[:_SAFE_MAX].strip("-")
    if safe == delivery and safe:
        return safe
    digest = hashlib.sha256(delivery.encode()).hexdigest()[:8]
    return f"{safe or 'delivery'}-{digest}"


def run_name(delivery: str, wave: int) -> str:
    """The execution name (and run id) of a delivery's wave."""
    if wave < 1:
        raise ValueError(f"waves count from 1, not {wave}")
    return f"{delivery_slug(delivery)}-w{wave}"


def parse_run_name(name: str) -> tuple[str, int] | None:
    """(delivery slug, wave) of a run name; None for a name that is not one (e.g. an older run id)."""
    match = _RUN_NAME.match(name)
    if match is None:
        return None
    return match["slug"], int(match["wave"])
