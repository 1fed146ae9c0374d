"""Nothing about one series stops the job: a feature value that is not finite, a worker that dies (a
segfault, a SIGKILL), a series that hangs past --series-timeout, a document that cannot be written, and the
job's own SIGTERM (no orphaned workers).

The hung and the killed series are real: their manifest is a named pipe (FIFO), so the worker that reads it
blocks in open() like a read from a stalled mount; the test kills that very worker from outside (as the
out-of-memory killer would), finding it by the pipe it holds open.
"""

from __future__ import annotations

import ctypes
import errno
import json
import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from pydicom.data import get_testdata_file

from radiomics_job.workers import COMPLETED, DIED, FAILED, TIMED_OUT, Supervisor, Task, WorkerStartError
from tests.unit.radiomics.conftest import JOB_HOME

# pydicom's own test data: a CT whose pixel representation disagrees with its JPEG 2000 codestream
J2K_PIXELREP_MISMATCH = Path(str(get_testdata_file("J2K_pixelrep_mismatch.dcm")))


def _documents(output: Path) -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((output / "features").glob("*.json"))}


def _strict(text: str) -> Any:
    """json.loads that refuses NaN and infinities, as a strict JSON reader would."""

    def refuse(token: str) -> None:
        raise ValueError(f"{token} in JSON")

    return json.loads(text, parse_constant=refuse)


