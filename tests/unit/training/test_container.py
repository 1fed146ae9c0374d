"""The image cannot be built here (no Docker engine): check what it is built from instead."""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, version

from tests.container_build import (
    GLIBC_MINOR,
    assert_installs_one_lock,
    assert_lock_compiled_from,
    canonical,
    dockerfile_instructions,
    lock_command,
    lock_platform_glibc,
    option,
    pip_installs,
    requirement_pins,
)
from tests.unit.training.conftest import JOB_HOME

DOCKERFILE = JOB_HOME / "Dockerfile"
REQUIREMENTS = JOB_HOME / "requirements.txt"
LOCK = JOB_HOME / "requirements.lock"


def _instructions() -> list[tuple[str, list[str]]]:
    return dockerfile_instructions(DOCKERFILE)


def _pins() -> dict[str, str]:
    return requirement_pins(REQUIREMENTS)


def test_every_copy_source_exists_and_the_entrypoint_is_the_job() -> None:
    instructions = _instructions()
    copies = [args for op, args in instructions if op == "COPY" and not args[0].startswith("--from")]
    assert copies
    for args in copies:
        for source in args[:-1]:
            assert (JOB_HOME / source).exists(), f"COPY source {source} missing in {JOB_HOME}"
    entrypoint = [args for op, args in instructions if op == "ENTRYPOINT"][-1]
    # SageMaker appends `train`: python -m training_job train
    assert entrypoint[0] == "python"
    assert entrypoint[-2:] == ["-m", "training_job"]
    base = next(args[0] for op, args in instructions if op == "ARG" and args[0].startswith("PYTHON_IMAGE="))
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11\.\d+-slim-\w+", base)


def test_requirements_pin_the_dev_venvs_versions() -> None:
    pins = _pins()
    for name, pinned in pins.items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            raise AssertionError(f"{name} is pinned for the image but not in the dev venv") from None
        assert installed == pinned, f"{name}: requirements.txt {pinned}, venv {installed}"
    for needed in ("autogluon.tabular", "lightgbm", "scikit-learn", "pandas", "numpy", "pyarrow", "plotly"):
        assert needed in pins


def test_the_lock_is_requirements_txt_hashed_and_compiled_for_the_base_image() -> None:
    locked = assert_lock_compiled_from(LOCK, REQUIREMENTS)
    # requirements.txt pins every transitive package already: the lock adds hashes, not packages.
    assert set(locked) == {canonical(name) for name in _pins()}
    base = next(
        args[0] for op, args in _instructions() if op == "ARG" and args[0].startswith("PYTHON_IMAGE=")
    )
    python, distro = re.fullmatch(r"PYTHON_IMAGE=python:([\d.]+)-slim-(\w+)", base).groups()
    assert lock_platform_glibc(LOCK) == GLIBC_MINOR[distro], f"{LOCK.name} not resolved for {distro}"
    assert option(lock_command(LOCK), "--python-version") == python


def test_the_dockerfile_installs_only_the_lock_hash_checked() -> None:
    installs = pip_installs(_instructions())
    assert [assert_installs_one_lock(install, JOB_HOME) for install in installs] == [LOCK.name]
