"""The operator commands' arguments and their messages when there is nothing to talk to."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmpipe.cli import main
from mmpipe.invoke import EVENTS, UnknownFunctionError, load_event, resolve_function

FUNCTIONS = ["GenomicImportFunction", "PrepareFunction", "TriggerFunction"]


def test_a_function_is_named_by_logical_id_or_event_name() -> None:
    assert resolve_function("GenomicImportFunction", FUNCTIONS) == "GenomicImportFunction"
    assert resolve_function("genomic_import", FUNCTIONS) == "GenomicImportFunction"
    with pytest.raises(
        UnknownFunctionError, match=r"^unknown function 'genomic-import'; did you mean genomic_import\?$"
    ):
        resolve_function("genomic-import", FUNCTIONS)
    with pytest.raises(UnknownFunctionError, match=r"choose from genomic_import, prepare, trigger"):
        resolve_function("catalog", FUNCTIONS)


def test_the_default_event_is_the_function_s_sample_event(tmp_path: Path) -> None:
    assert json.loads(load_event("GenomicImportFunction", None)) == json.loads(
        (EVENTS / "genomic_import.json").read_text()
    )
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="not JSON"):
        load_event("PrepareFunction", tmp_path / "bad.json")


@pytest.mark.parametrize(
    "command",
    [
        ["status"],
        ["redrive", "--dlq"],
        ["status", "--local", "--stack", "s"],
        ["export", "--run", "r", "--out", "o"],
    ],
)
def test_status_and_redrive_need_exactly_one_target(command: list[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main(command)
    assert raised.value.code == 2


def test_redrive_needs_a_run_or_the_dlq() -> None:
    with pytest.raises(SystemExit):
        main(["redrive", "--local"])


@pytest.mark.parametrize(
    "command",
    [
        ["status", "--local"],
        ["redrive", "--local", "--dlq"],
        ["invoke", "prepare", "--local"],
        ["export", "--local", "--run", "r", "--out", "o"],
    ],
)
def test_without_a_running_local_up_the_commands_say_how_to_start_one(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main([*command, "--state-file", str(tmp_path / "local.json")])

    assert code == 2
    assert "mmpipe local up --inbox" in capsys.readouterr().err
