"""template.yaml -> the plain CloudFormation template moto's CloudFormation can create.

The steps are the ones `sam build` + `sam deploy` + CloudFormation perform in the cloud:
load the SAM YAML (short-form intrinsics), point local `CodeUri`s at a zip uploaded to S3, inline
`DefinitionUri` ASL files, run the SAM transform (aws-sam-translator, the library behind `sam`), and
evaluate `Conditions` (see `resolve_conditions` for why that cannot be left to moto).
"""

from __future__ import annotations

import copy
import io
import json
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from samtranslator.internal.managed_policies import get_bundled_managed_policy_map
from samtranslator.translator.transform import transform as sam_transform
from samtranslator.yaml_helper import intrinsics_multi_constructor

from mmpipe.local.process_env import ACCOUNT_ID, REGION

Template = dict[str, Any]

SERVERLESS_FUNCTION = "AWS::Serverless::Function"
SERVERLESS_STATE_MACHINE = "AWS::Serverless::StateMachine"
NO_VALUE = {"Ref": "AWS::NoValue"}


class TemplateError(ValueError):
    """The template (or a parameter override) cannot be prepared for the local runtime; says why."""


class _CfnYamlLoader(yaml.SafeLoader):
    """SafeLoader plus the CloudFormation short-form tags (`!Ref`, `!GetAtt A.B`, `!Sub`, ...).

    A subclass, so that the tags are not added to `yaml.SafeLoader` for the whole process as
    `samtranslator.yaml_helper.yaml_parse` does; the tag constructor itself is samtranslator's.
    """


_CfnYamlLoader.add_multi_constructor("!", intrinsics_multi_constructor)


def load_sam_template(path: Path) -> Template:
    """Parse a SAM/CloudFormation YAML (or JSON) template; raises TemplateError if it is not a mapping."""
    data = yaml.load(path.read_text(encoding="utf-8"), Loader=_CfnYamlLoader)  # noqa: S506 - SafeLoader subclass
    if not isinstance(data, dict) or "Resources" not in data:
        raise TemplateError(f"{path}: not a CloudFormation template (no Resources)")
    return data


def parameter_values(template: Template, overrides: Mapping[str, str | int | float]) -> dict[str, str]:
    """Defaults of the template's Parameters, overridden; raises TemplateError for an unknown name or a
    parameter with neither default nor override (CloudFormation would refuse the stack too)."""
    declared: dict[str, Any] = template.get("Parameters", {})
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        raise TemplateError(f"unknown template parameter(s) {unknown}; declared: {sorted(declared)}")
    values: dict[str, str] = {}
    for name, spec in declared.items():
        if name in overrides:
            values[name] = str(overrides[name])
        elif "Default" in spec:
            values[name] = str(spec["Default"])
        else:
            raise TemplateError(f"template parameter {name} has no Default; pass a value")
        allowed = spec.get("AllowedValues")
        if allowed is not None and values[name] not in [str(v) for v in allowed]:
            raise TemplateError(f"parameter {name}={values[name]!r} is not one of {allowed}")
    return values


def local_code_uris(template: Template) -> set[str]:
    """`CodeUri`s (Globals and functions) that are local folders, i.e. what `sam build` would package."""
    uris: set[str] = set()
    global_uri = template.get("Globals", {}).get("Function", {}).get("CodeUri")
    if _is_local_path(global_uri):
        uris.add(global_uri)
    for resource in template["Resources"].values():
        if resource.get("Type") == SERVERLESS_FUNCTION:
            uri = resource.get("Properties", {}).get("CodeUri")
            if _is_local_path(uri):
                uris.add(uri)
    return uris


