"""The image cannot be built here (no Docker): check what it is built from instead."""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, version

from tests.container_build import dockerfile_instructions, requirement_pins
from tests.unit.radiomics.conftest import JOB_HOME

DOCKERFILE = JOB_HOME / "Dockerfile"
REQUIREMENTS = JOB_HOME / "requirements.txt"


def _instructions() -> list[tuple[str, list[str]]]:
    return dockerfile_instructions(DOCKERFILE)


def _pins() -> dict[str, str]:
    return requirement_pins(REQUIREMENTS)


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
    default_base = next(
        args[0] for op, args in instructions if op == "ARG" and args[0].startswith("CUDA_IMAGE=")
    )
    assert re.fullmatch(r"CUDA_IMAGE=nvidia/cuda:\d+\.\d+\.\d+-\w+-ubuntu\d+\.\d+", default_base)
    torch_install = " ".join(
        " ".join(args) for op, args in instructions if op == "RUN" and "torch==" in " ".join(args)
    )
    assert f"torch=={_pins()['torch']}" in torch_install


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
