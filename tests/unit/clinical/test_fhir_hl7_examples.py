"""Official HL7 FHIR R4 resources (tests/data/fhir_examples, CC0): each is accepted or rejected with a reason,
never a crash, as NDJSON and as one Bundle; strict mode agrees with the R4 models on which are invalid.
"""

from __future__ import annotations

import gzip
import importlib
import inspect
import json
import pkgutil
from pathlib import Path
from typing import Any

import pytest

from mmhealth.clinical import r4
from mmhealth.clinical.fhir import flatten_fhir
from tests.conftest import REPO
from tests.unit.clinical.fhir_files import LINEAGE, pretty

EXAMPLES = REPO / "tests" / "data" / "fhir_examples" / "hl7.fhir.r4.core-4.0.1-subset.ndjson.gz"
# Not valid R4, although published in the core package: an id longer than 64 characters (and 10
# SearchParameters without their mandatory `base`: see without_base).
TOO_LONG_ID = "questionnaireresponse-extensions-QuestionnaireResponse-item-subject"


@pytest.fixture(scope="module")
def examples() -> list[dict[str, Any]]:
    return [json.loads(line) for line in gzip.decompress(EXAMPLES.read_bytes()).splitlines()]


def without_base(examples: list[dict[str, Any]]) -> set[str]:
    return {e["id"] for e in examples if e["resourceType"] == "SearchParameter" and "base" not in e}


def test_every_example_is_accepted_or_rejected_with_a_reason(examples: list[dict[str, Any]]) -> None:
    # Given 97 official resources of 10 types in one gzip NDJSON file
    assert len(examples) == 97
    # When flattened
    result = flatten_fhir(EXAMPLES, **LINEAGE)
    # Then each line is either a row or a problem, and the only problem is the over-long id
    assert sum(result.accepted.values()) + len(result.problems) == len(examples)
    assert [(p.reason, p.resource_type) for p in result.problems] == [("invalid-resource", "SearchParameter")]
    assert "id is not a FHIR id" in result.problems[0].detail
    # And every accepted one is kept whole in other_resource (conformance resources have no table)
    rows = result.tables["clinical.other_resource"].to_pylist()
    assert result.other_types == result.accepted
    by_key = {(e["resourceType"], e["id"]): e for e in examples}
    for row in rows:
        kept = json.loads(row["resource_json"])
        assert (kept["resourceType"], kept.get("url")) == (
            row["resource_type"],
            by_key[row["resource_type"], row["resource_id"]].get("url"),
        )


def test_the_examples_as_one_bundle_give_the_same_outcome_with_entry_lines(
    tmp_path: Path, examples: list[dict[str, Any]]
) -> None:
    # One fullUrl per entry (R4 bdl-7: entries sharing one would be duplicate-full-url problems)
    entries = [{"fullUrl": f"urn:example:{i}", "resource": e} for i, e in enumerate(examples)]
    path = tmp_path / "examples.json"
    text = pretty({"resourceType": "Bundle", "type": "collection", "entry": entries})
    path.write_bytes(text)
    result = flatten_fhir(path, **LINEAGE)
    [problem] = result.problems
    assert (problem.reason, examples[problem.entry]["id"]) == ("invalid-resource", TOO_LONG_ID)
    assert problem.line is not None
    assert text.decode().split("\n")[problem.line - 1] == "    {"
    assert sum(result.accepted.values()) == len(examples) - 1


def test_strict_mode_also_rejects_what_the_r4_models_reject(examples: list[dict[str, Any]]) -> None:
    pytest.importorskip("fhirclient")
    result = flatten_fhir(EXAMPLES, **LINEAGE, strict=True)
    rejected = {p.resource_id for p in result.problems if p.resource_id}
    assert rejected == without_base(examples)
    assert len(rejected) == 10
    assert all('Non-optional property "base"' in p.detail for p in result.problems if p.resource_id)
    assert len(result.problems) == 11  # and the over-long id, found before the models run


def test_the_r4_type_list_is_fhirclients_r4_models() -> None:
    # fhirclient's models are generated from the same R4 4.0.1 StructureDefinitions as r4.RESOURCE_TYPES
    models = pytest.importorskip("fhirclient.models")
    from fhirclient.models.resource import Resource

    found = set()
    for module in pkgutil.iter_modules(models.__path__):
        if module.name.endswith("_tests"):
            continue
        for _, cls in inspect.getmembers(
            importlib.import_module(f"fhirclient.models.{module.name}"), inspect.isclass
        ):
            if issubclass(cls, Resource) and cls.__name__ == getattr(cls, "resource_type", None):
                found.add(cls.__name__)
    assert found - {"Resource", "DomainResource"} == r4.RESOURCE_TYPES
    assert len(r4.RESOURCE_TYPES) == 146
    assert not r4.RESOURCE_TYPES & r4.LATER_RESOURCE_TYPES
