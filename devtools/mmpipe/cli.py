"""The `mmpipe` command: synthesise a cohort, run the pipeline locally, summarise a run; operate the pipeline
(status, redrive, export) in AWS or on the local runtime; invoke one function locally; keep a local runtime
up."""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from mmpipe.local.state_file import DEFAULT_STATE_FILE

USAGE_ERROR = 2  # a wrong name or argument, nothing there, cannot reach it: the operator's to fix
FAILURE = 1  # the run failed, or mmpipe did
# What a shell reports for a command killed by SIGPIPE (128 + 13), as `yes | head -1` ends.
CLOSED_PIPE = 141


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (`error: ...`) instead of the usage block and the message."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"error: {message} (see `{self.prog} --help`)\n")


def _positive(cast: type[int] | type[float]) -> Callable[[str], int | float]:
    """An argparse type: a number above zero (`--patients -3` is an operator's typo, not a cohort)."""
    kind = "whole number" if cast is int else "number"

    def parse(text: str) -> int | float:
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
        return value

    return parse


def _key_value(text: str) -> tuple[str, str]:
    key, equals, value = text.partition("=")
    if not (key and equals):
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, not {text!r}")
    return key, value


def _modalities(text: str) -> set[str]:
    from mmpipe.synth.generate import MODALITIES

    requested = {m.strip() for m in text.split(",") if m.strip()}
    unknown = sorted(requested - MODALITIES)
    if unknown or not requested:
        raise argparse.ArgumentTypeError(
            f"unknown modality {', '.join(unknown) or '(none given)'}; choose from {','.join(sorted(MODALITIES))}"
        )
    return requested


def _synth(args: argparse.Namespace) -> int:
    from mmpipe.synth import generate_cohort

    summary = generate_cohort(
        Path(args.out), patients=args.patients, seed=args.seed, modalities=args.modalities
    )
    print(json.dumps(summary, indent=2, default=str))
    return 0


def _local_run(args: argparse.Namespace) -> int:
    from mmpipe.local_run import run

    return run(Path(args.input), Path(args.out), args.delivery, args.timeout, dict(args.param))


def _summary(args: argparse.Namespace) -> int:
    from mmpipe.summary import print_summary

    return print_summary(Path(args.out))


def _target(args: argparse.Namespace) -> Any:
    from mmpipe.targets import local_target, stack_target

    if args.local:
        return local_target(Path(args.state_file))
    return stack_target(args.stack, args.region)


def _show(args: argparse.Namespace, document: Any, render: Callable[[Any], str]) -> None:
    """The document as JSON with --json, else as `render` writes it for a person."""
    print(json.dumps(document, indent=2, default=str) if args.json else render(document))


def _status(args: argparse.Namespace) -> int:
    from mmpipe import status

    target = _target(args)
    if args.run:
        document = status.status_of(target, args.run, quarantine_limit=args.quarantine_limit)
        _show(args, document, status.render)
        return status.exit_code(document)
    rows = status.recent_executions(target, limit=args.limit)
    listing = {"target": target.description, "executions": rows}
    _show(args, listing, lambda doc: status.render_executions(doc["executions"], doc["target"]))
    return 0


def _redrive(args: argparse.Namespace) -> int:
    from mmpipe import redrive

    target = _target(args)
    if args.dlq:
        result = redrive.redrive_dlq(target, dry_run=args.dry_run)
    else:
        result = redrive.redrive_run(target, args.run, dry_run=args.dry_run, restart=args.restart)
    _show(args, result, redrive.render)
    return 0 if result.get("failed", 0) == 0 else FAILURE


def _export(args: argparse.Namespace) -> int:
    from mmpipe.export import export_run, render

    result = export_run(_target(args), args.run, Path(args.out))
    _show(args, result, render)
    return 0


def _invoke(args: argparse.Namespace) -> int:
    from mmpipe import invoke

    event = Path(args.event) if args.event else None
    if args.local:
        result = invoke.invoke_attached(Path(args.state_file), args.function, event)
    else:
        result = invoke.invoke_fresh(args.function, event, dict(args.param))
    return invoke.print_result(result)


