"""Helpers of the on-call tests: the template as CloudFormation sees it, the metrics the code can emit (read
from the source, so a renamed metric breaks the dashboard test rather than the dashboard), and the EMF
documents a handler printed.

A plain module rather than a conftest: the test modules import these by name.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from cfnlint.decode import decode

from tests.conftest import REPO

FUNCTIONS = REPO / "functions" / "mmhealth"


def template() -> dict[str, Any]:
    decoded, errors = decode(str(REPO / "template.yaml"))
    assert not errors
    return dict(decoded)


def of_type(tpl: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in tpl["Resources"].items() if r["Type"] == resource_type}


def functions(tpl: dict[str, Any]) -> set[str]:
    return set(of_type(tpl, "AWS::Serverless::Function"))


# ------------------------------------------------------------------------------ metrics in the source


@dataclass
class Emitted:
    """What the code can publish: metric name patterns -> dimension names (besides `service`), and the
    constant values each dimension is given somewhere (e.g. job -> {"radiomics", "training", ...})."""

    dimensions: dict[str, set[frozenset[str]]] = field(default_factory=dict)
    values: dict[str, set[str]] = field(default_factory=dict)

    def match(self, name: str) -> set[frozenset[str]] | None:
        """The dimension sets of the emitted metric `name` matches (an f-string name is a pattern)."""
        found = [dims for pattern, dims in self.dimensions.items() if re.fullmatch(pattern, name)]
        return set().union(*found) if found else None


def _pattern(node: ast.expr) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return re.escape(node.value)
    if isinstance(node, ast.JoinedStr):  # f"Files_{kind}" -> Files_.+
        return "".join(re.escape(v.value) if isinstance(v, ast.Constant) else ".+" for v in node.values)
    return None  # a variable: the generic code in observability, not a metric of its own


def _callee(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def emitted_metrics(paths: Iterable[Any] | None = None) -> Emitted:
    """Every metric the Lambda package emits: `metrics.add_metric(name=...)` (no extra dimension),
    `metrics.add_dimensioned_metric("Name", unit, value, dim=...)`, `timed("Name", dim=...)` and
    `job_failed("job")` and `poll_job(run, "job", ...)` (JobsFailed{job})."""
    found = Emitted()
    for path in paths or sorted(FUNCTIONS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            callee = _callee(node)
            if callee == "add_metric":
                arg = next((k.value for k in node.keywords if k.arg == "name"), None)
                arg = arg or (node.args[0] if node.args else None)
                dims: set[str] = set()
            elif callee in ("add_dimensioned_metric", "timed"):
                arg = node.args[0] if node.args else None
                dims = {k.arg for k in node.keywords if k.arg and k.arg not in ("name", "unit", "value")}
                for k in node.keywords:
                    if k.arg in dims and isinstance(k.value, ast.Constant):
                        found.values.setdefault(k.arg, set()).add(k.value.value)
            elif callee == "job_failed" and node.args and isinstance(node.args[0], ast.Constant):
                found.values.setdefault("job", set()).add(node.args[0].value)
                continue
            elif callee == "poll_job" and len(node.args) > 1 and isinstance(node.args[1], ast.Constant):
                found.values.setdefault("job", set()).add(node.args[1].value)
                continue
            else:
                continue
            pattern = _pattern(arg) if arg is not None else None
            if pattern is not None:
                found.dimensions.setdefault(pattern, set()).add(frozenset(dims))
    return found


# ------------------------------------------------------------------------------ EMF printed by handlers


def emf_documents(stdout: str) -> list[dict[str, Any]]:
    """The CloudWatch EMF documents among the printed lines (the JSON logs are skipped)."""
    docs = []
    for line in stdout.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            docs.append(json.loads(line))
    return docs


def metric_values(docs: list[dict[str, Any]], name: str, **dimensions: str) -> list[float]:
    """Values of `name` published under exactly these dimensions plus `service`."""
    values: list[float] = []
    for doc in docs:
        (directive,) = doc["_aws"]["CloudWatchMetrics"]
        if name not in {m["Name"] for m in directive["Metrics"]}:
            continue
        if [set(d) for d in directive["Dimensions"]] != [{"service", *dimensions}]:
            continue
        if all(doc.get(k) == v for k, v in dimensions.items()):
            value = doc[name]
            values += value if isinstance(value, list) else [value]
    return values


def dimension_sets(docs: list[dict[str, Any]], name: str) -> list[set[str]]:
    """Every dimension set `name` was published under."""
    return [
        set(dims)
        for doc in docs
        for directive in doc["_aws"]["CloudWatchMetrics"]
        if name in {m["Name"] for m in directive["Metrics"]}
        for dims in directive["Dimensions"]
    ]
