"""What a job image is built from, for the tests of images that cannot be built here (no Docker engine):
the Dockerfile's instructions and the exact pins of its requirements.txt."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

# name, optional [extras], ==version
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)(\[[a-z0-9,_\-]+\])?==([A-Za-z0-9_.\-]+)$")


def dockerfile_instructions(dockerfile: Path) -> list[tuple[str, list[str]]]:
    """(INSTRUCTION, arguments): exec form (JSON array) for ENTRYPOINT/CMD/RUN, shell words otherwise."""
    text = dockerfile.read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    parsed = []
    for line in lines:
        op, _, rest = line.partition(" ")
        rest = rest.strip()
        parsed.append((op.upper(), json.loads(rest) if rest.startswith("[") else shlex.split(rest)))
    return parsed


def requirement_pins(requirements: Path) -> dict[str, str]:
    """Lower-cased name -> version; fails on any line that is not an exact pin."""
    pins = {}
    for line in requirements.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            match = PIN.match(line)
            assert match, f"{requirements.name}: {line!r} is not an exact pin"
            pins[match.group(1).lower()] = match.group(3)
    return pins
