"""The Lambda package as `sam build` makes it (functions/Makefile): under Lambda's size limit, and it works.

Builds one function's artifact directory with the Lambda-platform wheels (the same for every function:
they share CodeUri and requirements), then, in a Python that sees nothing but that directory and the
standard library, imports every handler of template.yaml and converts a VCF.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cfnlint.decode import decode

from tests.conftest import REPO

pytestmark = pytest.mark.slow

LAMBDA_UNZIPPED_LIMIT = 262_144_000  # bytes: function code and layers together


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("lambda-package")
    env = {**os.environ, "ARTIFACTS_DIR": str(out), "PYTHON": sys.executable}
    subprocess.run(
        ["make", "-s", "-C", str(REPO / "functions"), "build-GenomicImportFunction"], env=env, check=True
    )
    return out


def test_the_package_fits_lambdas_unzipped_limit(artifact: Path) -> None:
    size = sum(p.stat().st_size for p in artifact.rglob("*") if p.is_file() and not p.is_symlink())
    assert size < LAMBDA_UNZIPPED_LIMIT, f"{size / 1e6:.0f} MB"


def test_every_handler_imports_and_a_vcf_converts_from_the_package_alone(artifact: Path) -> None:
    template, errors = decode(str(REPO / "template.yaml"))
    assert not errors
    handlers = [
        r["Properties"]["Handler"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Serverless::Function"
    ]
    vcf = REPO / "tests" / "data" / "delivery" / "genomic" / "pt-0001.vcf"
    script = "\n".join(
        [
            "import importlib, sys",
            f"sys.path.insert(0, {str(artifact)!r})",
            *[
                f"assert callable(getattr(importlib.import_module({h.rsplit('.', 1)[0]!r}), {h.rsplit('.', 1)[1]!r}))"
                for h in handlers
            ],
            "from pathlib import Path",
            "from mmhealth.genomic.vcf import read_genotypes",
            f"t = read_genotypes(Path({str(vcf)!r}), source_key='k', object_id='o', run_id='r')",
            "import pyiceberg.catalog.glue, pyarrow.parquet",
            "print(t.num_rows)",
        ]
    )
    env = {"PATH": os.environ["PATH"], "AWS_DEFAULT_REGION": "us-east-1", "POWERTOOLS_TRACE_DISABLED": "true"}
    # -S: no site-packages, so only the package and the standard library are importable.
    result = subprocess.run([sys.executable, "-S", "-c", script], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "5"
