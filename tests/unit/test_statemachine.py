"""statemachines/pipeline.asl.json is what mmpipe.statemachine builds, and template.yaml wires all of it."""

from __future__ import annotations

import json
import re

from cfnlint.decode import decode

from mmpipe.statemachine import BRANCHES, modality_branch, render
from tests.conftest import REPO

ASL = REPO / "statemachines" / "pipeline.asl.json"


def test_the_committed_definition_is_the_generated_one() -> None:
    # Regenerate with: .venv/bin/python -m mmpipe.statemachine > statemachines/pipeline.asl.json
    assert ASL.read_text() == render()


def test_every_modality_branch_has_the_same_shape() -> None:
    shapes = {
        modality: json.dumps(modality_branch(modality, prefix)).replace(prefix, "X").replace(modality, "x")
        for modality, prefix in BRANCHES.items()
    }
    assert len(set(shapes.values())) == 1


def test_every_placeholder_has_a_substitution_and_every_function_is_invoked() -> None:
    template, errors = decode(str(REPO / "template.yaml"))
    assert not errors
    machine = template["Resources"]["PipelineStateMachine"]["Properties"]
    placeholders = set(re.findall(r"\$\{(\w+)\}", ASL.read_text()))
    assert placeholders == set(machine["DefinitionSubstitutions"])
    functions = {k for k, r in template["Resources"].items() if r["Type"] == "AWS::Serverless::Function"}
    invoked = {p.removesuffix("Arn") for p in placeholders if p.endswith("FunctionArn")}
    assert functions - invoked == {"TriggerFunction"}  # the trigger starts executions; it is not a state
    allowed = {
        p["LambdaInvokePolicy"]["FunctionName"]["Ref"]
        for p in machine["Policies"]
        if "LambdaInvokePolicy" in p
    }
    assert allowed == invoked


def test_the_imaging_branch_is_the_common_shape_then_the_radiomics_job() -> None:
    from mmpipe.statemachine import imaging_branch

    common = modality_branch("imaging", "Imaging")["States"]
    imaging = imaging_branch()["States"]
    # Every common state is there unchanged, except the catalog step, which now keeps its result and
    # hands over to the radiomics job instead of ending the branch
    assert {k: v for k, v in imaging.items() if k in common and k != "CatalogImaging"} == {
        k: v for k, v in common.items() if k != "CatalogImaging"
    }
    assert imaging["CatalogImaging"]["Next"] == "StartRadiomics"
    assert imaging["CatalogImaging"]["ResultPath"] == "$.catalog"
    tail = set(imaging) - set(common)
    assert tail == {
        "StartRadiomics",
        "RadiomicsFinished",
        "WaitForRadiomics",
        "PollRadiomics",
        "CatalogRadiomics",
    }
    assert imaging["CatalogRadiomics"]["End"] is True
    # And a job failure fails the branch with its cause, as every other failure in the branch does
    for state in ("StartRadiomics", "PollRadiomics", "CatalogRadiomics"):
        assert imaging[state]["Catch"][0]["Next"] == "ImagingFailed"
