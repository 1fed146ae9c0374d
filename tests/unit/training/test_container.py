"""The image cannot be built here (no Docker engine): check what it is built from instead."""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, version

from tests.container_build import dockerfile_instructions, requirement_pins
from tests.unit.training.conftest import JOB_HOME

DOCKERFILE = JOB_HOME / "Dockerfile"
REQUIREMENTS = JOB_HOME / "requirements.txt"


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