def _good_manifests(folder: Path, synthetic_manifests: list[Path], count: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    for path in synthetic_manifests[:count]:
        (folder / path.name).write_text(path.read_text())
    return [path.stem for path in synthetic_manifests[:count]]


def _holders(path: Path) -> set[int]:
    """Processes other than this one with `path` open."""
    pids = set()
    for fds in Path("/proc").glob("[0-9]*/fd"):
        try:
            if any(os.readlink(fd) == str(path) for fd in fds.iterdir()):
                pids.add(int(fds.parent.name))
        except OSError:  # the process ended meanwhile
            continue
    return pids - {os.getpid()}


def _reader_of(fifo: Path, timeout: float = 60.0) -> tuple[int, int]:
    """Wait until a worker opens the FIFO to read it; (our write end, that worker's pid)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # ENXIO while nobody reads it
            break
        except OSError as error:
            if error.errno != errno.ENXIO or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    while not (readers := _holders(fifo)):
        assert time.monotonic() < deadline, f"nobody holds {fifo}"
        time.sleep(0.05)
    (pid,) = readers
    return fd, pid


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")  # a zombie
    except FileNotFoundError:
        return True


# ------------------------------------------------------------------------------- features that are not finite


@pytest.mark.filterwarnings("ignore:Mean of empty slice:RuntimeWarning")
def test_a_feature_value_that_is_not_finite_is_null_and_named(tmp_path: Path) -> None:
    # Given a one-slice volume whose hippocampus is two diagonal voxels of different values (v1 parameters:
    # no resampling, so the two voxels stay two): pyradiomics'
    # robust mean absolute deviation (over the voxels strictly between the 10th and 90th percentile) is
    # the mean of nothing, NaN
    import SimpleITK as sitk

    from radiomics_job import HOME
    from radiomics_job.features import FeatureExtractor
    from radiomics_job.storage import OutputSink
    from radiomics_job.volume import Geometry

    volume = (np.arange(144, dtype=np.float32).reshape(1, 12, 12)) * 10
    image = sitk.GetImageFromArray(volume)
    image.SetSpacing((0.5, 0.5, 5.0))
    labels = np.zeros(volume.shape, dtype=np.uint8)
    labels[0, 5, 5] = labels[0, 6, 6] = 2
    # When the job extracts its regions and writes them as strict JSON
    regions = {
        r["name"]: r
        for r in FeatureExtractor(HOME / "params" / "radiomics-v1.yaml").regions(
            image, labels, Geometry.of(image)
        )
    }
    sink = OutputSink(str(tmp_path / "out"), tmp_path)
    sink.put_json("features/s.json", {"regions": list(regions.values())})
    written = _strict((tmp_path / "out" / "features" / "s.json").read_text())["regions"]
    # Then that value is null and named with what it was; every other value is a finite number
    hippocampus = next(r for r in written if r["name"] == "hippocampus")
    assert hippocampus["features_not_finite"] == {"original_firstorder_RobustMeanAbsoluteDeviation": "nan"}
    assert hippocampus["features"]["original_firstorder_RobustMeanAbsoluteDeviation"] is None
    others = [v for k, v in hippocampus["features"].items() if k not in hippocampus["features_not_finite"]]
    assert len(others) == 106
    assert all(isinstance(v, float | int) and math.isfinite(v) for v in others)
    # and an empty region has neither features nor a list of them
    lesion = next(r for r in written if r["name"] == "lesion")
    assert (lesion["features"], lesion["features_not_finite"]) == (None, None)


def test_nan_and_both_infinities_are_told_apart() -> None:
    from radiomics_job.features import finite

    features, not_finite = finite({"a": 1.5, "b": math.nan, "c": math.inf, "d": -math.inf, "e": 0.0})
    assert features == {"a": 1.5, "b": None, "c": None, "d": None, "e": 0.0}
    assert not_finite == {"b": "nan", "c": "inf", "d": "-inf"}


def _result_with_a_null_feature() -> dict[str, Any]:
    return {
        "series_uid": "1.2.3",
        "patient_id": "pt-1",
        "study_uid": "1.2",
        "study_date": "2024-01-02",
        "status": "ok",
        "model_version": "m",
        "params_version": "p",
        "regions": [
            {
                "label": 2,
                "name": "hippocampus",
                "voxels": 2,
                "volume_mm3": 2.5,
                "features": {"original_firstorder_Mean": 3, "original_glcm_Imc1": None, "x_legacy": math.nan},
                "features_not_finite": {"original_glcm_Imc1": "nan"},
            }
        ],
    }


def test_null_feature_values_reach_features_radiomics_and_the_imaging_features() -> None:
    # Given a job result whose hippocampus has a null (not finite) feature, and a legacy NaN
    import datetime as dt

    import pyarrow as pa

    from mmhealth.features.imaging import imaging_features
    from mmhealth.imaging.radiomics import feature_rows

    # When it becomes features.radiomics rows and then imaging features
    rows = feature_rows([_result_with_a_null_feature()], "run-1")
    imaging = imaging_features(
        rows, pa.table({"patient_id": ["pt-1"], "index_date": [dt.date(2024, 6, 1)]})
    ).to_pylist()
    # Then the null stays null, the NaN becomes null, the number stays a number
    assert rows["features"].to_pylist() == [
        [("original_firstorder_Mean", 3.0), ("original_glcm_Imc1", None), ("x_legacy", None)]
    ]
    assert imaging[0]["hippocampus_glcm_imc1"] is None
    assert imaging[0]["hippocampus_firstorder_mean"] == 3.0


def test_null_feature_values_round_trip_through_iceberg(aws: SimpleNamespace) -> None:
    # Given features.radiomics rows with a null feature value
    from mmhealth.imaging.radiomics import feature_rows
    from mmhealth.lakehouse.catalog import read_table, replace_all, replace_rows

    rows = feature_rows([_result_with_a_null_feature()], "run-1")
    # When they are committed to the Iceberg table and read back
    replace_rows("features.radiomics", rows, "run-1", replace_all)
    back = read_table("features.radiomics")
    # Then the null is still there
    assert back is not None
    assert back["features"].to_pylist() == rows["features"].to_pylist()
    assert ("original_glcm_Imc1", None) in back["features"].to_pylist()[0]


# ------------------------------------------------------------------------------------------- the supervisor


def _nothing() -> None:
    pass


def _cannot_start() -> None:
    raise RuntimeError("no weights here")


def _square(value: int) -> int:
    return value * value


def _segfault() -> None:
    ctypes.string_at(0)  # a read through a null pointer in native code: SIGSEGV


def _sleep(seconds: float) -> str:
    time.sleep(seconds)
    return "woke"


def _raise() -> None:
    raise ValueError("a bug")


def test_the_supervisor_outlives_a_segfault_a_hang_and_an_exception() -> None:
    # Given one worker and tasks that crash it, hang in it, raise in it, between ordinary ones
    tasks = [
        Task("crash", _segfault, ()),
        Task("before", _square, (3,)),
        Task("hang", _sleep, (60,), seconds=1.0),
        Task("bug", _raise, ()),
        Task("after", _square, (4,)),
    ]
    with Supervisor(1, _nothing) as supervisor:
        for task in tasks:
            supervisor.submit(task)
        # When every task has ended
        done = {}
        while supervisor.outstanding:
            ended = supervisor.next_done()
            done[ended.task.key] = ended
        # Then each ended its own way, and a fresh worker took the tasks after a crash or a hang
        assert {key: d.status for key, d in done.items()} == {
            "crash": DIED,
            "before": COMPLETED,
            "hang": TIMED_OUT,
            "bug": FAILED,
            "after": COMPLETED,
        }
        assert "killed by SIGSEGV" in done["crash"].detail
        assert done["hang"].detail == "still running after 1 s"
        assert 1.0 <= done["hang"].seconds < 10
        assert done["bug"].detail.startswith("ValueError: a bug at test_isolation.py:")
        assert (done["before"].result, done["after"].result) == (9, 16)
        assert supervisor.spawned == 3  # the first worker, then one after the crash and one after the hang
    # and nothing outlives it
    import multiprocessing

    assert multiprocessing.active_children() == []


def test_workers_that_cannot_start_are_a_job_error_not_an_endless_respawn() -> None:
    with Supervisor(2, _cannot_start) as supervisor:
        supervisor.submit(Task("a", _square, (2,)))
        with pytest.raises(WorkerStartError, match="3 workers in a row could not start"):
            supervisor.next_done()


# -------------------------------------------------------------------------------------------- the whole job


def test_a_killed_worker_and_a_hung_series_fail_alone(
    tmp_path: Path, synthetic_manifests: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    from radiomics_job.cli import main

    caplog.set_level(logging.INFO, logger="radiomics_job")
    # Given two good series and two manifests that are named pipes: one the test will kill the worker of,
    # one nobody ever writes (named so that they are handed out first)
    manifests = tmp_path / "manifests"
    good = _good_manifests(manifests, synthetic_manifests, 2)
    doomed, stuck = manifests / "0-doomed.json", manifests / "0-stuck.json"
    os.mkfifo(doomed)
    os.mkfifo(stuck)
    killed: list[int] = []

    def kill_the_reader_of_doomed() -> None:
        fd, pid = _reader_of(doomed)
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)
        os.close(fd)

    killer = threading.Thread(target=kill_the_reader_of_doomed, daemon=True)
    killer.start()
    # When the job runs with two workers and a 5 s limit per series
    output = tmp_path / "out"
    started = time.monotonic()
    code = main(
        ["--input", str(manifests), "--output", str(output), "--workers", "2", "--series-timeout", "5"]
    )
    killer.join(5)
    # Then it ran, the good series are ok, and each bad one has its reason
    assert code == 0
    assert killed
    documents = _documents(output)
    assert {uid: d["status"] for uid, d in documents.items()} == {
        "0-doomed": "error",
        "0-stuck": "error",
        **{uid: "ok" for uid in good},
    }
    died, hung = documents["0-doomed"]["error"], documents["0-stuck"]["error"]
    assert died["reason"] == "worker-died"
    assert died["detail"].startswith("the worker process died in load after ")
    assert "killed by SIGKILL" in died["detail"]
    assert hung == {
        "reason": "series-timeout",
        "detail": "stopped in load: over the per-series time limit of 5 s (--series-timeout)",
    }
    assert documents["0-stuck"]["seconds"]["load"] >= 4.5
    assert time.monotonic() - started < 60
    # and job.json and the per-series log lines count them by reason
    job = json.loads((output / "job.json").read_text())
    assert (job["ok"], job["errors"], job["series_timeout"]) == (
        2,
        {"series-timeout": 1, "worker-died": 1},
        5.0,
    )
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("series {")]
    assert sum('"reason": "worker-died"' in line for line in lines) == 1
    assert sum('"reason": "series-timeout"' in line for line in lines) == 1
    # and no worker is left
    import multiprocessing

    assert multiprocessing.active_children() == []
    assert _gone(killed[0])


def test_sigterm_stops_the_job_and_all_its_workers(tmp_path: Path, synthetic_manifests: list[Path]) -> None:
    # Given a job whose worker is busy (blocked on a manifest that is a named pipe)
    manifests = tmp_path / "manifests"
    _good_manifests(manifests, synthetic_manifests, 1)
    os.mkfifo(manifests / "0-stuck.json")
    job = subprocess.Popen(
        [
            *(sys.executable, "-m", "radiomics_job", "--input", str(manifests)),
            *("--output", str(tmp_path / "out"), "--workers", "2", "--device", "cpu"),
        ],
        env={**os.environ, "PYTHONPATH": str(JOB_HOME)},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        fd, worker = _reader_of(manifests / "0-stuck.json")
        children = {
            int(stat.parent.name)
            for stat in Path("/proc").glob("[0-9]*/stat")
            if stat.exists() and _ppid(stat) == job.pid
        }
        assert worker in children
        # When the job is told to stop, as SageMaker or Batch stop a job
        job.send_signal(signal.SIGTERM)
        _, stderr = job.communicate(timeout=30)
        os.close(fd)
    finally:
        job.kill()
    # Then it exits 128 + SIGTERM, saying why, and none of its processes outlives it
    assert job.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    assert "job stopped by SIGTERM" in stderr
    deadline = time.monotonic() + 10  # multiprocessing's resource tracker leaves when its pipe closes
    while not all(_gone(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [pid for pid in children if not _gone(pid)] == []


def _ppid(stat: Path) -> int | None:
    try:
        return int(stat.read_text().rsplit(") ", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


@pytest.mark.slow
def test_the_j2k_instance_that_stopped_the_job_does_not_stop_it(
    tmp_path: Path, synthetic_manifests: list[Path]
) -> None:
    from radiomics_job.cli import main

    # Given good series and the instance that once ended the whole job (a NaN feature reached the JSON)
    manifests = tmp_path / "manifests"
    good = _good_manifests(manifests, synthetic_manifests, 2)
    (manifests / "j2k.json").write_text(
        json.dumps(
            {
                "series_uid": "j2k",
                "patient_id": "pt-j2k",
                "study_uid": "1.2.3",
                "study_date": None,
                "instances": [str(J2K_PIXELREP_MISMATCH)],
            }
        )
    )
    # When the job runs with two workers
    output = tmp_path / "out"
    assert main(["--input", str(manifests), "--output", str(output), "--workers", "2"]) == 0
    # Then the good series are ok and every document, the instance's too, is strict JSON
    documents = {p.stem: _strict(p.read_text()) for p in (output / "features").glob("*.json")}
    assert sorted(documents) == sorted([*good, "j2k"])
    assert all(documents[uid]["status"] == "ok" for uid in good)
    j2k = documents["j2k"]
    assert j2k["geometry"]["slices"] == 1
    for region in j2k["regions"]:
        for name in region["features_not_finite"] or {}:
            assert region["features"][name] is None


# ------------------------------------------------------------------------------------------------ the output


def test_a_document_that_cannot_be_written_is_replaced_by_its_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from radiomics_job.cli import _write
    from radiomics_job.storage import OutputSink

    sink = OutputSink(str(tmp_path / "out"), tmp_path)
    document = {
        "series_uid": "1.2.3",
        "status": "ok",
        "error": None,
        "seconds": {"total": 1.0},
        "geometry": {"spacing": [math.nan, 1.0, 1.0]},  # a value JSON cannot hold
        "regions": [{"name": "lesion"}],
    }
    # When it is written, Then the series' document says output-failed, naming the cause
    assert _write(sink, dict(document)) is True
    written = _strict((tmp_path / "out" / "features" / "1.2.3.json").read_text())
    assert written["status"] == "error"
    assert written["error"]["reason"] == "output-failed"
    assert "Out of range float values are not JSON compliant" in written["error"]["detail"]
    assert (written["geometry"], written["regions"]) == (None, [])
    assert not list((tmp_path / "out" / "features").glob(".*"))  # no half-written file
    # and when not even that can be written, it says so and does not raise
    (tmp_path / "out" / "features" / "1.2.3.json").unlink()
    (tmp_path / "out" / "features").rmdir()
    (tmp_path / "out" / "features").write_text("not a folder")
    assert _write(sink, dict(document)) is False
    assert "its error document could not be written either" in caplog.text
