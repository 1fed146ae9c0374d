"""The image cannot be built here (no Docker): check what it is built from instead."""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import PurePosixPath

from radiomics_job import DEFAULT_FALLBACK_PARAMS, DEFAULT_PARAMS, DEFAULT_WEIGHTS, HOME
from tests.container_build import (
    GLIBC_MINOR,
    assert_installs_one_lock,
    assert_lock_compiled_from,
    dockerfile_instructions,
    lock_command,
    lock_pins,
    lock_platform_glibc,
    option,
    pip_installs,
    requirement_pins,
)
from tests.unit.radiomics.conftest import JOB_HOME

DOCKERFILE = JOB_HOME / "Dockerfile"
REQUIREMENTS = JOB_HOME / "requirements.txt"
LOCK = JOB_HOME / "requirements.lock"
BUILD_REQUIREMENTS = JOB_HOME / "build-requirements.txt"
BUILD_LOCK = JOB_HOME / "build-requirements.lock"


def _instructions() -> list[tuple[str, list[str]]]:
    return dockerfile_instructions(DOCKERFILE)


def _pins() -> dict[str, str]:
    return requirement_pins(REQUIREMENTS)


def _base_image() -> str:
    return next(args[0] for op, args in _instructions() if op == "ARG" and args[0].startswith("CUDA_IMAGE="))


def test_every_copy_source_of_the_dockerfile_exists() -> None:
    copies = [args for op, args in _instructions() if op == "COPY" and not args[0].startswith("--from")]
    assert copies, "no COPY instruction"
    for args in copies:
        for source in args[:-1]:
            assert (JOB_HOME / source).exists(), f"COPY source {source} missing in {JOB_HOME}"


def test_the_entrypoint_is_the_job_and_the_base_image_is_pinned() -> None:
    instructions = _instructions()
    entrypoint = [args for op, args in instructions if op == "ENTRYPOINT"]
    assert entrypoint
    assert "python" in entrypoint[-1][0]
    assert entrypoint[-1][-2:] == ["-m", "radiomics_job"]
    assert re.fullmatch(r"CUDA_IMAGE=nvidia/cuda:\d+\.\d+\.\d+-\w+-ubuntu\d+\.\d+", _base_image())


def test_the_image_holds_the_jobs_default_model_and_parameters() -> None:
    # The paths the COPY instructions create; the package's defaults sit beside it in the image too.
    image_files, image_home = set(), None
    for op, args in _instructions():
        if op != "COPY" or args[0].startswith("--from"):
            continue
        *sources, destination = args
        for source in sources:
            local = JOB_HOME / source
            if source == "radiomics_job":
                image_home = PurePosixPath(destination).parent
            if local.is_dir():
                image_files |= {
                    PurePosixPath(destination, f.relative_to(local).as_posix()) for f in local.rglob("*")
                }
            elif destination.endswith("/") or len(sources) > 1:
                image_files.add(PurePosixPath(destination, local.name))
            else:
                image_files.add(PurePosixPath(destination))
    assert image_home is not None, "radiomics_job is not copied into the image"
    for default in (DEFAULT_WEIGHTS, DEFAULT_PARAMS, DEFAULT_FALLBACK_PARAMS):
        in_image = image_home / default.relative_to(HOME).as_posix()
        assert in_image in image_files, f"{in_image} (the job's default) is not in the image"


def test_the_lock_holds_every_pin_hashed_and_was_compiled_for_the_base_image() -> None:
    locked = assert_lock_compiled_from(LOCK, REQUIREMENTS)
    # PyPI's Linux torch is a CUDA build: its CUDA libraries come locked with it.
    assert any(name.startswith("nvidia-cudnn") for name in locked)
    base = _base_image()
    cuda = re.search(r":(\d+\.\d+)\.", base)
    assert cuda, base
    assert locked["cuda-toolkit"].startswith(cuda.group(1) + "."), (
        f"torch's CUDA {locked['cuda-toolkit']}, base {base}"
    )
    distro = base.rsplit("-", 1)[-1]
    build_locked = assert_lock_compiled_from(BUILD_LOCK, BUILD_REQUIREMENTS)
    for lock in (LOCK, BUILD_LOCK):
        assert lock_platform_glibc(lock) == GLIBC_MINOR[distro], f"{lock.name} not resolved for {distro}"
        # Ubuntu's python3.11, whatever its patch release.
        assert option(lock_command(lock), "--python-version") == "3.11"
    # The extension is compiled against the numpy it runs with; the runtime lock keeps the build's setuptools.
    shared = set(build_locked) & set(locked)
    assert {"numpy", "setuptools"} <= shared
    assert all(build_locked[name] == locked[name] for name in shared), {
        n: (build_locked[n], locked[n]) for n in shared
    }
    # What pyradiomics-bhklab's [build-system] requires (setuptools, numpy, versioneer).
    assert {"setuptools", "numpy", "versioneer"} <= set(build_locked)


def test_the_dockerfile_installs_the_locks_hash_checked_build_requirements_first() -> None:
    installs = pip_installs(_instructions())
    assert [assert_installs_one_lock(install, JOB_HOME) for install in installs] == [
        BUILD_LOCK.name,
        LOCK.name,
    ]
    runtime = installs[1]
    # Without build isolation: the sdists build against the hash-checked build lock, not against packages pip
    # would fetch unpinned into an isolated build environment.
    assert "--no-build-isolation" in runtime
    from_source = [word.split("=", 1)[1].split(",") for word in runtime if word.startswith("--no-binary=")]
    assert from_source
    assert set(from_source[0]) <= set(lock_pins(LOCK)), from_source
    assert "pyradiomics-bhklab" in from_source[0]


def test_requirements_pin_the_versions_of_the_dev_venv() -> None:
    # Packages the venv has must be pinned at the venv's version (torch without its +cpu/+cu local label).
    shared = 0
    for name, pinned in _pins().items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            continue  # container-only (the JPEG 2000 decoders)
        shared += 1
        assert installed.split("+")[0] == pinned, f"{name}: requirements.txt {pinned}, venv {installed}"
    assert shared >= 8
    for needed in (
        "torch",
        "monai",
        "pyradiomics-bhklab",
        "simpleitk",
        "pydicom",
        "numpy",
        "boto3",
        "pylibjpeg-openjpeg",
        "pylibjpeg-libjpeg",
    ):
        assert needed in _pins()
