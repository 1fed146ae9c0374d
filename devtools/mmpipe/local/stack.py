"""Create the stack of template.yaml in moto's CloudFormation, the way `sam deploy` does in the cloud.

Intrinsic functions are resolved by CloudFormation itself, never re-implemented here: for every resource
the local runtime must complete after moto's CloudFormation (see `reconcile`), the stack gets one extra
output holding `Fn::ToJsonString` of the resource's Properties. moto evaluates it with the same code that
created the other resources, so the values are exactly the ones it used (physical names, ARNs,
`!Sub`s, `!FindInMap`s). Those outputs are hidden from `LocalStack.outputs`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import warnings
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from mmpipe.local.aws import AwsClients
from mmpipe.local.process_env import ACCOUNT_ID, REGION
from mmpipe.local.template import (
    Template,
    TemplateError,
    load_sam_template,
    local_code_uris,
    localise,
    parameter_values,
    resolve_conditions,
    transform,
    zip_code,
)

ARTIFACT_BUCKET = f"mmpipe-local-artifacts-{ACCOUNT_ID}-{REGION}"
_PROBE_PREFIX = "LocalRuntimeResolved"
_SUB_REFERENCE = re.compile(r"\$\{([^!}][^}]*)\}")


class StackError(RuntimeError):
    """moto's CloudFormation refused or failed the stack; the message carries its reason."""


@dataclass(frozen=True)
class StackResource:
    """One resource of the stack.

    `properties` are resolved by CloudFormation for the resource types the runtime completes
    (`resolve_types` of `deploy_stack`), else the unresolved template properties. `created_by` is
    "cloudformation" or "local" (moto's CloudFormation skipped the type; `reconcile` created it).
    """

    logical_id: str
    type: str
    physical_id: str
    properties: dict[str, Any]
    resolved: bool
    created_by: str = "cloudformation"


@dataclass
class LocalStack:
    """The deployed stack: its CloudFormation template, parameters, outputs and resources."""

    name: str
    parameters: dict[str, str]
    template: Template
    outputs: dict[str, str]
    resources: dict[str, StackResource] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # logical ids nobody could create locally

    @property
    def physical_ids(self) -> dict[str, str]:
        """Logical id -> physical id of every resource that exists locally."""
        return {logical_id: r.physical_id for logical_id, r in self.resources.items() if r.physical_id}

    def of_type(self, resource_type: str) -> list[StackResource]:
        return [r for r in self.resources.values() if r.type == resource_type]

    def template_resource(self, logical_id: str) -> dict[str, Any]:
        resource: dict[str, Any] = self.template["Resources"][logical_id]
        return resource


def deploy_stack(
    clients: AwsClients,
    template_path: Path,
    *,
    stack_name: str,
    parameters: Mapping[str, str | int | float],
    resolve_types: Collection[str],
    locally_created_types: Collection[str],
) -> LocalStack:
    """Package, transform and create the stack; return it with resolved properties of `resolve_types`.

    `locally_created_types` are the resource types moto's CloudFormation does not create; a resolved
    property or an output that refers to one of them is refused (TemplateError), because moto would
    silently drop the reference. Raises TemplateError for template problems, StackError when moto's
    CloudFormation fails.
    """
    _quiet_expected_gaps(locally_created_types)
    sam_template = load_sam_template(template_path)
    values = parameter_values(sam_template, parameters)
    code_locations = _upload_code(clients, template_path.parent, local_code_uris(sam_template), stack_name)
    localised = localise(sam_template, template_path.parent, code_locations)
    cloudformation = resolve_conditions(transform(localised, values), values, stack_name)

    resources: dict[str, Any] = cloudformation["Resources"]
    to_resolve = sorted(lid for lid, r in resources.items() if r["Type"] in resolve_types)
    local_ids = {lid for lid, r in resources.items() if r["Type"] in locally_created_types}
    _refuse_references_to_local_resources(cloudformation, to_resolve, local_ids)

    probe_template = json.loads(json.dumps(cloudformation))
    probe_outputs = probe_template.setdefault("Outputs", {})
    probes = {f"{_PROBE_PREFIX}{i}": logical_id for i, logical_id in enumerate(to_resolve)}
    for key, logical_id in probes.items():
        properties = resources[logical_id].get("Properties", {})
        probe_outputs[key] = {"Value": {"Fn::ToJsonString": {"v": properties}}}

    cfn = clients.cloudformation
    try:
        cfn.create_stack(
            StackName=stack_name,
            TemplateBody=json.dumps(probe_template),
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()],
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
        )
        description = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
    except (ClientError, BotoCoreError) as error:
        raise StackError(f"moto's CloudFormation could not create stack {stack_name}: {error}") from error
    if description["StackStatus"] != "CREATE_COMPLETE":
        raise StackError(
            f"stack {stack_name} is {description['StackStatus']}: {description.get('StackStatusReason')}"
        )

    raw_outputs = {o["OutputKey"]: o.get("OutputValue", "") for o in description.get("Outputs", [])}
    resolved = {logical_id: _decode_probe(raw_outputs, key, logical_id) for key, logical_id in probes.items()}
    outputs = {k: v for k, v in raw_outputs.items() if not k.startswith(_PROBE_PREFIX)}

    stack = LocalStack(name=stack_name, parameters=values, template=cloudformation, outputs=outputs)
    paginator = cfn.get_paginator("list_stack_resources")
    created: dict[str, str] = {}
    for page in paginator.paginate(StackName=stack_name):
        for summary in page["StackResourceSummaries"]:
            # moto lists a resource of a type its CloudFormation does not support with an empty
            # logical id; those are the ones `reconcile` creates.
            if summary.get("LogicalResourceId"):
                created[summary["LogicalResourceId"]] = summary.get("PhysicalResourceId", "")
    for logical_id, resource in resources.items():
        in_stack = logical_id in created
        stack.resources[logical_id] = StackResource(
            logical_id=logical_id,
            type=resource["Type"],
            physical_id=created.get(logical_id, ""),
            properties=resolved.get(logical_id, resource.get("Properties", {})),
            resolved=logical_id in resolved,
            created_by="cloudformation" if in_stack else "local",
        )
    return stack