def zip_code(folder: Path) -> bytes:
    """A deterministic zip of a Lambda code folder (no bytecode caches). Raises TemplateError if absent."""
    if not folder.is_dir():
        raise TemplateError(f"CodeUri folder {folder} does not exist")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_dir() or "__pycache__" in path.parts or path.suffix == ".pyc":
                continue
            info = zipfile.ZipInfo(path.relative_to(folder).as_posix(), date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


def localise(template: Template, template_dir: Path, code_locations: Mapping[str, str]) -> Template:
    """A copy with local CodeUris replaced (`code_locations`: local path -> s3:// URI) and every local
    `DefinitionUri` of a state machine inlined as `Definition`. Raises TemplateError on a missing file."""
    result = copy.deepcopy(template)
    globals_function = result.get("Globals", {}).get("Function", {})
    if _is_local_path(globals_function.get("CodeUri")):
        globals_function["CodeUri"] = code_locations[globals_function["CodeUri"]]
    for logical_id, resource in result["Resources"].items():
        properties = resource.get("Properties", {})
        if resource.get("Type") == SERVERLESS_FUNCTION and _is_local_path(properties.get("CodeUri")):
            properties["CodeUri"] = code_locations[properties["CodeUri"]]
        if resource.get("Type") == SERVERLESS_STATE_MACHINE and _is_local_path(
            properties.get("DefinitionUri")
        ):
            asl = template_dir / properties.pop("DefinitionUri")
            try:
                properties["Definition"] = json.loads(asl.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as error:
                raise TemplateError(f"{logical_id}: cannot read DefinitionUri {asl}: {error}") from error
    return result


class _BundledManagedPolicies:
    """The managed-policy name -> ARN map bundled with samtranslator, so the transform needs no IAM call."""

    def load(self) -> dict[str, str]:
        policies = get_bundled_managed_policy_map("aws")
        if policies is None:  # pragma: no cover - shipped with every samtranslator release
            raise TemplateError("samtranslator ships no managed policy map for partition 'aws'")
        return policies


def transform(template: Template, parameters: Mapping[str, str]) -> Template:
    """Run the SAM transform; raises samtranslator's InvalidDocumentException on an invalid template."""
    return sam_transform(copy.deepcopy(template), dict(parameters), _BundledManagedPolicies())


def resolve_conditions(template: Template, parameters: Mapping[str, str], stack_name: str) -> Template:
    """Evaluate `Conditions` and apply them: drop resources/outputs whose Condition is false, replace
    every `Fn::If` by its chosen branch and remove `AWS::NoValue` from mappings and lists.

    moto gap: moto's CloudFormation resolves `Fn::If` but leaves an `AWS::NoValue` inside a list as
    None (`clean_json` drops None only from mappings), and IAM role creation then fails on a `None`
    policy (SAM emits `Fn::If [cond, {policy}, AWS::NoValue]` in `Policies` for conditional policy
    statements). Evaluating conditions here is exact: CloudFormation only allows parameters, pseudo
    parameters, mappings and other conditions in them. Raises TemplateError on an unknown construct.
    """
    evaluator = _ConditionEvaluator(template, parameters, stack_name)
    _check_rules(template, evaluator)
    result = copy.deepcopy(template)
    for section in ("Resources", "Outputs"):
        entries: dict[str, Any] = result.get(section, {})
        for name in [n for n, entry in entries.items() if "Condition" in entry]:
            if not evaluator.condition(entries[name]["Condition"]):
                del entries[name]
            else:
                del entries[name]["Condition"]
        result[section] = _apply_if(entries, evaluator)
    result.pop("Conditions", None)
    result.pop("Rules", None)
    return result


def _check_rules(template: Template, evaluator: _ConditionEvaluator) -> None:
    """Apply the template's `Rules` as CloudFormation does before it creates anything: a failed assertion
    (under a true RuleCondition) refuses the parameters with the rule's AssertDescription."""
    for name, rule in template.get("Rules", {}).items():
        if "RuleCondition" in rule and not evaluator.value(rule["RuleCondition"]):
            continue
        for assertion in rule.get("Assertions", []):
            if not evaluator.value(assertion["Assert"]):
                reason = assertion.get("AssertDescription", "its assertion is false")
                raise TemplateError(f"template rule {name} refuses the parameters: {reason}")


def _apply_if(node: Any, evaluator: _ConditionEvaluator) -> Any:
    if isinstance(node, dict):
        if set(node) == {"Fn::If"}:
            condition, when_true, when_false = node["Fn::If"]
            return _apply_if(when_true if evaluator.condition(condition) else when_false, evaluator)
        resolved = {key: _apply_if(value, evaluator) for key, value in node.items()}
        return {key: value for key, value in resolved.items() if value != NO_VALUE}
    if isinstance(node, list):
        return [item for item in (_apply_if(v, evaluator) for v in node) if item != NO_VALUE]
    return node


class _ConditionEvaluator:
    def __init__(self, template: Template, parameters: Mapping[str, str], stack_name: str) -> None:
        self._conditions: dict[str, Any] = template.get("Conditions", {})
        self._mappings: dict[str, Any] = template.get("Mappings", {})
        self._refs: dict[str, str] = {
            **parameters,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::Region": REGION,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": stack_name,
        }
        self._cache: dict[str, bool] = {}

    def condition(self, name: str) -> bool:
        if name not in self._cache:
            if name not in self._conditions:
                raise TemplateError(f"condition {name!r} is not declared in Conditions")
            self._cache[name] = bool(self._evaluate(self._conditions[name]))
        return self._cache[name]

    def value(self, node: Any) -> Any:
        """The value of a condition-like expression (a Conditions entry, a rule's condition or assertion)."""
        return self._evaluate(node)

    def _evaluate(self, node: Any) -> Any:
        if isinstance(node, str | int | float | bool):
            return node
        if isinstance(node, dict) and len(node) == 1:
            ((function, argument),) = node.items()
            if function == "Ref":
                if argument not in self._refs:
                    raise TemplateError(f"a condition refers to {argument!r}, which is not a parameter")
                return self._refs[argument]
            if function == "Condition":
                return self.condition(argument)
            if function == "Fn::Equals":
                left, right = (str(self._evaluate(v)) for v in argument)
                return left == right
            if function == "Fn::Not":
                return not self._evaluate(argument[0])
            if function == "Fn::And":
                return all(self._evaluate(v) for v in argument)
            if function == "Fn::Or":
                return any(self._evaluate(v) for v in argument)
            if function == "Fn::Join":  # e.g. a CommaDelimitedList parameter joined to test it for emptiness
                delimiter, items = argument
                values = (
                    [self._evaluate(v) for v in items] if isinstance(items, list) else self._evaluate(items)
                )
                if isinstance(values, str):  # a CommaDelimitedList parameter's value
                    values = values.split(",") if values else []
                return str(delimiter).join(str(v) for v in values)
            if function == "Fn::FindInMap":
                name, top, second = (str(self._evaluate(v)) for v in argument)
                return self._mappings[name][top][second]
        raise TemplateError(f"unsupported construct in a condition: {node!r}")


def _is_local_path(value: Any) -> bool:
    return isinstance(value, str) and not value.startswith("s3://")
