"""No orphans from the local jobs (mmpipe.local.jobs + mmpipe.local.job_processes), on real processes.

The job is a small real module written by the test: it starts a worker of its own that ignores SIGTERM (as
a stuck worker would, so only the SIGKILL after the grace period ends it), writes both pids to a file and
waits. The owner is a real `local run`-like process: `exits_cleanly_on_signals` (what `mmpipe local run`'s
`run()` is wrapped in) around a LocalJobs that runs the job. Whether a process runs is read from
/proc/<pid>/stat by this test (pid and start time, so a reused pid does not count; a zombie has ended), not
from the code under test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mmpipe.local.job_processes import JobRegistry, reap_orphaned_jobs
from mmpipe.local.jobs import STOPPED_REASON, LocalJobs

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")

FAMILY_JOB = textwrap.dedent(
    """
    import os, subprocess, sys, time
    worker = subprocess.Popen(
        [sys.executable, "-c", "import signal, time\\n"
         "signal.signal(signal.SIGTERM, signal.SIG_IGN)\\n"
         "print('ready', flush=True)\\n"
         "while True: time.sleep(0.05)"],
        stdout=subprocess.PIPE, text=True,
    )
    worker.stdout.readline()  # its SIGTERM is ignored from now on
    pids = os.environ["FAMILY_PIDS"]
    with open(pids + ".tmp", "w") as out:
        out.write(f"{os.getpid()} {worker.pid}")
    os.replace(pids + ".tmp", pids)
    while True:
        time.sleep(0.05)
    """
)

OWNER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from mmpipe.local.jobs import LocalJobs
    from mmpipe.local.signals import exits_cleanly_on_signals

    @exits_cleanly_on_signals
    def main() -> int:
        jobs = LocalJobs(Path(sys.argv[1]), entry_point="family_job", grace=0.5)
        try:
            jobs.create_processing_job({"ProcessingJobName": "family"})
            while True:
                time.sleep(0.1)
        finally:
            jobs.close()

    sys.exit(main())
    """
)

Identity = tuple[int, int]  # pid, start time


def identity(pid: int) -> Identity:
    return pid, _start(pid)


def _start(pid: int) -> int:
    raw = Path(f"/proc/{pid}/stat").read_text()
    return int(raw[raw.rfind(")") + 2 :].split()[19])


def running(process: Identity) -> bool:
    pid, start = process
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = raw[raw.rfind(")") + 2 :].split()
    return fields[0] not in "ZX" and int(fields[19]) == start


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "code"
    folder.mkdir()
    (folder / "family_job.py").write_text(FAMILY_JOB)
    (folder / "owner.py").write_text(OWNER)
    monkeypatch.setenv("FAMILY_PIDS", str(tmp_path / "pids"))
    return folder


@pytest.fixture
def owner_env(tmp_path: Path, code: Path) -> dict[str, str]:
    (tmp_path / "tmp").mkdir()
    return {
        **os.environ,
        "TMPDIR": str(tmp_path / "tmp"),  # the owner's LocalJobs makes its job folder here
        "MMPIPE_JOB_REGISTRY": str(tmp_path / "registry"),
    }


@pytest.fixture
def reaper() -> Iterator[list[Identity]]:
    """Processes a failing test would leave: SIGKILLed at the end if they are still the same process."""
    left: list[Identity] = []
    yield left
    for process in left:
        if running(process):
            os.kill(process[0], signal.SIGKILL)


