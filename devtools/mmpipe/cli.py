"""The `mmpipe` command: synthesise a cohort, run the pipeline locally, summarise a run."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _synth(args: argparse.Namespace) -> int:
    from mmpipe.synth import generate_cohort

    modalities = {m.strip() for m in args.modalities.split(",") if m.strip()}
    summary = generate_cohort(Path(args.out), patients=args.patients, seed=args.seed, modalities=modalities)
    print(json.dumps(summary, indent=2, default=str))
    return 0


def _local_run(args: argparse.Namespace) -> int:
    from mmpipe.local_run import run

    parameters = dict(p.split("=", 1) for p in args.param)
    return run(Path(args.input), Path(args.out), args.delivery, args.timeout, parameters)


def _summary(args: argparse.Namespace) -> int:
    from mmpipe.summary import print_summary

    return print_summary(Path(args.out))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmpipe", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    synth = sub.add_parser(
        "synth", help="write a synthetic, coherent multimodal cohort (deterministic per seed)"
    )
    synth.add_argument("--patients", type=int, default=200)
    synth.add_argument("--seed", type=int, default=7)
    synth.add_argument(
        "--out", required=True, help="folder to write the delivery into (truth in OUT/.truth/)"
    )
    synth.add_argument("--modalities", default="genomic,clinical,imaging", help="comma-separated subset")
    synth.set_defaults(func=_synth)

    local = sub.add_parser("local", help="the Docker-free local runtime")
    local_sub = local.add_subparsers(dest="local_command", required=True)
    run = local_sub.add_parser("run", help="upload a folder as one delivery and wait for the pipeline")
    run.add_argument(
        "--input", required=True, help="folder to deliver (hidden files and folders are skipped)"
    )
    run.add_argument("--out", required=True, help="where run.json, tables/, quarantine.jsonl and logs go")
    run.add_argument("--delivery", help="delivery name (default: delivery-<UTC timestamp>)")
    run.add_argument("--timeout", type=float, default=1800, help="seconds to wait for the executions")
    run.add_argument(
        "--param", action="append", default=[], metavar="KEY=VALUE", help="template parameter override"
    )
    run.set_defaults(func=_local_run)

    summary = sub.add_parser("summary", help="print the counts of a finished local run")
    summary.add_argument("out", help="the --out folder of `mmpipe local run`")
    summary.set_defaults(func=_summary)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
