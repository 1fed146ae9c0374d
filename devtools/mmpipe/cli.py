"""The `mmpipe` command: synthesise a cohort, run the pipeline locally, summarise a run; operate the pipeline
(status, redrive) in AWS or on the local runtime; invoke one function locally; keep a local runtime up."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mmpipe.local.state_file import DEFAULT_STATE_FILE


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


def _params(pairs: list[str]) -> dict[str, str]:
    return dict(p.split("=", 1) for p in pairs)


def _target(args: argparse.Namespace) -> Any:
    from mmpipe.targets import local_target, stack_target

    if args.local:
        return local_target(Path(args.state_file))
    return stack_target(args.stack, args.region)


def _print_json(document: Any) -> None:
    print(json.dumps(document, indent=2, default=str))


def _status(args: argparse.Namespace) -> int:
    from mmpipe import status

    target = _target(args)
    if args.run:
        document = status.run_status(target, args.run, quarantine_limit=args.quarantine_limit)
        if args.json:
            _print_json(document)
        else:
            print(status.render_run(document))
        return 0
    rows = status.recent_executions(target, limit=args.limit)
    if args.json:
        _print_json({"target": target.description, "executions": rows})
    else:
        print(status.render_executions(rows, target.description))
    return 0


def _redrive(args: argparse.Namespace) -> int:
    from mmpipe import redrive

    target = _target(args)
    if args.dlq:
        result = redrive.redrive_dlq(target, dry_run=args.dry_run)
    else:
        result = redrive.redrive_run(target, args.run, dry_run=args.dry_run, restart=args.restart)
    if args.json:
        _print_json(result)
    else:
        print(redrive.render(result))
    return 0 if result.get("failed", 0) == 0 else 1


def _invoke(args: argparse.Namespace) -> int:
    from mmpipe import invoke

    event = Path(args.event) if args.event else None
    if args.local:
        result = invoke.invoke_attached(Path(args.state_file), args.function, event)
    else:
        result = invoke.invoke_fresh(args.function, event, _params(args.param))
    return invoke.print_result(result)


def _local_up(args: argparse.Namespace) -> int:
    from mmpipe.local_up import serve

    return serve(
        Path(args.inbox),
        Path(args.state_file),
        parameters=_params(args.param),
        log_file=Path(args.log_file) if args.log_file else None,
        settle=args.settle,
        batching_window=args.batching_window,
    )


def _add_target_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--stack", help="a deployed stack (e.g. mmpipe-dev); credentials and region from the environment"
    )
    where.add_argument("--local", action="store_true", help="the runtime of a running `mmpipe local up`")
    parser.add_argument("--region", help="with --stack: the stack's region (default: from the environment)")
    parser.add_argument(
        "--state-file", default=str(DEFAULT_STATE_FILE), help="with --local (default: %(default)s)"
    )


def _add_ops_commands(sub: Any) -> None:
    status = sub.add_parser(
        "status",
        help="recent executions, or one run's progress, counts, quarantine and failure (AWS or local)",
    )
    _add_target_arguments(status)
    status.add_argument("--run", help="a run id, execution name or execution ARN: show that run in detail")
    status.add_argument("--limit", type=int, default=20, help="how many recent executions to list")
    status.add_argument(
        "--quarantine-limit", type=int, default=100, help="quarantine records to read for --run"
    )
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=_status)

    redrive = sub.add_parser("redrive", help="re-drive a failed execution, or the ingest DLQ's messages")
    _add_target_arguments(redrive)
    what = redrive.add_mutually_exclusive_group(required=True)
    what.add_argument("--run", help="a failed run (run id, execution name or ARN): RedriveExecution")
    what.add_argument(
        "--dlq", action="store_true", help="move the ingest DLQ's messages back to the ingest queue"
    )
    redrive.add_argument(
        "--restart", action="store_true", help="with --run: a new execution with the same input"
    )
    redrive.add_argument("--dry-run", action="store_true", help="say what would happen, change nothing")
    redrive.add_argument("--json", action="store_true", help="machine-readable output")
    redrive.set_defaults(func=_redrive)

    invoke = sub.add_parser(
        "invoke", help="invoke one function's handler with an event on the local runtime (no Docker)"
    )
    invoke.add_argument("function", help="logical id (GenomicImportFunction) or event name (genomic_import)")
    invoke.add_argument("--event", help="event JSON file, '-' for stdin (default: events/<event name>.json)")
    invoke.add_argument(
        "--local",
        action="store_true",
        help="invoke on a running `mmpipe local up` instead of a fresh runtime",
    )
    invoke.add_argument(
        "--state-file", default=str(DEFAULT_STATE_FILE), help="with --local (default: %(default)s)"
    )
    invoke.add_argument(
        "--param", action="append", default=[], metavar="KEY=VALUE", help="template parameter (fresh runtime)"
    )
    invoke.set_defaults(func=_invoke)


def _add_local_up(local_sub: Any) -> None:
    up = local_sub.add_parser(
        "up", help="keep the local runtime running and ingest whatever is dropped into an inbox folder"
    )
    up.add_argument(
        "--inbox", required=True, help="folder to watch: INBOX/<delivery>/... -> incoming/<delivery>/..."
    )
    up.add_argument(
        "--state-file",
        default=str(DEFAULT_STATE_FILE),
        help="where other commands find it (default: %(default)s)",
    )
    up.add_argument(
        "--log-file", help="handlers' JSON logs (default: next to the state file, local-logs.jsonl)"
    )
    up.add_argument(
        "--settle", type=float, default=1.0, help="seconds a file must stay unchanged before upload"
    )
    up.add_argument(
        "--batching-window", type=float, default=5.0, help="cap on the trigger's batching window (s)"
    )
    up.add_argument(
        "--param", action="append", default=[], metavar="KEY=VALUE", help="template parameter override"
    )
    up.set_defaults(func=_local_up)


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
    run.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the executions")
    run.add_argument(
        "--param", action="append", default=[], metavar="KEY=VALUE", help="template parameter override"
    )
    run.set_defaults(func=_local_run)
    _add_local_up(local_sub)

    summary = sub.add_parser("summary", help="print the counts of a finished local run")
    summary.add_argument("out", help="the --out folder of `mmpipe local run`")
    summary.set_defaults(func=_summary)
    _add_ops_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except _operator_errors() as exc:  # evaluated only when something is raised
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _operator_errors() -> tuple[type[Exception], ...]:
    """Errors that mean "wrong name, nothing there, cannot reach it": a message, not a traceback."""
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, NoRegionError

    from mmpipe.invoke import InvalidEventError, UnknownFunctionError
    from mmpipe.local.state_file import LocalStateError
    from mmpipe.redrive import NothingToRedriveError
    from mmpipe.status import RunNotFoundError
    from mmpipe.targets import TargetError

    return (
        LocalStateError,
        TargetError,
        RunNotFoundError,
        NothingToRedriveError,
        UnknownFunctionError,
        InvalidEventError,
        FileNotFoundError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        ClientError,
    )


if __name__ == "__main__":
    sys.exit(main())
