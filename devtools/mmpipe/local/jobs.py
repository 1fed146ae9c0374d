"""SageMaker Processing / Training and AWS Batch jobs, answered locally by running the job's entry point in a
subprocess.

botocore `before-call` hooks (the mechanism of invoker.py) answer CreateProcessingJob /
DescribeProcessingJob and CreateTrainingJob / DescribeTrainingJob (SageMaker) and SubmitJob / DescribeJobs /
ListJobs (Batch) for every boto3 session created after `register_job_hooks()`, while a `LocalJobs` is
installed. Container images are not run: their entry points run on this machine's CPU with the SageMaker
path conventions mapped to a temp folder.
- Processing (`python -m radiomics_job`, containers/radiomics; or, with ContainerArguments `score ...`, the
  training image's scoring mode `python -m training_job score`): each S3Prefix input downloaded to the
  local copy of its LocalPath, the output folder uploaded to its S3Uri when the process exits 0 (EndOfJob);
  the scoring job's /opt/ml/output/message is its failure reason.
- Training (`python -m training_job train`, containers/training): each channel downloaded to
  /opt/ml/input/data/<channel>, HyperParameters written to /opt/ml/input/config/hyperparameters.json; on
  exit 0 /opt/ml/model is uploaded as <S3OutputPath>/<job>/output/model.tar.gz and /opt/ml/output/data as
  .../output/output.tar.gz, as SageMaker does; a failed job's reason is /opt/ml/output/failure.
- Batch: the job's own command (the job reads and writes S3 itself).
The subprocess reaches S3 through AWS_ENDPOINT_URL, the local moto server. Describe reports InProgress /
RUNNING until the process ends, then Completed / SUCCEEDED or Failed / FAILED with the failure reason.

No orphans: each job runs in its own session (the job and its worker processes are one process group) and
is recorded in the job registry (job_processes.py: where, what, and how a later runtime reaps what a killed
one left). `close()` - the runtime's stop, so Ctrl-C and SIGTERM of `mmpipe local up` / `local run` - ends
every running job's group (SIGTERM, SIGKILL after `GRACE_SECONDS`), removes the jobs' folders (and the
job folder of the runtime, when LocalJobs made it) and their registry entries. A job ended that way reports
Failed / FAILED, "stopped: the local runtime shut down"; its output is not uploaded.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, cast

import boto3
import botocore.handlers
from botocore.awsrequest import AWSResponse

from mmpipe.local.job_processes import (
    GRACE_SECONDS,
    TAG_VARIABLE,
    JobProcess,
    JobRegistry,
    end_jobs,
    new_tag,
    process_start,
)

log = logging.getLogger(__name__)

_OPERATIONS = {
    "before-call.sagemaker.CreateProcessingJob": "create_processing_job",
    "before-call.sagemaker.DescribeProcessingJob": "describe_processing_job",
    "before-call.sagemaker.CreateTrainingJob": "create_training_job",
    "before-call.sagemaker.DescribeTrainingJob": "describe_training_job",
    "before-call.batch.SubmitJob": "submit_job",
    "before-call.batch.DescribeJobs": "describe_jobs",
    "before-call.batch.ListJobs": "list_jobs",
}
ENTRY_POINT = "radiomics_job"
TRAINING_ENTRY_POINT = "training_job"
_STDERR_TAIL = 1500  # characters of a failed job's stderr kept as its failure reason
STOPPED_REASON = "stopped: the local runtime shut down"
_WORKDIR_KEY = "workdir"  # the registry entry of the folder LocalJobs made for its jobs
_THREAD_JOIN_SECONDS = 30.0  # close(): a job thread may be uploading the output of a job that just ended


class JobRequestError(Exception):
    """A request the service would refuse (an existing name, an unknown job): a 400 with this code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class LocalJob:
    name: str
    job_id: str
    kind: str  # "processing" | "training" | "batch"
    request: dict[str, Any]
    created: datetime
    status: str = "running"  # running | succeeded | failed
    reason: str = ""
    ended: datetime | None = None
    folder: Path | None = None  # the job's own folder (processing, training), removed by close()
    process: JobProcess | None = None  # once started
    thread: threading.Thread | None = field(default=None, repr=False)
    popen: subprocess.Popen[str] | None = field(default=None, repr=False)