def _local_up(args: argparse.Namespace) -> int:
    from mmpipe.local_up import serve

    return serve(
        Path(args.inbox),
        Path(args.state_file),
        parameters=dict(args.param),
        log_file=Path(args.log_file) if args.log_file else None,
        **({"settle": args.settle} if args.settle is not None else {}),
        batching_window=args.batching_window,
        verbose=args.verbose,
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
        epilog="Exit status with --run: 0 when the run (every run of a delivery) succeeded or is still running; "
        "1 when one failed, timed out or was aborted (its newest attempt counts); 2 when nothing has that "
        "name or the target cannot be read.",
    )
    _add_target_arguments(status)
    status.add_argument(
        "--run",
        help="a run id, execution name or ARN: that run in detail; or a delivery name (the folder under "
        "incoming/): each of its runs (one per wave), the newest in detail",
    )
    status.add_argument("--limit", type=_positive(int), default=20, help="how many recent executions to list")
    status.add_argument(
        "--quarantine-limit", type=_positive(int), default=100, help="quarantine records to read for --run"
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

    export = sub.add_parser(
        "export",
        help="write a run's summary, manifest, quarantine, training report and tables to a folder",
        epilog="Writes summary.json, manifest.json, quarantine.jsonl; when the run trained: report.html, "
        "metrics.json, leaderboard.csv, feature_importance.csv, predictions.parquet, model_card.json; "
        "tables/: every features.* table, the run's ops.quarantine rows, the training dataset snapshot. "
        "The folder holds patient-level data.",
    )
    _add_target_arguments(export)
    export.add_argument(
        "--run", required=True, help="a run id, execution name or ARN, or a delivery name (its newest run)"
    )
    export.add_argument("--out", required=True, help="folder to write into (created; files are overwritten)")
    export.add_argument("--json", action="store_true", help="machine-readable output")
    export.set_defaults(func=_export)

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
    _add_param_argument(invoke, help="template parameter (fresh runtime)")
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
        "--settle",
        type=float,
        help="seconds a file must stay unchanged (and closed) before upload (default: 5)",
    )
    up.add_argument(
        "-v", "--verbose", action="store_true", help="a line per uploaded file too (default: per delivery)"
    )
    up.add_argument(
        "--batching-window", type=float, default=5.0, help="cap on the trigger's batching window (s)"
    )
    _add_param_argument(up)
    up.set_defaults(func=_local_up)


def _add_param_argument(parser: argparse.ArgumentParser, help: str = "template parameter override") -> None:
    parser.add_argument(
        "--param", action="append", default=[], type=_key_value, metavar="KEY=VALUE", help=help
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mmpipe", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    synth = sub.add_parser(
        "synth", help="write a synthetic, coherent multimodal cohort (deterministic per seed)"
    )
    synth.add_argument("--patients", type=_positive(int), default=200)
    synth.add_argument("--seed", type=int, default=7)
    synth.add_argument(
        "--out", required=True, help="folder to write the delivery into (truth in OUT/.truth/)"
    )
    synth.add_argument(
        "--modalities", type=_modalities, default="genomic,clinical,imaging", help="comma-separated subset"
    )
    synth.set_defaults(func=_synth)

    local = sub.add_parser("local", help="the Docker-free local runtime")
    local_sub = local.add_subparsers(dest="local_command", required=True)
    run = local_sub.add_parser("run", help="upload a folder as one delivery and wait for the pipeline")
    run.add_argument(
        "--input", required=True, help="folder to deliver (hidden files and folders are skipped)"
    )
    run.add_argument("--out", required=True, help="where run.json, tables/, quarantine.jsonl and logs go")
    run.add_argument("--delivery", help="delivery name (default: delivery-<UTC timestamp>)")
    run.add_argument(
        "--timeout", type=_positive(float), default=3600, help="seconds to wait for the executions"
    )
    _add_param_argument(run)
    run.set_defaults(func=_local_run)
    _add_local_up(local_sub)

    summary = sub.add_parser("summary", help="print the counts of a finished local run")
    summary.add_argument("out", help="the --out folder of `mmpipe local run`")
    summary.set_defaults(func=_summary)
    _add_ops_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command. Every error is one line on stderr (`MMPIPE_DEBUG=1` adds the traceback of an
    unexpected one); exit 2 for the operator's errors, 1 for failures, 141 when stdout's reader went away."""
    try:
        args = build_parser().parse_args(argv)  # --help writes to stdout too
        code = int(args.func(args))
        sys.stdout.flush()  # a reader that has gone away shows here, not in the interpreter's final flush
        return code
    except BrokenPipeError:
        _discard_stdout()
        return CLOSED_PIPE
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except Exception as exc:
        if _is_operator_error(exc):
            _error(str(exc))
            return USAGE_ERROR
        debug = bool(os.environ.get("MMPIPE_DEBUG"))
        if debug:
            traceback.print_exc()
        hint = "" if debug else " (rerun with MMPIPE_DEBUG=1 for the traceback)"
        _error(f"{type(exc).__name__}: {exc}{hint}")
        return FAILURE


def _error(message: str) -> None:
    print("error: " + " ".join(message.split()), file=sys.stderr)


def _discard_stdout() -> None:
    """Like `head`'s writer, end quietly: what is still buffered goes to /dev/null, not to a second error."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout is not a file (a test's stand-in)
        pass


def _is_operator_error(exc: Exception) -> bool:
    try:
        return isinstance(exc, _operator_errors())
    except ImportError:  # a broken install: the exception is reported as unexpected, still on one line
        return False


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
        FileExistsError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        ClientError,
    )


if __name__ == "__main__":
    sys.exit(main())