def start_owner(code: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(code / "owner.py"), str(code)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def family_pids(tmp_path: Path, owner: subprocess.Popen[str] | None = None) -> tuple[Identity, Identity]:
    pids = tmp_path / "pids"

    def written() -> bool:
        if owner is not None and owner.poll() is not None:
            raise AssertionError(f"the owner ended early: {owner.communicate()}")
        return pids.exists()

    wait_until(written, "the job and its worker to start")
    job, worker = (int(p) for p in pids.read_text().split())
    return identity(job), identity(worker)


@pytest.mark.parametrize(("signum", "code_expected"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_to_a_local_run_ends_its_job_the_jobs_worker_and_the_folders(
    tmp_path: Path,
    code: Path,
    owner_env: dict[str, str],
    reaper: list[Identity],
    signum: int,
    code_expected: int,
) -> None:
    # Given a local run whose job runs, with a worker of its own that ignores SIGTERM
    owner = start_owner(code, owner_env)
    job, worker = family_pids(tmp_path, owner)
    reaper += [job, worker]
    assert running(job)
    assert running(worker)
    [job_folder] = list((tmp_path / "tmp").iterdir())
    assert (job_folder / "family").is_dir()
    assert len(list((tmp_path / "registry").glob("*.json"))) == 2  # the job folder, the job

    # When the run is stopped by the signal
    owner.send_signal(signum)
    _, stderr = owner.communicate(timeout=30)

    # Then it unwound (exit 128 + the signal) and left no process, no folder and no record behind
    assert owner.returncode == code_expected, stderr
    assert f"stopped by {signal.Signals(signum).name}" in stderr
    assert not running(job)
    assert not running(worker)  # SIGKILLed after the grace period
    assert list((tmp_path / "tmp").iterdir()) == []
    assert list((tmp_path / "registry").iterdir()) == []


def test_the_next_start_reaps_what_a_killed_owner_left(
    tmp_path: Path, code: Path, owner_env: dict[str, str], reaper: list[Identity]
) -> None:
    # Given a local run killed with SIGKILL while its job ran: the job and its worker are orphans
    owner = start_owner(code, owner_env)
    job, worker = family_pids(tmp_path, owner)
    reaper += [job, worker]
    [job_folder] = list((tmp_path / "tmp").iterdir())
    owner.kill()
    owner.communicate(timeout=30)
    assert running(job)
    assert running(worker)
    assert job_folder.is_dir()

    # When a later start reaps the registry
    reaped = reap_orphaned_jobs(JobRegistry(tmp_path / "registry"), grace=0.5)

    # Then the orphans are gone, and their folders and records, and one line says so
    assert not running(job)
    assert not running(worker)
    assert not job_folder.exists()
    assert list((tmp_path / "registry").iterdir()) == []
    assert reaped is not None
    assert reaped.line() == (
        f"cleaned up after a local runtime no longer running (pid {owner.pid}): "
        "ended 1 job (family; 2 processes); removed 2 temp folders"
    )
    # And a second reap finds nothing
    assert reap_orphaned_jobs(JobRegistry(tmp_path / "registry")) is None


def _entry(pid: int, pgid: int, start: int, boot: str, folder: Path, dead_owner: int) -> dict[str, object]:
    return {
        "version": 1,
        "boot_id": boot,
        "owner": {"pid": dead_owner, "start": 1},
        "name": f"job-{pid}-{start}",
        "folder": str(folder),
        "process": {"pid": pid, "pgid": pgid, "start": start, "tag": "0" * 32},
    }


def test_a_process_that_is_not_provably_the_jobs_is_never_signalled(
    tmp_path: Path, reaper: list[Identity]
) -> None:
    # Given an unrelated process (its own session: its pid is its process group)
    stranger_process = subprocess.Popen(
        [sys.executable, "-c", "import time\nwhile True: time.sleep(0.05)"], start_new_session=True
    )
    stranger = identity(stranger_process.pid)
    reaper.append(stranger)
    dead_owner = subprocess.Popen(["true"])
    dead_owner.wait()
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    root = tmp_path / "registry"
    root.mkdir(mode=0o700)
    pid, start = stranger
    # And records of dead owners that name it: its pid with another start time (the pid was reused); a
    # job whose leader is gone, in its process group (the group id was reused), without the job's tag;
    # its very pid and start time but from another boot
    entries = {
        "reused-pid": _entry(pid, pid, start - 1, boot, tmp_path / "a", dead_owner.pid),
        "reused-group": _entry(dead_owner.pid, pid, 0, boot, tmp_path / "b", dead_owner.pid),
        "other-boot": _entry(pid, pid, start, "another-boot", tmp_path / "c", dead_owner.pid),
    }
    for name, entry in entries.items():
        Path(str(entry["folder"])).mkdir()
        (root / f"{dead_owner.pid}-1-{name}.json").write_text(json.dumps(entry))

    # When the registry is reaped
    reaped = reap_orphaned_jobs(JobRegistry(root), grace=0.5)

    # Then nothing was signalled and the process runs on; the records and folders are gone
    assert reaped is not None
    assert reaped.processes == 0
    assert reaped.jobs == []
    assert stranger_process.poll() is None
    assert running(stranger)
    assert f"left pid {pid} alone (another process now)" in reaped.line()
    assert list(root.iterdir()) == []
    assert not any((tmp_path / n).exists() for n in "abc")
    stranger_process.kill()
    stranger_process.wait(timeout=10)


def test_the_records_of_a_running_owner_are_left_alone(tmp_path: Path) -> None:
    folder = tmp_path / "jobs" / "family"
    folder.mkdir(parents=True)
    mine = JobRegistry(tmp_path / "registry")
    mine.record("job-family", "family", folder)

    assert reap_orphaned_jobs(JobRegistry(tmp_path / "registry")) is None

    assert folder.is_dir()
    assert len(list((tmp_path / "registry").glob("*.json"))) == 1


def test_close_ends_a_running_job_and_a_queued_one_and_removes_their_folders(
    tmp_path: Path, code: Path, reaper: list[Identity]
) -> None:
    # Given a job running and one queued behind it (one slot)
    jobs = LocalJobs(code, entry_point="family_job", grace=0.5, registry=JobRegistry(tmp_path / "registry"))
    workdir = jobs.workdir
    for name in ("family", "queued"):
        jobs.create_processing_job(
            {"ProcessingJobName": name, "ProcessingResources": {}, "AppSpecification": {}}
        )
    job, worker = family_pids(tmp_path)
    reaper += [job, worker]
    assert (workdir / "family").is_dir()
    assert (workdir / "queued").is_dir()

    # When the runtime closes it
    jobs.close()

    # Then both jobs report the stop, no process is left, nor a folder or a record
    for name in ("family", "queued"):
        described = jobs.describe_processing_job({"ProcessingJobName": name})
        assert (described["ProcessingJobStatus"], described["FailureReason"]) == ("Failed", STOPPED_REASON)
    assert not running(job)
    assert not running(worker)
    assert not workdir.exists()
    assert list((tmp_path / "registry").iterdir()) == []
    jobs.close()  # idempotent


SLOW_CLEAN_UP = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from mmpipe.local.signals import exits_cleanly_on_signals

    folder = Path(sys.argv[1])

    @exits_cleanly_on_signals
    def main() -> int:
        try:
            (folder / "started").touch()
            while True:
                time.sleep(0.02)
        finally:  # a clean-up that takes a while (ending jobs does), until the test lets it finish
            (folder / "cleaning").touch()
            while not (folder / "finish").exists():
                time.sleep(0.02)

    sys.exit(main())
    """
)


@pytest.fixture
def slow_owner(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    (tmp_path / "slow_owner.py").write_text(SLOW_CLEAN_UP)
    env = {**os.environ, "MMPIPE_JOB_REGISTRY": str(tmp_path / "registry")}
    with (tmp_path / "stderr").open("wb") as stderr:
        owner = subprocess.Popen(
            [sys.executable, str(tmp_path / "slow_owner.py"), str(tmp_path)], env=env, stderr=stderr
        )
    try:
        wait_until(lambda: (tmp_path / "started").exists(), "the owner to start")
        yield owner, tmp_path
    finally:
        owner.kill()
        owner.wait(timeout=10)


def test_a_second_signal_does_not_cut_the_clean_up_short(
    slow_owner: tuple[subprocess.Popen[bytes], Path],
) -> None:
    owner, folder = slow_owner
    owner.send_signal(signal.SIGINT)
    wait_until(lambda: (folder / "cleaning").exists(), "the clean-up to start")

    owner.send_signal(signal.SIGTERM)  # impatient: a second signal while the jobs are being ended
    wait_until(lambda: b"stopping: ending the local jobs" in (folder / "stderr").read_bytes(), "the notice")
    (folder / "finish").touch()

    assert owner.wait(timeout=30) == 130  # the clean-up finished; the first signal decides the code


def test_a_third_signal_ends_the_process_at_once(slow_owner: tuple[subprocess.Popen[bytes], Path]) -> None:
    owner, folder = slow_owner
    owner.send_signal(signal.SIGINT)
    wait_until(lambda: (folder / "cleaning").exists(), "the clean-up to start")
    owner.send_signal(signal.SIGINT)
    wait_until(lambda: b"stopping: ending the local jobs" in (folder / "stderr").read_bytes(), "the notice")

    owner.send_signal(signal.SIGINT)

    assert owner.wait(timeout=30) == -signal.SIGINT  # killed by the signal, the clean-up left undone