class LocalJobs:
    """Runs the jobs; one instance is installed per local runtime.

    `workdir`: where the jobs' folders go; None: a new temp folder, removed by `close()`. `registry`: where
    the running jobs are recorded (default: the per-user registry in the system temp folder). `grace`:
    seconds between SIGTERM and SIGKILL when `close()` ends a job.
    """

    def __init__(
        self,
        code_dir: Path,
        workdir: Path | None = None,
        *,
        workers: int = 2,
        account: str = "123456789012",
        entry_point: str = ENTRY_POINT,
        max_running: int = 1,
        registry: JobRegistry | None = None,
        grace: float = GRACE_SECONDS,
    ) -> None:
        self.code_dir = code_dir
        # One job at a time by default: each already uses every core (its worker processes), and a run
        # per trigger batch would otherwise start dozens of torch processes at once on one machine.
        self._slots = threading.Semaphore(max_running)
        self.entry_point = entry_point
        self.registry = registry or JobRegistry()
        self._owns_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="mmpipe-jobs-"))
        if self._owns_workdir:
            self.registry.record(_WORKDIR_KEY, "job folder", self.workdir)
        self.workers = workers
        self.account = account
        self.grace = grace
        self._jobs: dict[str, LocalJob] = {}
        self._lock = threading.Lock()
        self._closing = False

    # --- install -----------------------------------------------------------------------------------------

    def install(self) -> None:
        global _active
        register_job_hooks()
        with _active_lock:
            _active = self

    def uninstall(self) -> None:
        global _active
        with _active_lock:
            if _active is self:
                _active = None

    def wait(self, timeout: float | None = None) -> None:
        """Wait for every running job's process (tests)."""
        for job in list(self._jobs.values()):
            if job.thread is not None:
                job.thread.join(timeout)

    def close(self) -> None:
        """Uninstall; end every running job (its process group: SIGTERM, SIGKILL after `grace` s) and jobs
        still queued; remove the jobs' folders and registry entries. Idempotent. Returns within about
        `grace` + KILL_WAIT_SECONDS unless a job's output upload is under way (then up to 30 s more)."""
        self.uninstall()
        with self._lock:  # after this no job starts (see _run)
            self._closing = True
            jobs = list(self._jobs.values())
        end_jobs([j.process for j in jobs if j.process is not None], self.grace)
        for job in jobs:
            if job.popen is not None and job.popen.poll() is None:  # no /proc: at least the job itself
                with contextlib.suppress(OSError):
                    job.popen.kill()
            if job.thread is not None:
                job.thread.join(_THREAD_JOIN_SECONDS)
        for job in jobs:
            if job.folder is not None:
                shutil.rmtree(job.folder, ignore_errors=True)
            self.registry.forget(_registry_key(job))
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.registry.forget(_WORKDIR_KEY)

    # --- SageMaker ---------------------------------------------------------------------------------------

    def create_processing_job(self, request: dict[str, Any]) -> dict[str, Any]:
        name = request["ProcessingJobName"]
        job = self._register(name, name, "processing", request)
        folder = cast(Path, job.folder)
        inputs: dict[str, Path] = {}
        for item in request.get("ProcessingInputs", []):
            s3_input = item["S3Input"]
            local = _local_path(folder, s3_input["LocalPath"])
            _download_prefix(s3_input["S3Uri"], local)
            inputs[item.get("InputName", "")] = local
        outputs = request.get("ProcessingOutputConfig", {}).get("Outputs", [])
        for item in outputs:
            _local_path(folder, item["S3Output"]["LocalPath"]).mkdir(parents=True, exist_ok=True)
        output_dirs = [str(_local_path(folder, item["S3Output"]["LocalPath"])) for item in outputs]

        def upload() -> None:
            for item in outputs:
                _upload_folder(_local_path(folder, item["S3Output"]["LocalPath"]), item["S3Output"]["S3Uri"])

        arguments = list(request.get("AppSpecification", {}).get("ContainerArguments") or [])
        if arguments[:1] == ["score"]:
            # The training image's scoring mode (mmhealth.scoring); a script-mode ContainerEntrypoint only
            # unpacks the same code, which is on PYTHONPATH here.
            message = _local_path(folder, "/opt/ml/output/message")
            command = [
                sys.executable,
                "-m",
                TRAINING_ENTRY_POINT,
                *arguments,
                *("--model-dir", str(inputs["model"]), "--dataset", str(inputs["dataset"])),
                *("--output-dir", output_dirs[0], "--failure-file", str(message)),
            ]
            self._run(job, command, after=upload, failure_file=message)
        else:
            args = ["--input", str(inputs["manifests"])] if "manifests" in inputs else []
            for output_dir in output_dirs:
                args += ["--output", output_dir]
            self._run(job, self._radiomics_command(args), after=upload)
        return {"ProcessingJobArn": self._arn("sagemaker", f"processing-job/{name}")}

    def describe_processing_job(self, request: dict[str, Any]) -> dict[str, Any]:
        job = self._get(request["ProcessingJobName"], "processing")
        status = {"running": "InProgress", "succeeded": "Completed", "failed": "Failed"}[job.status]
        described: dict[str, Any] = {
            **{k: job.request[k] for k in ("ProcessingJobName", "ProcessingResources", "AppSpecification")},
            "ProcessingJobArn": self._arn("sagemaker", f"processing-job/{job.name}"),
            "ProcessingJobStatus": status,
            "CreationTime": job.created,
        }
        if job.ended is not None:
            described["ProcessingEndTime"] = job.ended
        if job.reason:
            described["FailureReason"] = job.reason
        return described

    def create_training_job(self, request: dict[str, Any]) -> dict[str, Any]:
        name = request["TrainingJobName"]
        job = self._register(name, name, "training", request)
        root = _local_path(cast(Path, job.folder), "/opt/ml")
        for channel in request.get("InputDataConfig", []):
            source = channel["DataSource"]["S3DataSource"]["S3Uri"]
            _download_prefix(source, root / "input" / "data" / channel["ChannelName"])
        config = root / "input" / "config"
        config.mkdir(parents=True, exist_ok=True)
        (config / "hyperparameters.json").write_text(json.dumps(request.get("HyperParameters", {})))
        for folder in ("model", "output/data"):
            (root / folder).mkdir(parents=True, exist_ok=True)
        output = f"{request['OutputDataConfig']['S3OutputPath'].rstrip('/')}/{name}/output/"

        def upload() -> None:
            _upload_tarball(root / "model", f"{output}model.tar.gz")
            _upload_tarball(root / "output" / "data", f"{output}output.tar.gz")

        command = [sys.executable, "-m", TRAINING_ENTRY_POINT, "train", "--ml-root", str(root)]
        self._run(job, command, after=upload, failure_file=root / "output" / "failure")
        return {"TrainingJobArn": self._arn("sagemaker", f"training-job/{name}")}

    def describe_training_job(self, request: dict[str, Any]) -> dict[str, Any]:
        job = self._get(request["TrainingJobName"], "training")
        status = {"running": "InProgress", "succeeded": "Completed", "failed": "Failed"}[job.status]
        output = f"{job.request['OutputDataConfig']['S3OutputPath'].rstrip('/')}/{job.name}/output/"
        described: dict[str, Any] = {
            **{k: job.request[k] for k in ("TrainingJobName", "AlgorithmSpecification", "ResourceConfig")},
            "TrainingJobArn": self._arn("sagemaker", f"training-job/{job.name}"),
            "TrainingJobStatus": status,
            "SecondaryStatus": {"running": "Training", "succeeded": "Completed", "failed": "Failed"}[
                job.status
            ],
            "HyperParameters": job.request.get("HyperParameters", {}),
            "ModelArtifacts": {"S3ModelArtifacts": f"{output}model.tar.gz"},
            "CreationTime": job.created,
        }
        if job.ended is not None:
            described["TrainingEndTime"] = job.ended
        if job.reason:
            described["FailureReason"] = job.reason
        return described

    # --- Batch -------------------------------------------------------------------------------------------

    def submit_job(self, request: dict[str, Any]) -> dict[str, Any]:
        job_id = str(uuid.uuid4())
        job = self._register(job_id, request["jobName"], "batch", request)
        command = list(request.get("containerOverrides", {}).get("command", []))
        self._run(job, self._radiomics_command(command))
        return {"jobArn": self._arn("batch", f"job/{job_id}"), "jobName": job.name, "jobId": job_id}

    def describe_jobs(self, request: dict[str, Any]) -> dict[str, Any]:
        jobs = [self._jobs[i] for i in request.get("jobs", []) if i in self._jobs]
        return {"jobs": [self._batch_detail(j) for j in jobs]}

    def list_jobs(self, request: dict[str, Any]) -> dict[str, Any]:
        names = {
            v for f in request.get("filters", []) if f.get("name") == "JOB_NAME" for v in f.get("values", [])
        }
        found = [j for j in self._jobs.values() if j.kind == "batch" and (not names or j.name in names)]
        return {
            "jobSummaryList": [
                {"jobId": j.job_id, "jobName": j.name, "status": self._batch_status(j)} for j in found
            ]
        }

    def _batch_detail(self, job: LocalJob) -> dict[str, Any]:
        detail = {
            "jobName": job.name,
            "jobId": job.job_id,
            "jobArn": self._arn("batch", f"job/{job.job_id}"),
            "jobQueue": job.request["jobQueue"],
            "jobDefinition": job.request["jobDefinition"],
            "status": self._batch_status(job),
            "startedAt": int(job.created.timestamp() * 1000),
        }
        if job.reason:
            detail["statusReason"] = job.reason
        return detail

    @staticmethod
    def _batch_status(job: LocalJob) -> str:
        return {"running": "RUNNING", "succeeded": "SUCCEEDED", "failed": "FAILED"}[job.status]

    # --- running -----------------------------------------------------------------------------------------

    def _register(self, key: str, name: str, kind: str, request: dict[str, Any]) -> LocalJob:
        with self._lock:
            if kind in ("processing", "training") and key in self._jobs:
                raise JobRequestError(
                    "ValidationException" if kind == "processing" else "ResourceInUse",
                    f"Job name must be unique within an AWS account and region, and a job with this name "
                    f"already exists ({self._arn('sagemaker', f'{kind}-job/{name}')})",
                )
            if self._closing:
                raise JobRequestError("ValidationException", "the local runtime is shutting down")
            job = self._jobs[key] = LocalJob(name, key, kind, request, datetime.now(UTC))
        if kind in ("processing", "training"):  # a Batch job reads and writes S3 itself: no folder
            job.folder = self.workdir / key
            job.folder.mkdir(parents=True, exist_ok=True)
        # Recorded before its inputs are staged: a runtime killed while staging leaves a folder too.
        self.registry.record(_registry_key(job), name, job.folder)
        return job

    def _get(self, key: str, kind: str) -> LocalJob:
        job = self._jobs.get(key)
        if job is None or job.kind != kind:
            raise JobRequestError("ValidationException", f"Could not find job {key!r}")
        return job

    def _radiomics_command(self, args: list[str]) -> list[str]:
        return [
            sys.executable,
            "-m",
            self.entry_point,
            *args,
            "--workers",
            str(self.workers),
            "--device",
            "cpu",
        ]

    def _run(
        self, job: LocalJob, command: list[str], after: Any = None, failure_file: Path | None = None
    ) -> None:
        tag = new_tag()
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(self.code_dir), os.environ.get("PYTHONPATH", "")]),
            TAG_VARIABLE: tag,  # inherited by the job's workers: see job_processes
        }

        def run() -> None:
            with self._slots:  # queued jobs report InProgress / RUNNABLE-like RUNNING until they get a slot
                with self._lock:  # close() either sees this process or it is never started
                    if not self._closing:
                        log.info("local %s job %s: %s", job.kind, job.name, " ".join(command[1:]))
                        # Its own session: the job and its workers are one process group, out of reach of
                        # the terminal's Ctrl-C (the runtime's close() ends them).
                        try:
                            job.popen = subprocess.Popen(
                                command,
                                env=env,
                                stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE,
                                text=True,
                                start_new_session=True,
                            )
                        except OSError as exc:
                            self._end(job, "failed", f"the job could not start: {exc}")
                            return
                        pid = job.popen.pid
                        job.process = JobProcess(pid, pid, process_start(pid) or 0, tag)
                        self.registry.record(_registry_key(job), job.name, job.folder, job.process)
                if job.popen is None:
                    self._end(job, "failed", STOPPED_REASON)
                    return
                _, stderr = job.popen.communicate()
                returncode = job.popen.returncode
            if self._closing:
                self._end(job, "failed", STOPPED_REASON)
            elif returncode == 0:
                try:
                    if after is not None:
                        after()
                    self._end(job, "succeeded")
                except Exception as exc:  # an upload that failed fails the job, as in SageMaker
                    self._end(job, "failed", f"uploading the output failed: {exc}")
            else:
                stated = failure_file.read_text().strip() if failure_file and failure_file.is_file() else ""
                self._end(
                    job,
                    "failed",
                    stated[:_STDERR_TAIL] or f"exit code {returncode}: {stderr[-_STDERR_TAIL:].strip()}",
                )

        job.thread = threading.Thread(target=run, name=f"job-{job.name}", daemon=True)
        job.thread.start()

    @staticmethod
    def _end(job: LocalJob, status: str, reason: str = "") -> None:
        job.status, job.reason, job.ended = status, reason, datetime.now(UTC)
        log.info("local %s job %s %s", job.kind, job.name, job.status)

    def _arn(self, service: str, resource: str) -> str:
        region = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
        return f"arn:aws:{service}:{region}:{self.account}:{resource}"

    def answer(self, method: str, request: dict[str, Any], url: str) -> tuple[AWSResponse, dict[str, Any]]:
        try:
            parsed = cast(dict[str, Any], getattr(self, method)(request))
            status = 200
        except JobRequestError as exc:
            parsed, status = {"Error": {"Code": exc.code, "Message": str(exc)}}, 400
        parsed["ResponseMetadata"] = {
            "RequestId": str(uuid.uuid4()),
            "HTTPStatusCode": status,
            "HTTPHeaders": {},
            "RetryAttempts": 0,
        }
        return AWSResponse(url, status, cast(Any, {}), None), parsed