class _ExpectedGapFilter(logging.Filter):
    def __init__(self, types: Collection[str]) -> None:
        super().__init__()
        self.types = frozenset(types)

    def filter(self, record: logging.LogRecord) -> bool:
        expected = record.msg == "No Moto CloudFormation support for %s" and record.args
        return not (expected and isinstance(record.args, tuple) and record.args[0] in self.types)


_quieted_logs: set[str] = set()


def _quiet_expected_gaps(types: Collection[str]) -> None:
    """moto logs a warning and raises a UserWarning for every resource its CloudFormation skips. For
    the types the runtime creates itself that is noise; any other type keeps warning (it is missing)."""
    # Re-added every time: test runners restore the warning filters after each test.
    pattern = "|".join(re.escape(t) for t in sorted(types))
    warnings.filterwarnings(
        "ignore", message=rf"Tried to parse ({pattern}) but it's not supported", category=UserWarning
    )
    new = set(types) - _quieted_logs
    if new:
        _quieted_logs.update(new)
        logging.getLogger("moto").addFilter(_ExpectedGapFilter(new))


def _upload_code(clients: AwsClients, base: Path, uris: set[str], stack_name: str) -> dict[str, str]:
    # moto's CreateFunction needs real code; the handlers run in-process, so this zip is never executed.
    if not uris:
        return {}
    s3 = clients.s3
    s3.create_bucket(Bucket=ARTIFACT_BUCKET)
    locations: dict[str, str] = {}
    for uri in sorted(uris):
        archive = zip_code(base / uri)
        key = f"{stack_name}/{hashlib.sha256(archive).hexdigest()}.zip"
        s3.put_object(Bucket=ARTIFACT_BUCKET, Key=key, Body=archive)
        locations[uri] = f"s3://{ARTIFACT_BUCKET}/{key}"
    return locations


def _decode_probe(outputs: Mapping[str, str], key: str, logical_id: str) -> dict[str, Any]:
    if key not in outputs:
        raise StackError(f"CloudFormation did not resolve the properties of {logical_id}")
    decoded = json.loads(outputs[key])
    if "v" not in decoded:
        # moto drops a value that resolved to nothing (a reference to a resource it did not create).
        raise StackError(f"the properties of {logical_id} resolved to nothing")
    leftover = _unresolved_intrinsics(decoded["v"])
    if leftover:
        raise StackError(f"moto's CloudFormation left {leftover} unresolved in {logical_id}")
    properties: dict[str, Any] = decoded["v"]
    return properties


def _unresolved_intrinsics(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [key for key in node if key == "Ref" or key.startswith("Fn::")]
        for value in node.values():
            found.extend(_unresolved_intrinsics(value))
        return found
    if isinstance(node, list):
        return [key for item in node for key in _unresolved_intrinsics(item)]
    return []


def _refuse_references_to_local_resources(
    template: Template, to_resolve: list[str], local_ids: set[str]
) -> None:
    """moto resolves a reference to a resource it did not create to nothing, silently."""
    problems: list[str] = []
    for logical_id in to_resolve:
        properties = template["Resources"][logical_id].get("Properties", {})
        for target in sorted(references(properties) & local_ids):
            problems.append(f"{logical_id} refers to {target}")
    for name, output in template.get("Outputs", {}).items():
        for target in sorted(references(output.get("Value")) & local_ids):
            problems.append(f"output {name} refers to {target}")
    if problems:
        raise TemplateError(
            "moto's CloudFormation cannot resolve references to resources it does not create "
            f"({', '.join(problems)}); the local runtime would see empty values"
        )


def references(node: Any) -> set[str]:
    """Logical ids (and parameter names) referenced by Ref, Fn::GetAtt and Fn::Sub inside `node`."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                found.add(value)
            elif key == "Fn::GetAtt":
                found.add(value.split(".")[0] if isinstance(value, str) else value[0])
            elif key == "Fn::Sub":
                text, variables = (value, {}) if isinstance(value, str) else (value[0], value[1])
                names = {m.split(".")[0] for m in _SUB_REFERENCE.findall(text)}
                found |= names - set(variables)
                found |= references(variables)
            else:
                found |= references(value)
    elif isinstance(node, list):
        for item in node:
            found |= references(item)
    return {name for name in found if not name.startswith("AWS::")}
