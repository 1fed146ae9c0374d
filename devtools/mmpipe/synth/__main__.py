"""`python -m mmpipe.synth --patients 200 --seed 7 --out DIR [--modalities genomic,clinical]
[--imaging-fraction 0.6]`."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from mmpipe.synth.cohort import IMAGING_FRACTION
from mmpipe.synth.generate import MODALITIES, generate_cohort


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mmpipe.synth", description=__doc__)
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--modalities", default=",".join(sorted(MODALITIES)), help="comma-separated")
    parser.add_argument(
        "--imaging-fraction", type=float, default=IMAGING_FRACTION, help="share of patients with an MR series"
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    summary = generate_cohort(
        args.out,
        args.patients,
        args.seed,
        set(filter(None, args.modalities.split(","))),
        imaging_fraction=args.imaging_fraction,
    )
    summary["elapsed_seconds"] = round(time.perf_counter() - started, 2)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