def _registry_key(job: LocalJob) -> str:
    return f"job-{job.job_id}"


def _local_path(folder: Path, container_path: str) -> Path:
    """/opt/ml/processing/input/manifests -> <folder>/opt/ml/processing/input/manifests."""
    return folder / PurePosixPath(container_path).relative_to("/")


def _split(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def _download_prefix(uri: str, local: Path) -> None:
    """Every object under the S3Prefix, at its key relative to the prefix's folder (as SageMaker does: the
    prefix `a/model.tar.gz` gives `<local>/model.tar.gz`, the prefix `a/b/` gives `<local>/<rest of key>`)."""
    bucket, prefix = _split(uri)
    folder = prefix[: prefix.rfind("/") + 1]
    s3 = boto3.client("s3")
    local.mkdir(parents=True, exist_ok=True)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            target = local / item["Key"][len(folder) :].lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, item["Key"], str(target))


def _upload_folder(local: Path, uri: str) -> None:
    bucket, prefix = _split(uri)
    s3 = boto3.client("s3")
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        key = (
            f"{prefix.rstrip('/')}/{path.relative_to(local).as_posix()}"
            if prefix
            else path.relative_to(local).as_posix()
        )
        s3.upload_file(str(path), bucket, key)


def _upload_tarball(local: Path, uri: str) -> None:
    """`local`'s files as a gzipped tar (paths relative to it), as SageMaker uploads a training job's output."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path in sorted(p for p in local.rglob("*") if p.is_file()):
            archive.add(path, arcname=path.relative_to(local).as_posix())
    bucket, key = _split(uri)
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=buffer.getvalue())


def register_job_hooks() -> None:
    """Add the job hooks to botocore's built-in handlers (idempotent); they let calls through while no
    LocalJobs is installed."""
    with _active_lock:
        for event in _OPERATIONS:
            if (event, _before_call_job) not in botocore.handlers.BUILTIN_HANDLERS:
                botocore.handlers.BUILTIN_HANDLERS.append((event, _before_call_job))


def _before_call_job(
    params: Mapping[str, Any], model: Any, **_: Any
) -> tuple[AWSResponse, dict[str, Any]] | None:
    jobs = _active
    if jobs is None:
        return None
    method = _OPERATIONS.get(f"before-call.{model.service_model.service_name}.{model.name}")
    if method is None:
        return None
    body = params.get("body") or b"{}"
    request = json.loads(body.decode() if isinstance(body, bytes) else body)
    return jobs.answer(method, request, str(params.get("url", "")))


_active: LocalJobs | None = None
_active_lock = threading.Lock()
