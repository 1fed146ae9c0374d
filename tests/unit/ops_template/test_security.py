"""The template's PHI hardening, as CloudFormation would create it (SAM transform, conditions applied):
the pipeline key on every store and log, the optional VPC and its endpoints, IAM without wildcard
resources except where AWS allows nothing else, and a written reason for every checkov skip.

`make security-scan` runs checkov itself (0 failed checks); these tests hold what checkov cannot see:
that the endpoints cover the services the code calls, and that a skip says why.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from mmpipe.local import template as tpl
from tests.conftest import REPO
from tests.unit.ops_template.ops_support import FUNCTIONS, of_type, template

TPL = template()
PIPELINE_KEY_ARN = {"Fn::GetAtt": ["PipelineKey", "Arn"]}

# Every AWS service the functions' code calls, as boto3 names it -> the VPC endpoint that reaches it.
# glue: pyiceberg's Glue catalog; xray: the functions' active tracing.
ENDPOINT_OF_CLIENT = {
    "s3": "s3",
    "dynamodb": "dynamodb",
    "stepfunctions": "states",
    "glue": "glue",
    "sagemaker": "sagemaker.api",
    "xray": "xray",
    "batch": "batch",
    "omics": "analytics-omics",
    "healthlake": "healthlake",
    "medical-imaging": "medical-imaging",
}

# Actions allowed on "*" and why (the Service Authorization Reference lists no resource type for them, or
# the Step Functions log delivery API needs "*"). A new wildcard grant fails the test until it is justified.
WILDCARD_ACTIONS = {
    "ecr:GetAuthorizationToken": "no resource-level permissions",
    "cloudwatch:PutMetricData": "no resource-level permissions; limited by the cloudwatch:namespace condition",
    "batch:ListJobs": "no resource-level permissions",
    "batch:DescribeJobs": "no resource-level permissions",
    "omics:StartVariantImportJob": "optional HealthOmics backend, closed to new customers; left as it was",
    "omics:ListVariantImportJobs": "no resource-level permissions",
    "omics:GetVariantImportJob": "optional HealthOmics backend, closed to new customers; left as it was",
    "logs:CreateLogDelivery": "Step Functions logging: AWS documents Resource * for the log delivery API",
    "logs:GetLogDelivery": "idem",
    "logs:UpdateLogDelivery": "idem",
    "logs:DeleteLogDelivery": "idem",
    "logs:ListLogDeliveries": "idem",
    "logs:PutResourcePolicy": "idem",
    "logs:DescribeResourcePolicies": "idem",
    "logs:DescribeLogGroups": "idem",
}

BRANCH_PREFIXES = ("Genomic", "Clinical", "Imaging")
VPC = {"VpcId": "vpc-0abc", "VpcSubnetIds": "subnet-a,subnet-b", "VpcRouteTableIds": "rtb-a"}
EVERY_BACKEND = {
    "GenomicBackend": "healthomics",
    "HealthOmicsVariantStoreName": "variants",
    "HealthOmicsImportRoleName": "omics-import",
    "ClinicalBackend": "healthlake",
    "HealthLakeDatastoreId": "0123abcd",
    "HealthLakeKmsKeyId": "key-1",
    "ImagingBackend": "healthimaging",
    "HealthImagingDatastoreId": "0123abcd",
    "RadiomicsBackend": "batch",
    "RadiomicsBatchJobQueue": "gpu",
}


def _cloudformation(**overrides: str) -> dict[str, Any]:
    sam = tpl.load_sam_template(REPO / "template.yaml")
    values = tpl.parameter_values(sam, overrides)
    localised = tpl.localise(sam, REPO, {"functions/": "s3://artifacts/functions.zip"})
    return tpl.resolve_conditions(tpl.transform(localised, values), values, "mmpipe-test")


def _clients_in_code() -> set[str]:
    source = "\n".join(p.read_text() for p in FUNCTIONS.rglob("*.py"))
    calls = re.findall(r"storage\.client\(([^)]*)\)", source)  # also client("sagemaker" if ... else "batch")
    return {name for call in calls for name in re.findall(r'"([a-z0-9-]+)"', call)} | {"glue", "xray"}


def test_every_log_group_queue_ledger_and_topic_is_encrypted_with_the_pipeline_key() -> None:
    key = TPL["Resources"]["PipelineKey"]["Properties"]
    assert key["EnableKeyRotation"] is True
    for name, group in of_type(TPL, "AWS::Logs::LogGroup").items():
        assert group["Properties"]["KmsKeyId"] == PIPELINE_KEY_ARN, name
    for name, queue in of_type(TPL, "AWS::SQS::Queue").items():
        assert queue["Properties"]["KmsMasterKeyId"] == {"Ref": "PipelineKey"}, name
    ledger = TPL["Resources"]["IngestLedgerTable"]["Properties"]["SSESpecification"]
    assert ledger == {"SSEEnabled": True, "SSEType": "KMS", "KMSMasterKeyId": {"Ref": "PipelineKey"}}
    assert TPL["Resources"]["RunNotificationTopic"]["Properties"]["KmsMasterKeyId"] == {"Ref": "PipelineKey"}
    assert TPL["Globals"]["Function"]["KmsKeyArn"] == PIPELINE_KEY_ARN
    # Every function can use the key (its queue's messages, ledger items and environment variables).
    for name, function in of_type(TPL, "AWS::Serverless::Function").items():
        assert {"Ref": "PipelineKeyUsePolicy"} in function["Properties"]["Policies"], name


def test_the_key_lets_cloudwatch_logs_encrypt_only_this_stages_log_groups() -> None:
    statements = TPL["Resources"]["PipelineKey"]["Properties"]["KeyPolicy"]["Statement"]
    (logs,) = [s for s in statements if s["Sid"] == "CloudWatchLogsEncryptsThisStagesLogGroups"]
    allowed = [a["Fn::Sub"] for a in logs["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"]]
    for name, group in of_type(TPL, "AWS::Logs::LogGroup").items():
        group_name = group["Properties"]["LogGroupName"]["Fn::Sub"]
        assert any(
            re.fullmatch(
                re.escape(pattern).replace(r"\*", ".*"),
                f"arn:${{AWS::Partition}}:logs:${{AWS::Region}}:${{AWS::AccountId}}:log-group:{group_name}",
            )
            for pattern in allowed
        ), name


def test_landing_and_lake_buckets_log_access_to_the_access_log_bucket() -> None:
    for name in ("LandingBucket", "LakeBucket"):
        logging = TPL["Resources"][name]["Properties"]["LoggingConfiguration"]
        assert logging["DestinationBucketName"] == {"Ref": "AccessLogBucket"}, name
    encryption = TPL["Resources"]["AccessLogBucket"]["Properties"]["BucketEncryption"]
    # S3 delivers server access logs only to SSE-S3 buckets.
    assert encryption["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "AES256"
    }


def test_without_a_vpc_no_network_resource_exists_and_functions_run_outside_one() -> None:
    cloudformation = _cloudformation()
    assert not of_type(cloudformation, "AWS::EC2::VPCEndpoint")
    assert not of_type(cloudformation, "AWS::EC2::SecurityGroup")
    for name, function in of_type(cloudformation, "AWS::Lambda::Function").items():
        assert "VpcConfig" not in function["Properties"], name


@pytest.mark.parametrize("backends", [{}, EVERY_BACKEND], ids=["default-backends", "every-backend"])
def test_in_a_vpc_every_function_is_in_its_subnets_and_every_service_it_calls_has_an_endpoint(
    backends: dict[str, str],
) -> None:
    cloudformation = _cloudformation(**VPC, **backends)
    for name, function in of_type(cloudformation, "AWS::Lambda::Function").items():
        assert function["Properties"]["VpcConfig"] == {
            "SecurityGroupIds": [{"Ref": "FunctionSecurityGroup"}],
            "SubnetIds": {"Ref": "VpcSubnetIds"},
        }, name
    endpoints = {
        e["Properties"]["ServiceName"]["Fn::Sub"].removeprefix("com.amazonaws.${AWS::Region}.")
        for e in of_type(cloudformation, "AWS::EC2::VPCEndpoint").values()
    }
    optional = {"batch", "omics", "healthlake", "medical-imaging"}
    clients = _clients_in_code() if backends else _clients_in_code() - optional
    assert set(ENDPOINT_OF_CLIENT) >= _clients_in_code(), (
        "a new client needs its endpoint in ENDPOINT_OF_CLIENT"
    )
    assert endpoints == {ENDPOINT_OF_CLIENT[c] for c in clients}


def test_a_vpc_without_subnets_is_refused_before_anything_is_created() -> None:
    with pytest.raises(tpl.TemplateError, match="VpcId needs VpcSubnetIds"):
        _cloudformation(VpcId="vpc-0abc")


def _allow_statements(cloudformation: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, resource in cloudformation["Resources"].items():
        properties = resource.get("Properties", {})
        if resource["Type"] == "AWS::IAM::Role":
            documents = [p["PolicyDocument"] for p in properties.get("Policies", [])]
        elif resource["Type"] == "AWS::IAM::ManagedPolicy":
            documents = [properties["PolicyDocument"]]
        else:
            continue
        for document in documents:
            for statement in document["Statement"]:
                if statement.get("Effect") == "Allow":
                    yield name, statement


def test_iam_grants_no_action_on_every_resource_unless_aws_allows_nothing_narrower() -> None:
    cloudformation = _cloudformation(**VPC, **EVERY_BACKEND)
    wildcard = set()
    for name, statement in _allow_statements(cloudformation):
        if statement["Resource"] in ("*", ["*"]):
            actions = statement["Action"]
            wildcard |= {(name, a) for a in ([actions] if isinstance(actions, str) else actions)}
    unexplained = sorted((name, action) for name, action in wildcard if action not in WILDCARD_ACTIONS)
    assert not unexplained
    assert {a for _, a in wildcard} == set(WILDCARD_ACTIONS), "drop entries nothing grants any more"


def test_every_checkov_skip_says_why() -> None:
    skips = [
        (name, skip)
        for name, resource in TPL["Resources"].items()
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
    ]
    assert skips
    for name, skip in skips:
        assert re.fullmatch(r"CKV2?_AWS_\d+", skip["id"]), name
        assert len(skip.get("comment", "")) >= 40, f"{name} skips {skip['id']} without a reason"


@pytest.mark.parametrize(("reserved", "expected"), [("20", {"Trigger": 5, "Import": 20}), ("0", {})])
def test_the_trigger_and_the_imports_reserve_concurrency_unless_the_account_cannot_spare_it(
    reserved: str, expected: dict[str, int]
) -> None:
    cloudformation = _cloudformation(ImportReservedConcurrency=reserved)
    reservations = {
        name: function["Properties"]["ReservedConcurrentExecutions"]
        for name, function in of_type(cloudformation, "AWS::Lambda::Function").items()
        if "ReservedConcurrentExecutions" in function["Properties"]
    }
    wanted = {"TriggerFunction": expected["Trigger"]} if expected else {}
    if expected:
        wanted |= {f"{m}ImportFunction": {"Ref": "ImportReservedConcurrency"} for m in BRANCH_PREFIXES}
    assert reservations == wanted
    # SQS must never deliver into a throttle: the event source's concurrency cap stays within the reservation.
    (mapping,) = of_type(cloudformation, "AWS::Lambda::EventSourceMapping").values()
    assert mapping["Properties"]["ScalingConfig"] == {"MaximumConcurrency": 5}
