"""`mmpipe status --run NAME` with a delivery name: its waves (and their restarts), older run ids, a name
that matches nothing, and the exit status an on-call script reads.

Executions run on moto's Step Functions interpreter (see conftest.py); the CLI finds them through the state
file, as on a running `mmpipe local up`.
"""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.stub import Stubber

from mmhealth.naming import run_name
from mmpipe.cli import main
from mmpipe.status import describe
from tests.unit.ops.conftest import FAILING_CAUSE, Pipeline

DELIVERY = "2026-12-04 cohort"  # not a safe execution name: its runs are named after its slug


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def waves(pipeline: Pipeline) -> Pipeline:
    """DELIVERY in three waves: w1 succeeded; w2 failed and its restart w2-r1 succeeded; w3 still running.
    site-b: w1 succeeded, w2 failed. site-c: a run from before waves (`<delivery>-<20 hex>`)."""
    w1, w2, w3 = (run_name(DELIVERY, n) for n in (1, 2, 3))
    pipeline.start(w1)
    pipeline.start(w2, "fail")
    pipeline.start(f"{w2}-r1", run_id=w2)
    pipeline.start(w3, "hold")
    pipeline.start("site-b-w1")
    pipeline.start("site-b-w2", "fail")
    pipeline.start("site-c-0123456789abcdef0123")
    pipeline.put_json(f"runs/{w1}/manifest.json", {"deliveries": [DELIVERY], "chunks": [], "unknown": []})
    return pipeline


def test_a_delivery_name_shows_each_wave_newest_first_with_its_restarts(
    waves: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _cli(capsys, "status", *waves.local, "--run", DELIVERY, "--json")

    doc = json.loads(out)
    assert doc["delivery"] == DELIVERY
    runs = [(r["run_id"], r["wave"], r["execution"]["status"]) for r in doc["runs"]]
    assert runs == [
        (run_name(DELIVERY, 3), 3, "RUNNING"),
        (run_name(DELIVERY, 2), 2, "SUCCEEDED"),
        (run_name(DELIVERY, 1), 1, "SUCCEEDED"),
    ]
    # The restart is the attempt that counts; the failed first execution is listed before it.
    wave_2 = doc["runs"][1]
    assert wave_2["execution"]["execution"] == f"{run_name(DELIVERY, 2)}-r1"
    assert [(a["execution"], a["status"]) for a in wave_2["attempts"]] == [(run_name(DELIVERY, 2), "FAILED")]
    assert doc["runs"][0]["open_states"] == {"WaitForGenomicImport": 1}
    assert doc["runs"][2]["deliveries"] == [DELIVERY]
    assert code == 0  # restarted into success, or still running: nothing to act on


def test_the_text_lists_the_waves_then_the_newest_in_detail(
    waves: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _cli(capsys, "status", *waves.local, "--run", f"incoming/{DELIVERY}/")

    lines = out.splitlines()
    assert lines[0] == f"delivery {DELIVERY}: 3 run(s), 1 running, 2 succeeded; newest first:"
    assert [line.split()[:2] for line in lines[2:5]] == [
        ["w3", "RUNNING"],
        ["w2", "SUCCEEDED"],
        ["w1", "SUCCEEDED"],
    ]
    assert lines[3].endswith(f"{run_name(DELIVERY, 2)} (restarted 1x)")
    assert f"run {run_name(DELIVERY, 3)} (wave 3): RUNNING" in out
    assert "now in      WaitForGenomicImport" in out
    assert code == 0


def test_a_failed_wave_makes_the_delivery_exit_1_and_is_named_with_its_failing_state(
    waves: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _cli(capsys, "status", *waves.local, "--run", "site-b")

    assert code == 1
    assert err == ""
    assert "w2    FAILED" in out
    assert f"failing state ModalityFailed: ModalityFailed: {FAILING_CAUSE}" in out


@pytest.mark.parametrize(
    ("run", "expected"),
    [("site-b-w1", 0), ("site-b-w2", 1), (run_name(DELIVERY, 2), 0), (run_name(DELIVERY, 3), 0)],
)
def test_one_run_exits_1_only_when_its_newest_attempt_failed(
    waves: Pipeline, capsys: pytest.CaptureFixture[str], run: str, expected: int
) -> None:
    code, out, _ = _cli(capsys, "status", *waves.local, "--run", run, "--json")

    assert json.loads(out)["run_id"] == run
    assert code == expected


def test_a_run_id_from_before_waves_is_found_by_name_and_by_its_delivery(
    waves: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    _, by_name, _ = _cli(capsys, "status", *waves.local, "--run", "site-c-0123456789abcdef0123", "--json")
    code, by_delivery, _ = _cli(capsys, "status", *waves.local, "--run", "site-c", "--json")

    assert json.loads(by_name)["wave"] is None
    [run] = json.loads(by_delivery)["runs"]
    assert run["run_id"] == "site-c-0123456789abcdef0123"
    assert code == 0


def test_a_name_that_matches_nothing_is_one_line_with_the_closest_names(
    waves: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _cli(capsys, "status", *waves.local, "--run", "site-bb")

    assert (code, out) == (2, "")
    assert err.count("\n") == 1
    assert err.startswith("error: no run or delivery 'site-bb' on local runtime")
    assert "; did you mean site-b" in err

    code, _, err = _cli(capsys, "status", *waves.local, "--run", "zzzz")
    assert code == 2
    assert err.rstrip().endswith("`mmpipe status` lists the recent executions")


def test_redrive_of_a_delivery_names_its_failed_runs_instead(
    waves: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _cli(capsys, "redrive", *waves.local, "--run", "site-b", "--dry-run")

    assert code == 2
    assert err == "error: site-b is a delivery; re-drive one of its runs: site-b-w2\n"


def test_a_delivery_name_step_functions_rejects_in_an_arn_is_looked_up_as_a_delivery() -> None:
    # AWS answers InvalidArn (moto: ExecutionDoesNotExist) for `...:execution:<sm>:2026-12-04 cohort`.
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    arn = f"arn:aws:states:us-east-1:123456789012:execution:pipeline:{DELIVERY}"
    with Stubber(sfn) as stub:
        stub.add_client_error(
            "describe_execution", service_error_code="InvalidArn", expected_params={"executionArn": arn}
        )
        assert describe(sfn, arn) is None
