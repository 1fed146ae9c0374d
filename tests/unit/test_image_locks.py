"""The lock-file checks the job images' tests rely on (tests/container_build.py) refuse what pip's
--require-hashes would refuse, and the tools that make the locks are locked the same way."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.container_build import (
    REPO,
    assert_installs_one_lock,
    canonical,
    lock_command,
    lock_pins,
    requirement_pins,
)

HASH = "--hash=sha256:" + "0" * 64


@pytest.mark.parametrize(
    "entry",
    [
        "six==1.17.0",  # no hash
        "six>=1.17.0 " + HASH,  # not an exact pin
        "six==1.17.0 --hash=md5:" + "0" * 32,  # not sha256
        "six @ https://example.org/six-1.17.0.tar.gz " + HASH,  # a URL
        "--index-url https://example.org/simple",  # an option line
    ],
)
def test_a_lock_entry_without_an_exact_pin_and_sha256_hashes_is_refused(tmp_path: Path, entry: str) -> None:
    lock = tmp_path / "requirements.lock"
    lock.write_text(f"numpy==2.2.6 \\\n    {HASH}\n    # via -r requirements.txt\n{entry}\n")
    with pytest.raises(AssertionError):
        lock_pins(lock)


def test_a_well_formed_lock_reads_with_canonical_names(tmp_path: Path) -> None:
    lock = tmp_path / "requirements.lock"
    lock.write_text(
        f"Autogluon.Tabular==1.5.0 \\\n    {HASH} \\\n    {HASH.replace('0', 'a')}\n    # via x\n"
    )
    assert lock_pins(lock) == {"autogluon-tabular": "1.5.0"}


@pytest.mark.parametrize(
    "install",
    [
        "pip install --no-deps --only-binary=:all: -r /tmp/requirements.lock",
        "pip install --require-hashes --only-binary=:all: -r /tmp/requirements.lock",
        "pip install --require-hashes --no-deps -r /tmp/requirements.lock",
        "pip install --require-hashes --no-deps --only-binary=:all: -r /tmp/requirements.lock torch",
        "pip install --require-hashes --no-deps --only-binary=:all: -r /tmp/requirements.txt",
    ],
)
def test_an_install_that_is_not_exactly_one_hash_checked_lock_is_refused(
    tmp_path: Path, install: str
) -> None:
    (tmp_path / "requirements.lock").write_text("")
    (tmp_path / "requirements.txt").write_text("")
    with pytest.raises(AssertionError):
        assert_installs_one_lock(install.split(), tmp_path)


def test_the_lock_tools_are_locked_with_hashes_at_their_pins() -> None:
    tools = REPO / "containers" / "image-tools.lock"
    locked = lock_pins(tools)
    assert lock_command(tools)[3] == "containers/image-tools.txt"
    for name, version in requirement_pins(REPO / "containers" / "image-tools.txt").items():
        assert locked[canonical(name)] == version
    assert {"uv", "pip-audit"} <= set(locked)
