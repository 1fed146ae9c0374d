"""Every `mmpipe` error is one line on stderr, never a traceback: bad arguments, a reader that goes away
(`mmpipe status --json | head -1`), a mistyped function or event file, and an unexpected exception (one line
and a hint; the traceback with MMPIPE_DEBUG=1)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mmpipe.cli import CLOSED_PIPE, main
from tests.unit.ops.conftest import Pipeline


def _error_of(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """(exit status, stderr) of a command that fails; nothing may reach stdout."""
    try:
        code = main(list(args))
    except SystemExit as exit_:  # argparse's way out
        code = int(exit_.code or 0)
    captured = capsys.readouterr()
    assert captured.out == ""
    return code, captured.err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--patients", "-3"], "error: argument --patients: must be more than 0, not -3"),
        (["--patients", "abc"], "error: argument --patients: 'abc' is not a whole number"),
        (["--modalities", "genomic,proteomic"], "error: argument --modalities: unknown modality proteomic;"),
        (["--seed", "x"], "error: argument --seed: invalid int value: 'x'"),
    ],
)
def test_bad_synth_arguments_are_one_line_and_exit_2(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _error_of(capsys, "synth", "--out", str(tmp_path / "cohort"), *args)

    assert code == 2
    assert err.startswith(message)
    assert err.endswith("(see `mmpipe synth --help`)\n")
    assert err.count("\n") == 1
    assert not (tmp_path / "cohort").exists()


def test_synth_into_a_folder_that_is_not_empty_is_an_operator_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "old.vcf").write_text("")

    code, err = _error_of(capsys, "synth", "--patients", "2", "--out", str(tmp_path))

    assert (code, err) == (2, f"error: {tmp_path} is not empty; generate into a new or empty folder\n")


def test_a_template_parameter_without_a_value_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _error_of(capsys, "invoke", "prepare", "--param", "Stage")

    assert code == 2
    assert err.startswith("error: argument --param: expected KEY=VALUE, not 'Stage'")


def test_a_mistyped_function_gets_the_closest_name_before_any_runtime_starts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, err = _error_of(capsys, "invoke", "GenomicImprotFunction")

    assert (code, err) == (
        2,
        "error: unknown function 'GenomicImprotFunction'; did you mean GenomicImportFunction?\n",
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "error: cannot read event file {path}: No such file or directory"),
        ("{", "error: {path} is not JSON"),
    ],
)
def test_a_missing_or_malformed_event_file_is_named(
    content: str | None, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "event.json"
    if content is not None:
        path.write_text(content)

    code, err = _error_of(capsys, "invoke", "genomic_import", "--event", str(path))

    assert code == 2
    assert err.startswith(message.format(path=path))
    assert err.count("\n") == 1


def test_an_unexpected_exception_is_one_line_with_a_hint_and_its_traceback_on_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "run.json").write_text("not json")  # a run folder someone edited by hand
    monkeypatch.delenv("MMPIPE_DEBUG", raising=False)

    code, err = _error_of(capsys, "summary", str(tmp_path))

    assert code == 1
    assert err == (
        "error: JSONDecodeError: Expecting value: line 1 column 1 (char 0) "
        "(rerun with MMPIPE_DEBUG=1 for the traceback)\n"
    )

    monkeypatch.setenv("MMPIPE_DEBUG", "1")
    code, err = _error_of(capsys, "summary", str(tmp_path))

    assert code == 1
    assert err.startswith("Traceback (most recent call last):")
    assert err.endswith("error: JSONDecodeError: Expecting value: line 1 column 1 (char 0)\n")


class ClosedPipe:
    """A stdout whose reader has gone away (`| head -1` after its line)."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")


def test_status_into_a_closed_pipe_ends_quietly(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline.start("site-a-w1")
    monkeypatch.setattr(sys, "stdout", ClosedPipe())

    code = main(["status", *pipeline.local, "--run", "site-a", "--json"])

    assert code == CLOSED_PIPE
    assert capsys.readouterr().err == ""


def test_a_reader_that_went_away_gets_no_traceback_from_the_process(pipeline: Pipeline) -> None:
    pipeline.start("site-a-w1")
    # `mmpipe status --json | head -1`, with the reader gone before mmpipe writes: the write fails (EPIPE).
    process = subprocess.Popen(
        [sys.executable, "-m", "mmpipe.cli", "status", *pipeline.local, "--run", "site-a", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    process.stdout.close()
    _, err = process.communicate(timeout=30)

    assert (process.returncode, err.decode()) == (CLOSED_PIPE, "")
