"""`LocalRuntime`: template.yaml, the state machine and the handlers on one laptop, no AWS, no Docker.

    from mmpipe.local import LocalRuntime

    with LocalRuntime(parameters={"PollSeconds": 1}) as runtime:
        runtime.upload(Path("sample.vcf.gz"), "incoming/delivery-1/sample.vcf.gz")
        runtime.drain()                                  # the trigger has consumed the S3 events
        [execution] = runtime.wait_for_executions(count=1)
        print(execution["status"], runtime.invocations)

Start-up: moto's server (once per process), the stack from template.yaml (SAM transform + moto's
CloudFormation + `reconcile`), the in-process Lambda invoker, the SQS event-source pollers. Shut-down
stops the pollers and running executions, ends running jobs (`LocalJobs.close()`: their process groups,
folders and registry entries), resets moto and restores `os.environ`. One runtime at a time
per process (moto's state and `os.environ` are process-global).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import boto3

from mmhealth.classify import MARKER_NAME
from mmpipe.local.aws import AwsClients
from mmpipe.local.event_sources import BatchOutcome, SqsEventSource, SqsPoller, take_over_sqs_mappings
from mmpipe.local.glue_locking import register_glue_locking_hook
from mmpipe.local.inbox import TopicInbox
from mmpipe.local.invoker import (
    FunctionSpec,
    Handler,
    InvocationRecord,
    LambdaInvoker,
    load_function_specs,
    register_invoke_hook,
)
from mmpipe.local.jobs import LocalJobs, register_job_hooks
from mmpipe.local.process_env import ProcessEnvironment, merge_function_environments, sdk_variables
from mmpipe.local.reconcile import LOCALLY_CREATED_TYPES, NOT_NEEDED_LOCALLY, RESOLVED_TYPES, reconcile
from mmpipe.local.server import MotoServer, process_server
from mmpipe.local.stack import LocalStack, deploy_stack

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_TEMPLATE = REPO_ROOT / "template.yaml"
# Local defaults: short poll waits, a short quiet period closing a delivery without a completion marker,
# and small training fits. Anything here can be overridden with `parameters=`.
LOCAL_PARAMETERS: dict[str, str | int | float] = {
    "Stage": "dev",
    "PollSeconds": 1,
    # Polls are free locally: a job that ends is noticed within 5 s (not after a 90 s backed-off wait).
    "PollMaxSeconds": 5,
    "PollMaxAttempts": 500,
    "DeliveryQuietSeconds": 10,
    "TrainingTimeLimit": 20,
    # LightGBM + logistic regression: on the 1,000-patient demo the same test AUCs as medium_quality's zoo
    # (within 0.02 for every outcome, controls at chance) in a third of the job's time (96 s vs 281 s),
    # measured 2026-12-04 (docs/benchmarks.md, "Model zoo locally"). TrainingHyperparameters="" brings the
    # presets' zoo back.
    "TrainingHyperparameters": '{"GBM": {}, "LR": {}}',
}

_TERMINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}
_running: LocalRuntime | None = None
_running_lock = threading.Lock()


class LocalRuntime:
    """The local runtime; a context manager (or `start()` / `stop()`).

    Arguments: `template_path` (default: the repository's template.yaml); `parameters` override the
    template's defaults and `LOCAL_PARAMETERS`; `handler_overrides` (logical id -> callable(event,
    context)) replace handlers, e.g. to inject failures; `max_batching_window` caps the event sources'
    MaximumBatchingWindowInSeconds; `failure_visibility_timeout` shortens the visibility of messages
    the trigger failed on (None: the queue's timeout, as in the cloud); `enforce_timeouts` reports
    handlers that overran their Timeout as `Sandbox.Timedout`.

    Failure modes: `start()` raises TemplateError/StackError (template or stack problems),
    EnvironmentConflictError (two functions disagree on a variable), RuntimeError if another runtime is
    running in the process; it cleans up after itself before raising.
    """

    def __init__(
        self,
        template_path: Path = DEFAULT_TEMPLATE,
        *,
        parameters: Mapping[str, str | int | float] | None = None,
        handler_overrides: Mapping[str, Handler] | None = None,
        stack_name: str = "mmpipe-local",
        max_batching_window: float = 1.0,
        failure_visibility_timeout: int | None = 1,
        enforce_timeouts: bool = False,
        server: MotoServer | None = None,
        job_workers: int = 2,
    ) -> None:
        self.template_path = Path(template_path)
        self.parameters = {**LOCAL_PARAMETERS, **(parameters or {})}
        self.stack_name = stack_name
        self._overrides = dict(handler_overrides or {})
        self._max_batching_window = max_batching_window
        self._failure_visibility_timeout = failure_visibility_timeout
        self._enforce_timeouts = enforce_timeouts
        self._server = server
        self._env = ProcessEnvironment()
        self._clients: AwsClients | None = None
        self._stack: LocalStack | None = None
        self._invoker: LambdaInvoker | None = None
        self._jobs: LocalJobs | None = None
        self._job_workers = job_workers
        self._pollers: list[SqsPoller] = []
        self._inboxes: list[TopicInbox] = []
        self._batches: list[BatchOutcome] = []
        self._batches_lock = threading.Lock()
        self._saved_moto_config: dict[str, Any] | None = None
        self.startup_seconds: float | None = None

    # --- lifecycle ---------------------------------------------------------------------------------------

    def __enter__(self) -> LocalRuntime:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> LocalRuntime:
        global _running
        with _running_lock:
            if _running is not None:
                raise RuntimeError("a LocalRuntime is already running in this process; stop it first")
            _running = self
        started = time.monotonic()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        log.info("local runtime up in %.2f s at %s", self.startup_seconds, self.endpoint_url)
        return self

    def _start(self) -> None:
        server = self._server or process_server()
        self._server = server
        server.start()
        server.reset()  # a previous runtime of this process may have left resources behind
        # moto's config is process-global (other moto servers or mock_aws in this process share it).
        self._saved_moto_config = server.current_config()
        server.configure()
        self._env.hide_credentials_and_endpoints()
        self._env.apply(sdk_variables(server.endpoint_url, server.port))
        # Before any session is created: the sessions created from now on answer Invoke in-process.
        register_invoke_hook()
        register_glue_locking_hook()
        register_job_hooks()
        clients = self._clients = AwsClients(server.endpoint_url)

        stack = self._stack = deploy_stack(
            clients,
            self.template_path,
            stack_name=self.stack_name,
            parameters=self.parameters,
            resolve_types=RESOLVED_TYPES,
            # moto's CloudFormation skips both kinds; neither is worth its warning
            locally_created_types=LOCALLY_CREATED_TYPES | NOT_NEEDED_LOCALLY.keys(),
        )
        # Before reconcile: applying the bucket notifications sends an s3:TestEvent to the ingest queue,
        # which moto would otherwise hand to its own canned Lambda through the enabled mapping.
        sources = take_over_sqs_mappings(
            clients, {r.physical_id for r in stack.of_type("AWS::Lambda::Function")}
        )
        reconcile(clients, stack)

        functions = load_function_specs(clients, stack)
        self._env.apply(merge_function_environments({f.logical_id: f.environment for f in functions}))
        invoker = self._invoker = LambdaInvoker(
            functions, self._overrides, enforce_timeouts=self._enforce_timeouts
        )
        invoker.install()
        # SageMaker Processing / Batch jobs (the radiomics job) run as local subprocesses.
        jobs = self._jobs = LocalJobs(
            self.template_path.parent / "containers" / "radiomics", workers=self._job_workers
        )
        jobs.install()
        # moto's Step Functions engine calls boto3.client() from its worker threads; creating the default
        # session and loading the models once here avoids racing on the (not thread-safe) session.
        boto3.client("lambda")
        boto3.client("sns")

        for source in sources:
            poller = SqsPoller(
                clients,
                source,
                max_batching_window=self._max_batching_window,
                failure_visibility_timeout=self._failure_visibility_timeout,
                on_batch=self._record_batch,
            )
            poller.start()
            self._pollers.append(poller)

    def stop(self) -> None:
        """Stop pollers and running executions, reset moto, restore `os.environ`. Idempotent."""
        global _running
        for poller in self._pollers:
            poller.stop()
        self._pollers.clear()
        if self._clients is not None and self._stack is not None:
            with contextlib.suppress(Exception):  # best effort: the server may be gone already
                self._stop_running_executions()
        if self._invoker is not None:
            self._invoker.uninstall()
            self._invoker = None
        if self._jobs is not None:  # ends running jobs and their workers, removes their folders
            self._jobs.close()
            self._jobs = None
        self._inboxes.clear()
        if self._server is not None and self._server.running:
            with contextlib.suppress(Exception):
                self._server.reset()
                if self._saved_moto_config is not None:
                    self._server.configure(self._saved_moto_config)
        self._env.restore()
        boto3.DEFAULT_SESSION = None
        self._clients = None
        with _running_lock:
            if _running is self:
                _running = None

    def _stop_running_executions(self) -> None:
        sfn = self.clients.stepfunctions
        for arn in self.state_machine_arns:
            for execution in sfn.list_executions(stateMachineArn=arn, statusFilter="RUNNING")["executions"]:
                sfn.stop_execution(executionArn=execution["executionArn"], cause="local runtime stopped")

    # --- what was deployed -----------------------------------------------------------------------------

    @property
    def clients(self) -> AwsClients:
        if self._clients is None:
            raise RuntimeError("the local runtime is not running")
        return self._clients

    def client(self, service: str) -> Any:
        """A boto3 client for `service`, pointed at the local endpoint."""
        return self.clients.client(service)

    @property
    def endpoint_url(self) -> str:
        return self.clients.endpoint_url

    @property
    def stack(self) -> LocalStack:
        if self._stack is None:
            raise RuntimeError("the local runtime is not running")
        return self._stack

    @property
    def outputs(self) -> dict[str, str]:
        """The stack's Outputs (OutputKey -> value)."""
        return dict(self.stack.outputs)

    @property
    def physical_ids(self) -> dict[str, str]:
        """Logical id -> physical id of every resource of the stack."""
        return self.stack.physical_ids

    @property
    def landing_bucket(self) -> str:
        return self.stack.outputs["LandingBucketName"]

    @property
    def lake_bucket(self) -> str:
        return self.stack.outputs["LakeBucketName"]

    @property
    def state_machine_arn(self) -> str:
        return self.stack.outputs["PipelineStateMachineArn"]

    @property
    def state_machine_arns(self) -> list[str]:
        return [r.physical_id for r in self.stack.of_type("AWS::StepFunctions::StateMachine")]

    @property
    def topic_arn(self) -> str:
        return self.stack.outputs["RunNotificationTopicArn"]

    @property
    def functions(self) -> dict[str, FunctionSpec]:
        """Logical id -> deployed function."""
        return self._require_invoker().functions

    @property
    def event_sources(self) -> list[SqsEventSource]:
        return [p.source for p in self._pollers]

    # --- invocations -------------------------------------------------------------------------------------

    @property
    def invocations(self) -> list[InvocationRecord]:
        """Every finished Lambda invocation so far, in completion order."""
        return self._require_invoker().records

    def clear_invocations(self) -> None:
        self._require_invoker().clear_records()
        with self._batches_lock:
            self._batches.clear()

    @property
    def batches(self) -> list[BatchOutcome]:
        """Every SQS batch the event sources delivered, with what was deleted and what was retried."""
        with self._batches_lock:
            return list(self._batches)

    def override_handlers(self, overrides: Mapping[str, Handler]) -> contextlib.AbstractContextManager[None]:
        """Context manager: replace handlers (logical id -> callable) for the duration of a block."""
        return self._require_invoker().overridden(overrides)

    def is_local_function(self, function: str) -> bool:
        """True when an Invoke of `function` (name, ARN or partial ARN, optional `:$LATEST`) runs here."""
        return self._require_invoker().resolve(function) is not None

    def real_handler(self, logical_id: str) -> Handler:
        """The handler named by the function's `Handler` setting (for an override to delegate to)."""
        return self._require_invoker().load_handler(logical_id)

    def invocation_stats(self) -> dict[str, dict[str, float | int]]:
        """Per function (logical id): invocations, errors, and total / mean / max seconds (JSON-ready)."""
        stats: dict[str, dict[str, float | int]] = {}
        for record in self.invocations:
            entry = stats.setdefault(
                record.logical_id,
                {
                    "invocations": 0,
                    "errors": 0,
                    "total_seconds": 0.0,
                    "mean_seconds": 0.0,
                    "max_seconds": 0.0,
                },
            )
            entry["invocations"] += 1
            entry["errors"] += 0 if record.ok else 1
            entry["total_seconds"] += record.duration_seconds
            entry["max_seconds"] = max(entry["max_seconds"], record.duration_seconds)
        for entry in stats.values():
            entry["mean_seconds"] = round(entry["total_seconds"] / entry["invocations"], 4)
            entry["total_seconds"] = round(entry["total_seconds"], 4)
            entry["max_seconds"] = round(entry["max_seconds"], 4)
        return stats

    def _require_invoker(self) -> LambdaInvoker:
        if self._invoker is None:
            raise RuntimeError("the local runtime is not running")
        return self._invoker

    def _record_batch(self, outcome: BatchOutcome) -> None:
        with self._batches_lock:
            self._batches.append(outcome)

    # --- driving a run -----------------------------------------------------------------------------------

    def upload(self, path: Path, key: str, bucket: str | None = None) -> dict[str, Any]:
        """Put a local file into the landing bucket (or `bucket`); returns Bucket, Key, ETag, VersionId.

        An object under incoming/ sends its S3 event to the ingest queue before this returns.
        """
        return self.put_object(key, Path(path).read_bytes(), bucket)

    def deliver(self, files: Mapping[str, Path] | Path, delivery: str, *, complete: bool = True) -> list[str]:
        """Drop a delivery as ops would: every file under incoming/<delivery>/ (a folder: its files, hidden
        ones skipped; or relative path -> file), then, with `complete`, its completion marker. Returns the
        keys."""
        if isinstance(files, Path):
            folder = files
            files = {
                p.relative_to(folder).as_posix(): p
                for p in sorted(folder.rglob("*"))
                if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
            }
        keys = []
        for relative, path in files.items():
            keys.append(f"incoming/{delivery}/{relative}")
            self.upload(path, keys[-1])
        if complete:
            self.complete(delivery)
        return keys

    def complete(self, delivery: str) -> dict[str, Any]:
        """Write the delivery's completion marker listing every object now under incoming/<delivery>/
        (mmhealth.waves): its run closes as soon as they are all recorded, whatever order events come in."""
        prefix = f"incoming/{delivery}/"
        paginator = self.clients.s3.get_paginator("list_objects_v2")
        listed = sorted(
            item["Key"].removeprefix(prefix)
            for page in paginator.paginate(Bucket=self.landing_bucket, Prefix=prefix)
            for item in page.get("Contents", [])
            if not item["Key"].endswith(f"/{MARKER_NAME}")
        )
        return self.put_object(f"{prefix}{MARKER_NAME}", json.dumps({"files": listed}).encode())

    def put_object(self, key: str, body: bytes, bucket: str | None = None) -> dict[str, Any]:
        target = bucket or self.landing_bucket
        response = self.clients.s3.put_object(Bucket=target, Key=key, Body=body)
        return {
            "Bucket": target,
            "Key": key,
            "ETag": response["ETag"],
            "VersionId": response.get("VersionId"),
        }

    @contextlib.contextmanager
    def events_held(self) -> Iterator[None]:
        """Within the block the event sources receive nothing, so a whole delivery queues up and then
        forms batches of BatchSize, as a fast upload does in the cloud (a slow local upload would
        otherwise make one small batch, and one run, per batching window)."""
        for poller in self._pollers:
            poller.hold()
        try:
            yield
        finally:
            for poller in self._pollers:
                poller.release()

    def event_sources_idle(self) -> bool:
        """True when every event-source queue is empty and no batch is in flight (see `drain`)."""
        return all(p.idle for p in self._pollers)

    def executions(self, state_machine_arn: str | None = None) -> list[dict[str, Any]]:
        """ListExecutions of the pipeline (or `state_machine_arn`), every status, oldest first."""
        executions = _list_executions(self.clients.stepfunctions, state_machine_arn or self.state_machine_arn)
        return sorted(executions, key=lambda e: e["startDate"])

    def drain(self, timeout: float = 60.0) -> None:
        """Wait until every event-source queue is empty and no batch is in flight.

        Raises TimeoutError (naming the busy queues) when that does not happen within `timeout`.
        """
        deadline = time.monotonic() + timeout
        while True:
            busy = [p.source.queue_arn for p in self._pollers if not p.idle]
            if not busy:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"event sources still busy after {timeout:.0f} s: {busy}")
            time.sleep(0.1)

    def wait_for_executions(
        self,
        count: int = 1,
        *,
        names: Iterable[str] | None = None,
        state_machine_arn: str | None = None,
        timeout: float = 120.0,
    ) -> list[dict[str, Any]]:
        """Wait until at least `count` executions (or the ones called `names`) exist and have finished.

        Returns their DescribeExecution responses, oldest first. Raises TimeoutError naming the
        executions still running (or missing) at `timeout`.
        """
        sfn = self.clients.stepfunctions
        arn = state_machine_arn or self.state_machine_arn
        wanted = set(names) if names is not None else None
        deadline = time.monotonic() + timeout
        while True:
            executions = _list_executions(sfn, arn)
            if wanted is not None:
                executions = [e for e in executions if e["name"] in wanted]
                enough = {e["name"] for e in executions} >= wanted
            else:
                enough = len(executions) >= count
            running = [e["name"] for e in executions if e["status"] not in _TERMINAL]
            if enough and not running:
                executions.sort(key=lambda e: e["startDate"])
                return [dict(sfn.describe_execution(executionArn=e["executionArn"])) for e in executions]
            if time.monotonic() > deadline:
                have = sorted(e["name"] for e in executions)
                raise TimeoutError(f"executions after {timeout:.0f} s: have {have}, still running {running}")
            time.sleep(0.2)

    def wait_for_execution(self, execution_arn: str, timeout: float = 120.0) -> dict[str, Any]:
        """DescribeExecution once `execution_arn` has finished; TimeoutError at `timeout`."""
        sfn = self.clients.stepfunctions
        deadline = time.monotonic() + timeout
        while True:
            description = sfn.describe_execution(executionArn=execution_arn)
            if description["status"] in _TERMINAL:
                return dict(description)
            if time.monotonic() > deadline:
                raise TimeoutError(f"{execution_arn} still {description['status']} after {timeout:.0f} s")
            time.sleep(0.2)

    def execution_history(self, execution_arn: str) -> list[dict[str, Any]]:
        """Every history event of an execution, oldest first."""
        sfn = self.clients.stepfunctions
        events: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"executionArn": execution_arn, "maxResults": 1000}
        while True:
            page = sfn.get_execution_history(**kwargs)
            events.extend(dict(e) for e in page["events"])
            if not page.get("nextToken"):
                return events
            kwargs["nextToken"] = page["nextToken"]

    def subscribe(self, name: str | None = None, topic_arn: str | None = None) -> TopicInbox:
        """Subscribe a new SQS queue to the run notification topic (or `topic_arn`)."""
        inbox = TopicInbox(
            self.clients, topic_arn or self.topic_arn, name or f"mmpipe-local-inbox-{len(self._inboxes)}"
        )
        self._inboxes.append(inbox)
        return inbox


def _list_executions(sfn: Any, arn: str) -> list[dict[str, Any]]:
    executions: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"stateMachineArn": arn, "maxResults": 1000}
    while True:
        page = sfn.list_executions(**kwargs)
        executions.extend(dict(e) for e in page["executions"])
        if not page.get("nextToken"):
            return executions
        kwargs["nextToken"] = page["nextToken"]
