"""`python -m mmpipe.synth --patients 200 --seed 7 --out DIR [--modalities genomic,clinical]`."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from mmpipe.synth.generate import MODALITIES, generate_cohort


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mmpipe.synth", description=__doc__)
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--modalities", default=",".join(sorted(MODALITIES)), help="comma-separated")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    summary = generate_cohort(
        args.out, args.patients, args.seed, set(filter(None, args.modalities.split(",")))
    )
    summary["elapsed_seconds"] = round(time.perf_counter() - started, 2)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
