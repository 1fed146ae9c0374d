"""The operator commands on the local runtime: status, redrive, invoke and local up, as on-call uses them.

A runtime in this process (real template, state machine and handlers; failures injected by handler
overrides) is published with a state file and a Lambda endpoint, exactly as `mmpipe local up` publishes
itself, so `mmpipe status --local` / `redrive --local` read it through the public AWS APIs only, and
`mmpipe invoke --local` reaches it from another process. The last tests run `mmpipe local up` itself.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mmpipe.cli import main
from mmpipe.local import LambdaContext, LocalRuntime
from mmpipe.local.lambda_endpoint import LambdaEndpoint
from mmpipe.local.state_file import read_state, write_state
from mmpipe.local_up import local_state
from tests.conftest import REPO

pytestmark = pytest.mark.integration

DATA = REPO / "tests" / "data" / "delivery"
# The local defaults (a genomic-only delivery trains nothing anyway).
PARAMETERS: dict[str, str | int | float] = {}


@pytest.fixture(scope="module")
def handler_logs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The handlers' JSON logs go to a file and metrics are off, as with `mmpipe local up`: stdout is the
    commands' output."""
    from mmhealth.observability import logger as powertools_logger

    metrics_disabled = os.environ.get("POWERTOOLS_METRICS_DISABLED")
    os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"

    path = tmp_path_factory.mktemp("logs") / "logs.jsonl"
    target = logging.getLogger(powertools_logger.service)
    saved = (list(target.handlers), target.propagate)
    handler = logging.FileHandler(path)
    handler.setFormatter(powertools_logger.registered_formatter)
    for existing in saved[0]:
        target.removeHandler(existing)
    target.addHandler(handler)
    target.propagate = False
    yield path
    target.removeHandler(handler)
    handler.close()
    for existing in saved[0]:
        target.addHandler(existing)
    target.propagate = saved[1]
    if metrics_disabled is None:
        os.environ.pop("POWERTOOLS_METRICS_DISABLED", None)
    else:
        os.environ["POWERTOOLS_METRICS_DISABLED"] = metrics_disabled


@pytest.fixture(scope="module")
def runtime(handler_logs: Path) -> Iterator[LocalRuntime]:
    with LocalRuntime(
        parameters=PARAMETERS,
        max_batching_window=0.5,
        failure_visibility_timeout=0,  # the DLQ test takes 5 failed deliveries
    ) as local:
        local.drain(timeout=30)  # the s3:TestEvent of the bucket notification
        yield local


