"""template.yaml -> the CloudFormation template moto creates: loading, packaging, SAM transform, conditions."""

from __future__ import annotations

import json
import zipfile
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
import yaml

from mmpipe.local import template as tpl
from mmpipe.local.stack import references

REPO = Path(__file__).resolve().parents[3]
TEMPLATE = REPO / "template.yaml"


def _walk(node: Any) -> list[Any]:
    found = [node]
    if isinstance(node, dict):
        for value in node.values():
            found.extend(_walk(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_walk(value))
    return found


def _cloudformation(**overrides: str) -> dict[str, Any]:
    sam = tpl.load_sam_template(TEMPLATE)
    values = tpl.parameter_values(sam, overrides)
    localised = tpl.localise(sam, REPO, {"functions/": "s3://artifacts/functions.zip"})
    return tpl.resolve_conditions(tpl.transform(localised, values), values, "mmpipe-test")


def test_short_form_tags_are_parsed_without_changing_yaml_safe_load() -> None:
    template = tpl.load_sam_template(TEMPLATE)

    queue = template["Resources"]["LandingBucket"]["Properties"]["NotificationConfiguration"]
    assert queue["QueueConfigurations"][0]["Queue"] == {"Fn::GetAtt": ["IngestQueue", "Arn"]}
    assert template["Resources"]["IngestQueuePolicy"]["Properties"]["Queues"] == [{"Ref": "IngestQueue"}]
    # The tags are registered on a private loader, not on yaml.SafeLoader for the whole process.
    with pytest.raises(yaml.constructor.ConstructorError):
        yaml.safe_load("value: !Ref Something")


def test_parameter_values_are_defaults_overridden_and_validated() -> None:
    template = tpl.load_sam_template(TEMPLATE)

    values = tpl.parameter_values(template, {"PollSeconds": 1, "Stage": "prod"})

    assert values["PollSeconds"] == "1"
    assert values["Stage"] == "prod"
    assert values["ChunkSize"] == "25"  # the template's default
    with pytest.raises(tpl.TemplateError, match="unknown template parameter"):
        tpl.parameter_values(template, {"PollSecs": 1})
    with pytest.raises(tpl.TemplateError, match="not one of"):
        tpl.parameter_values(template, {"Stage": "qa"})


def test_localise_points_code_at_s3_and_inlines_the_state_machine_definition() -> None:
    template = tpl.load_sam_template(TEMPLATE)
    assert tpl.local_code_uris(template) == {"functions/"}

    localised = tpl.localise(template, REPO, {"functions/": "s3://artifacts/functions.zip"})

    assert localised["Globals"]["Function"]["CodeUri"] == "s3://artifacts/functions.zip"
    machine = localised["Resources"]["PipelineStateMachine"]["Properties"]
    assert "DefinitionUri" not in machine
    asl = json.loads((REPO / "statemachines/pipeline.asl.json").read_text())
    assert machine["Definition"] == asl
    # The input template is left alone.
    assert template["Globals"]["Function"]["CodeUri"] == "functions/"


def test_zip_code_is_deterministic_and_leaves_bytecode_out(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "__pycache__").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "handler.py").write_text("def lambda_handler(event, context):\n    return event\n")
    (package / "__pycache__" / "handler.cpython-311.pyc").write_bytes(b"\0")

    first, second = tpl.zip_code(tmp_path), tpl.zip_code(tmp_path)

    assert first == second
    names = zipfile.ZipFile(BytesIO(first)).namelist()
    assert names == ["pkg/__init__.py", "pkg/handler.py"]
    with pytest.raises(tpl.TemplateError, match="does not exist"):
        tpl.zip_code(tmp_path / "missing")


def test_transformed_template_has_no_conditional_leftovers_for_the_default_backend() -> None:
    cloudformation = _cloudformation()

    nodes = _walk(cloudformation)
    assert not [n for n in nodes if isinstance(n, dict) and ("Fn::If" in n or n == tpl.NO_VALUE)]
    policies = cloudformation["Resources"]["GenomicImportFunctionRole"]["Properties"]["Policies"]
    assert all(isinstance(p, dict) and "PolicyName" in p for p in policies)
    assert "omics:" not in json.dumps(policies)
    function = cloudformation["Resources"]["GenomicImportFunction"]["Properties"]
    assert function["Environment"]["Variables"]["HEALTHOMICS_ROLE_ARN"] == ""
    assert function["Code"] == {"S3Bucket": "artifacts", "S3Key": "functions.zip"}
    assert "Conditions" not in cloudformation


def test_healthomics_backend_keeps_its_conditional_policy() -> None:
    cloudformation = _cloudformation(
        GenomicBackend="healthomics",
        HealthOmicsImportRoleName="omics-import",
        HealthOmicsVariantStoreName="v",
    )

    policies = json.dumps(cloudformation["Resources"]["GenomicImportFunctionRole"]["Properties"]["Policies"])
    assert "omics:StartVariantImportJob" in policies
    variables = cloudformation["Resources"]["GenomicImportFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["HEALTHOMICS_ROLE_ARN"] == {
        "Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/${HealthOmicsImportRoleName}"
    }


def test_healthlake_backend_grants_the_import_and_poll_what_they_call() -> None:
    cloudformation = _cloudformation(
        ClinicalBackend="healthlake",
        HealthLakeDatastoreId="9f2c4e7a1b3d5f60718293a4b5c6d7e8",
        HealthLakeKmsKeyId="fbbbfee3-20b3-42a5-a99d-c48c655ed545",
    )

    resources = cloudformation["Resources"]
    importer = json.dumps(resources["ClinicalImportFunctionRole"]["Properties"]["Policies"])
    assert "healthlake:StartFHIRImportJob" in importer
    assert "iam:PassRole" in importer
    poller = json.dumps(resources["ClinicalPollFunctionRole"]["Properties"]["Policies"])
    assert "healthlake:DescribeFHIRImportJob" in poller
    assert "kms:Decrypt" in poller
    trust = resources["HealthLakeImportRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust[0]["Principal"] == {"Service": "healthlake.amazonaws.com"}
    variables = resources["ClinicalImportFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["HEALTHLAKE_ROLE_ARN"] == {"Fn::GetAtt": ["HealthLakeImportRole", "Arn"]}
    assert "Rules" not in cloudformation


def test_default_backend_has_no_healthlake_role_or_grants() -> None:
    resources = _cloudformation()["Resources"]

    assert "HealthLakeImportRole" not in resources
    assert "healthlake:" not in json.dumps(resources["ClinicalImportFunctionRole"]["Properties"])
    assert "healthlake:" not in json.dumps(resources["ClinicalPollFunctionRole"]["Properties"])


@pytest.mark.parametrize(
    ("overrides", "missing"),
    [
        ({"ClinicalBackend": "healthlake"}, "HealthLakeDatastoreId and HealthLakeKmsKeyId"),
        ({"GenomicBackend": "healthomics"}, "HealthOmicsVariantStoreName and HealthOmicsImportRoleName"),
    ],
)
def test_a_backend_without_its_parameters_is_refused_by_the_template_rules(
    overrides: dict[str, str], missing: str
) -> None:
    with pytest.raises(tpl.TemplateError, match=missing):
        _cloudformation(**overrides)


def test_conditions_drop_resources_outputs_and_no_values() -> None:
    template = {
        "Mappings": {"Stages": {"dev": {"Big": "no"}}},
        "Conditions": {
            "IsDev": {"Fn::Equals": [{"Ref": "Stage"}, "dev"]},
            "IsBig": {"Fn::Equals": [{"Fn::FindInMap": ["Stages", {"Ref": "Stage"}, "Big"]}, "yes"]},
            "DevNotBig": {"Fn::And": [{"Condition": "IsDev"}, {"Fn::Not": [{"Condition": "IsBig"}]}]},
            "Either": {
                "Fn::Or": [{"Condition": "IsBig"}, {"Fn::Equals": [{"Ref": "AWS::Region"}, "us-east-1"]}]
            },
        },
        "Resources": {
            "Kept": {
                "Type": "AWS::SNS::Topic",
                "Condition": "DevNotBig",
                "Properties": {
                    "Tags": [{"Fn::If": ["IsBig", {"Key": "a", "Value": "b"}, {"Ref": "AWS::NoValue"}]}],
                    "DisplayName": {"Fn::If": ["Either", "either", "neither"]},
                    "TopicName": {"Fn::If": ["IsBig", "big", {"Ref": "AWS::NoValue"}]},
                },
            },
            "Dropped": {"Type": "AWS::SNS::Topic", "Condition": "IsBig"},
        },
        "Outputs": {"Gone": {"Condition": "IsBig", "Value": "x"}, "Here": {"Value": "y"}},
    }

    result = tpl.resolve_conditions(template, {"Stage": "dev"}, "stack")

    assert set(result["Resources"]) == {"Kept"}
    assert result["Resources"]["Kept"] == {
        "Type": "AWS::SNS::Topic",
        "Properties": {"Tags": [], "DisplayName": "either"},
    }
    assert set(result["Outputs"]) == {"Here"}


def test_an_unsupported_condition_is_refused() -> None:
    template = {
        "Conditions": {"Odd": {"Fn::Select": [0, ["a"]]}},
        "Resources": {"R": {"Type": "T", "Condition": "Odd"}},
    }

    with pytest.raises(tpl.TemplateError, match="unsupported construct"):
        tpl.resolve_conditions(template, {}, "stack")


def test_references_finds_ref_getatt_and_sub_targets() -> None:
    node = {
        "A": {"Ref": "Bucket"},
        "B": {"Fn::GetAtt": ["Queue", "Arn"]},
        "C": {"Fn::GetAtt": "Topic.TopicName"},
        "D": {"Fn::Sub": "arn:${AWS::Partition}:s3:::${Lake}/${Db.Name}/${!Literal}"},
        "E": {"Fn::Sub": ["${prefix}-${Table}", {"prefix": {"Ref": "Stage"}}]},
    }

    assert references(node) == {"Bucket", "Queue", "Topic", "Lake", "Db", "Table", "Stage"}