@pytest.fixture(scope="module")
def state_file(runtime: LocalRuntime, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """What `mmpipe local up` writes, for this process's runtime."""
    folder = tmp_path_factory.mktemp("state")
    endpoint = LambdaEndpoint(runtime.client("lambda"), runtime.is_local_function).start()
    path = folder / "local.json"
    write_state(path, local_state(runtime, endpoint.url, folder / "inbox", folder / "logs.jsonl"))
    yield path
    endpoint.stop()


def _deliver(runtime: LocalRuntime, delivery: str, files: list[Path], *, complete: bool = True) -> None:
    with runtime.events_held():
        for path in files:
            runtime.upload(path, f"incoming/{delivery}/{path.relative_to(DATA).as_posix()}")
        if complete:
            runtime.complete(delivery)


def _genomic_files() -> list[Path]:
    return [*sorted((DATA / "genomic").glob("*.vcf")), DATA / "notes.txt"]


def _wait_for_run(runtime: LocalRuntime, prefix: str, timeout: float = 120) -> dict[str, Any]:
    runtime.drain(timeout=60)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        mine = [e for e in runtime.executions() if e["name"].startswith(prefix)]
        if mine and all(e["status"] != "RUNNING" for e in mine):
            [execution] = mine
            return execution
        time.sleep(0.3)
    raise TimeoutError(f"no finished execution {prefix}*")


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()  # what came before is not this command's output
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _cli_json(capsys: pytest.CaptureFixture[str], *args: str, expect: int = 0) -> Any:
    code, out, err = _cli(capsys, *args, "--json")
    assert code == expect, err
    return json.loads(out)


# --- status and redrive of a failed run ----------------------------------------------------------------


@pytest.fixture(scope="module")
def failed_run(runtime: LocalRuntime) -> str:
    """A genomic delivery (two VCFs, the ClinVar-style VCF, a stray text file) whose catalog step fails."""

    def broken_catalog(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        raise RuntimeError("catalog store unreachable")

    with runtime.override_handlers({"GenomicCatalogFunction": broken_catalog}):
        _deliver(runtime, "ops-fail", _genomic_files())
        execution = _wait_for_run(runtime, "ops-fail")
    assert execution["status"] == "FAILED"
    return str(execution["name"])


def test_status_of_a_failed_run_names_the_failing_state_cause_and_quarantined_files(
    failed_run: str, state_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = _cli_json(
        capsys, "status", "--local", "--state-file", str(state_file), "--run", failed_run, expect=1
    )

    assert doc["run_id"] == failed_run
    assert doc["execution"]["status"] == "FAILED"
    failing = doc["failing_state"]
    assert (failing["state"], failing["error"]) == ("CatalogGenomic", "RuntimeError")
    assert failing["cause"] == "RuntimeError: catalog store unreachable"
    assert failing["caught_by"] == "GenomicFailed"
    assert doc["execution_failure"]["state"] == "ModalityFailed"
    genomic = doc["modalities"]["genomic"]
    assert (genomic["status"], genomic["files"], genomic["chunks_done"]) == ("failed", 3, 1)
    assert genomic["cause"] == "RuntimeError: catalog store unreachable"
    assert doc["deliveries"] == ["ops-fail"]
    assert doc["unknown_files"] == 1
    [record] = doc["quarantine"]
    assert record == {
        "key": "incoming/ops-fail/notes.txt",
        "modality": "unknown",
        "stage": "classify",
        "reason": "unrecognised-type",
        "line": None,
    }
    assert doc["training"] is not None

    code, text, _ = _cli(capsys, "status", "--local", "--state-file", str(state_file), "--run", failed_run)
    assert code == 1  # a failed run: scripts and on-call tooling can tell
    assert "failing state: CatalogGenomic: RuntimeError: catalog store unreachable" in text
    assert "unrecognised-type" in text
    notes = (DATA / "notes.txt").read_text().strip()
    assert notes not in text  # reasons, never contents


def test_status_lists_recent_executions(
    failed_run: str, state_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    listing = _cli_json(capsys, "status", "--local", "--state-file", str(state_file))
    [row] = [r for r in listing["executions"] if r["execution"] == failed_run]
    assert (row["status"], row["error"]) == ("FAILED", "ModalityFailed")
    # Finalize's cause: "<modality>: <error>: <short cause>" per failed branch.
    assert row["cause"].startswith("genomic: RuntimeError: ")
    assert row["cause"].endswith("catalog store unreachable")

    code, text, _ = _cli(capsys, "status", "--local", "--state-file", str(state_file))
    assert code == 0
    assert "FAILED" in text
    assert failed_run in text


@pytest.mark.filterwarnings("ignore:Tried to parse:UserWarning")  # moto listing the stack's resources
def test_with_stack_the_commands_find_the_pipeline_from_the_cloudformation_stack(
    runtime: LocalRuntime, failed_run: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # The runtime's stack lives in moto's CloudFormation, and this process's environment points the SDK
    # at moto (AWS_ENDPOINT_URL), as a shell's would point it at an AWS account.
    assert os.environ["AWS_ENDPOINT_URL"] == runtime.endpoint_url

    listing = _cli_json(capsys, "status", "--stack", runtime.stack_name)
    plan = _cli_json(capsys, "redrive", "--stack", runtime.stack_name, "--dlq", "--dry-run")

    assert listing["target"] == f"stack {runtime.stack_name} in us-east-1"
    assert failed_run in [row["execution"] for row in listing["executions"]]
    assert (plan["from"], plan["to"]) == (
        runtime.outputs["IngestDeadLetterQueueUrl"],
        runtime.physical_ids["IngestQueue"],
    )
    code, _, err = _cli(capsys, "status", "--stack", "no-such-stack")
    assert code == 2
    assert "cannot read stack no-such-stack" in err


def test_redrive_of_a_failed_run_starts_it_again_with_the_same_input_and_the_run_succeeds(
    runtime: LocalRuntime, failed_run: str, state_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sf = str(state_file)
    before = len(runtime.executions())
    plan = _cli_json(capsys, "redrive", "--local", "--state-file", sf, "--run", failed_run, "--dry-run")
    assert plan["dry_run"] is True
    assert f"{failed_run}-r1" in plan["plan"]
    assert len(runtime.executions()) == before  # a dry run changes nothing

    result = _cli_json(capsys, "redrive", "--local", "--state-file", sf, "--run", failed_run)

    # moto has no RedriveExecution: a new execution with the same input, named after the run.
    assert result["method"] == "StartExecution"
    assert result["fallback_reason"] == "the endpoint does not implement RedriveExecution"
    assert result["new_execution"] == f"{failed_run}-r1"
    restarted = runtime.wait_for_execution(result["new_execution_arn"], timeout=120)
    assert restarted["status"] == "SUCCEEDED", restarted.get("cause")
    assert json.loads(restarted["input"]) == json.loads(
        runtime.client("stepfunctions").describe_execution(executionArn=result["execution_arn"])["input"]
    )
    doc = _cli_json(capsys, "status", "--local", "--state-file", sf, "--run", failed_run)
    assert doc["run_id"] == failed_run
    assert doc["execution"]["execution"] == f"{failed_run}-r1"
    assert [a["status"] for a in doc["attempts"]] == ["FAILED"]
    assert doc["failing_state"] is None
    genomic = doc["modalities"]["genomic"]
    assert genomic["status"] == "ingested"
    assert genomic["tables"]["genomic.variants"] > 0
    assert doc["quarantined"] == 1  # the stray file, recorded once although two executions ran

    code, _, err = _cli(capsys, "redrive", "--local", "--state-file", sf, "--run", failed_run)
    assert code == 2
    assert "SUCCEEDED" in err  # nothing to re-drive any more


# --- the dead-letter queue -------------------------------------------------------------------------------


def test_redrive_dlq_sends_dead_letters_back_and_the_trigger_ingests_them(
    runtime: LocalRuntime, state_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken_trigger(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        raise RuntimeError("ledger table unreachable")

    with runtime.override_handlers({"TriggerFunction": broken_trigger}):
        _deliver(runtime, "ops-dlq", [DATA / "genomic" / "pt-0002.vcf"], complete=False)  # quiet period
        runtime.drain(timeout=60)  # five failed receives: the message is in the DLQ
    sf = str(state_file)
    plan = _cli_json(capsys, "redrive", "--local", "--state-file", sf, "--dlq", "--dry-run")
    assert (plan["messages"], plan["dry_run"]) == (1, True)

    result = _cli_json(capsys, "redrive", "--local", "--state-file", sf, "--dlq")

    assert result["method"] == "ReceiveMessage/SendMessage/DeleteMessage"
    assert (result["moved"], result["failed"]) == (1, 0)
    execution = _wait_for_run(runtime, "ops-dlq")
    assert execution["status"] == "SUCCEEDED"
    assert _cli_json(capsys, "redrive", "--local", "--state-file", sf, "--dlq", "--dry-run")["messages"] == 0


# --- invoke, from another process ------------------------------------------------------------------------


def _mmpipe(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return subprocess.run(
        [sys.executable, "-m", "mmpipe.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_invoke_local_runs_the_handler_in_the_runtime_from_another_process(
    failed_run: str, state_file: Path, tmp_path: Path
) -> None:
    event = tmp_path / "prepare.json"
    event.write_text(json.dumps({"run_id": failed_run, "delivery": "ops-fail", "wave": 1}))

    ok = _mmpipe("invoke", "prepare", "--local", "--state-file", str(state_file), "--event", str(event))
    # The sample event names a run this runtime never saw: Prepare fails as it would in Lambda.
    failed = _mmpipe("invoke", "PrepareFunction", "--local", "--state-file", str(state_file))
    unknown = _mmpipe("invoke", "no_such", "--local", "--state-file", str(state_file))

    assert ok.returncode == 0, ok.stderr
    prepared = json.loads(ok.stdout)
    assert (prepared["run_id"], prepared["genomic"]["files"], prepared["unknown"]) == (failed_run, 3, 1)
    assert failed.returncode == 1
    assert json.loads(failed.stdout)["errorType"] == "ManifestError"
    assert "PrepareFunction failed (Unhandled): ManifestError" in failed.stderr
    assert unknown.returncode == 2
    assert "genomic_import" in unknown.stderr


def test_the_lambda_endpoint_refuses_functions_that_are_not_the_runtime_s(state_file: Path) -> None:
    import urllib.error
    import urllib.request

    url = read_state(state_file).lambda_endpoint_url + "/2015-03-31/functions/somebody-else/invocations"
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(urllib.request.Request(url, data=b"{}", method="POST"), timeout=10)
    assert raised.value.code == 404
    assert raised.value.headers["x-amzn-ErrorType"] == "ResourceNotFoundException"


@pytest.mark.slow
def test_invoke_without_local_up_starts_a_runtime_for_the_call() -> None:
    finalize = _mmpipe("invoke", "FinalizeFunction")  # events/finalize.json

    assert finalize.returncode == 0, finalize.stderr
    summary = json.loads(finalize.stdout)  # stdout is the response only; the handler's logs go to stderr
    sample = json.loads((REPO / "events" / "finalize.json").read_text())
    assert (summary["run_id"], summary["unknown_files"]) == (sample["run_id"], sample["unknown"])
    assert '"function_name"' in finalize.stderr


# --- mmpipe local up -------------------------------------------------------------------------------------


class Lines:
    """The output lines of a process, read in a thread."""

    def __init__(self, stream: Any) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, predicate: Callable[[str], bool], timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if predicate(line):
                    return line
            time.sleep(0.2)
        raise TimeoutError(f"no such line after {timeout} s; got: {self.lines}")

    def matching(self, text: str) -> list[str]:
        return [line for line in self.lines if text in line]

    def join(self) -> None:
        self._thread.join(timeout=10)


def _finished_runs(out: Lines) -> list[str]:
    """The console's line for each finished run: `<delivery>-w<n> SUCCEEDED in 12 s: ...`."""
    return [line for line in out.lines if re.match(r"\S+-w\d+ [A-Z_]+ in ", line.split("] ", 1)[-1])]


@pytest.mark.slow
def test_local_up_ingests_the_inbox_and_answers_status_from_another_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inbox, state_file = tmp_path / "inbox", tmp_path / "state" / "local.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    command = ["local", "up", "--inbox", str(inbox), "--state-file", str(state_file), "--settle", "0.5", "-v"]
    process = subprocess.Popen(
        [sys.executable, "-m", "mmpipe.cli", *command],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    out = Lines(process.stdout)
    try:
        out.wait_for(lambda line: "local runtime up at" in line, timeout=120)
        state = read_state(state_file)
        assert state.pid == process.pid
        landing = f"s3://{state.landing_bucket}/incoming"

        # Given a delivery folder moved into the inbox at once
        staged = tmp_path / "staged" / "site-b"
        shutil.copytree(DATA / "genomic", staged / "genomic")
        shutil.copy(DATA / "notes.txt", staged / "notes.txt")
        staged.rename(inbox / "site-b")
        # Then it is uploaded under its delivery and one run ingests it
        out.wait_for(lambda line: bool(_finished_runs(out)), timeout=120)
        [finished] = _finished_runs(out)
        assert "SUCCEEDED" in finished, out.lines
        assert "1 quarantined" in finished
        assert out.matching("] site-b: 4 files uploaded")  # one line per delivery
        assert out.matching("] site-b-w1: waiting for the delivery to complete")  # its run's phases
        assert {line.split(" -> ")[-1] for line in out.matching(" -> s3://")} == {
            f"{landing}/site-b/genomic/{p.name}" for p in (DATA / "genomic").glob("*.vcf")
        } | {f"{landing}/site-b/notes.txt"}
        # And `mmpipe status --local` (this process) reads it from the runtime of `local up`
        [row] = _cli_json(capsys, "status", "--local", "--state-file", str(state_file))["executions"]
        assert row["status"] == "SUCCEEDED"
        run = _cli_json(capsys, "status", "--local", "--state-file", str(state_file), "--run", row["run_id"])
        assert run["modalities"]["genomic"]["status"] == "ingested"
        assert [r["reason"] for r in run["quarantine"]] == ["unrecognised-type"]

        # Given a file dropped directly into the inbox: a delivery of the day
        shutil.copy(DATA / "genomic" / "pt-0002.vcf", inbox / "loose.vcf")
        out.wait_for(lambda line: len(_finished_runs(out)) == 2, timeout=120)
        today = datetime.now(UTC).strftime("%Y-%m-%d")
        assert out.matching(f"-> {landing}/inbox-{today}/loose.vcf")
        assert "SUCCEEDED" in _finished_runs(out)[1], out.lines

        uploads = len(out.matching(" -> s3://"))
        time.sleep(1.5)  # several scans: nothing is uploaded twice
        assert len(out.matching(" -> s3://")) == uploads == 5
        assert not [line for line in out.lines if "Traceback" in line], out.lines  # moto's go to the log
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
        out.join()
    assert code == 0, out.lines
    assert any(line.endswith("stopped") for line in out.lines)
    assert not state_file.exists()
