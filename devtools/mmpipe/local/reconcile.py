"""Complete what moto's CloudFormation leaves undone, from the template's own (resolved) properties.

Each fix below names the moto 5.2.5 gap it covers; all were verified against the template's resources by
reading the created state back through the service APIs (see tests/unit/local/test_stack.py). Every fix
goes through the normal service API, so it is exactly what a client would see in the cloud:

- AWS::Glue::Database, AWS::SQS::QueuePolicy, AWS::S3::BucketPolicy, AWS::CloudWatch::Alarm: not
  supported by moto's CloudFormation at all (it lists them with an empty logical id); created here.
  Policies lose their insecure-transport denials: the local endpoint is plain HTTP (see `local_policy`).
- AWS::S3::Bucket: only BucketName and BucketEncryption are applied; versioning, public access block,
  ownership controls, lifecycle rules and - the one the pipeline depends on - the NotificationConfiguration
  to the ingest queue are applied here.
- AWS::DynamoDB::Table: TimeToLiveSpecification and PointInTimeRecoverySpecification are ignored.
- AWS::Lambda::Function: environment values keep the parameter's type (`CHUNK_SIZE: 25`, an int) where
  Lambda only ever has strings; rewritten as strings.
- AWS::StepFunctions::StateMachine: created in moto's plain Step Functions backend, which the API does
  not read once `execute_state_machine` is on (the engine has its own backend), and without applying
  DefinitionSubstitutions; created here in the engine with the substitutions resolved.

Applied as-is by moto (verified): AWS::SQS::Queue (incl. RedrivePolicy), AWS::SNS::Topic,
AWS::Logs::LogGroup (incl. RetentionInDays), AWS::Lambda::EventSourceMapping (its delivery is replaced,
see `event_sources`), AWS::IAM::Role. Not applied and not needed locally: the roles' ManagedPolicyArns
(moto loads no AWS managed policies, and nothing evaluates IAM locally), Lambda LoggingConfig and
EphemeralStorage (moto does not store them; the invoker reads LoggingConfig from the template).
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from mmpipe.local.aws import AwsClients
from mmpipe.local.stack import LocalStack, StackResource
from mmpipe.local.template import TemplateError

log = logging.getLogger(__name__)

S3_BUCKET = "AWS::S3::Bucket"
S3_BUCKET_POLICY = "AWS::S3::BucketPolicy"
SQS_QUEUE_POLICY = "AWS::SQS::QueuePolicy"
GLUE_DATABASE = "AWS::Glue::Database"
CLOUDWATCH_ALARM = "AWS::CloudWatch::Alarm"
DYNAMODB_TABLE = "AWS::DynamoDB::Table"
LAMBDA_FUNCTION = "AWS::Lambda::Function"
STATE_MACHINE = "AWS::StepFunctions::StateMachine"

# Types moto's CloudFormation does not create: `reconcile` creates them.
LOCALLY_CREATED_TYPES = frozenset({GLUE_DATABASE, SQS_QUEUE_POLICY, S3_BUCKET_POLICY, CLOUDWATCH_ALARM})
# Types the local runtime has no use for, and why (skipped, said in the log only).
NOT_NEEDED_LOCALLY = {
    "AWS::Glue::Table": "an Athena view; the local runtime has no Athena (query the exported tables with DuckDB)",
}
# Types whose properties `reconcile` (or the invoker) needs resolved by CloudFormation.
RESOLVED_TYPES = LOCALLY_CREATED_TYPES | {S3_BUCKET, DYNAMODB_TABLE, LAMBDA_FUNCTION, STATE_MACHINE}
# Types moto's CloudFormation creates completely enough for the local runtime.
COMPLETE_TYPES = frozenset(
    {
        "AWS::SQS::Queue",
        "AWS::SNS::Topic",
        "AWS::Logs::LogGroup",
        "AWS::IAM::Role",
        "AWS::IAM::ManagedPolicy",  # created by moto; IAM is not enforced locally either way
        "AWS::Lambda::EventSourceMapping",
    }
)

_SUBSTITUTION = re.compile(r"\$\{([A-Za-z0-9_.:-]+)\}")


def reconcile(clients: AwsClients, stack: LocalStack) -> None:
    """Apply every fix, in dependency order (policies before the notifications that need them, topics
    before alarms). Resources of any other type moto skipped are logged and listed in `stack.skipped`.
    Raises TemplateError for a property this module cannot translate, botocore errors from the APIs."""
    for resource in stack.of_type(GLUE_DATABASE):
        _create_glue_database(clients, stack, resource)
    for resource in stack.of_type(SQS_QUEUE_POLICY):
        _create_queue_policy(clients, stack, resource)
    for resource in stack.of_type(S3_BUCKET_POLICY):
        _create_bucket_policy(clients, stack, resource)
    for resource in stack.of_type(S3_BUCKET):
        _complete_bucket(clients, resource)
    for resource in stack.of_type(DYNAMODB_TABLE):
        _complete_table(clients, resource)
    for resource in stack.of_type(LAMBDA_FUNCTION):
        _stringify_environment(clients, resource)
    for resource in stack.of_type(STATE_MACHINE):
        _create_state_machine(clients, resource)
    for resource in stack.of_type(CLOUDWATCH_ALARM):
        _create_alarm(clients, stack, resource)

    handled = RESOLVED_TYPES | COMPLETE_TYPES
    for resource in stack.resources.values():
        if resource.type in NOT_NEEDED_LOCALLY:
            stack.skipped.append(resource.logical_id)
            log.info("%s (%s): %s", resource.logical_id, resource.type, NOT_NEEDED_LOCALLY[resource.type])
        elif resource.created_by == "local" and resource.type not in LOCALLY_CREATED_TYPES:
            stack.skipped.append(resource.logical_id)
            log.warning(
                "%s (%s) is not created locally: moto's CloudFormation does not support the type",
                resource.logical_id,
                resource.type,
            )
        elif resource.type not in handled:
            log.info("%s (%s): not verified for the local runtime", resource.logical_id, resource.type)


def _mark_created(stack: LocalStack, resource: StackResource, physical_id: str) -> None:
    stack.resources[resource.logical_id] = StackResource(
        logical_id=resource.logical_id,
        type=resource.type,
        physical_id=physical_id,
        properties=resource.properties,
        resolved=resource.resolved,
        created_by="local",
    )


# --- resources moto's CloudFormation does not support -------------------------------------------------


def _create_glue_database(clients: AwsClients, stack: LocalStack, resource: StackResource) -> None:
    properties = resource.properties
    database_input = properties["DatabaseInput"]
    kwargs: dict[str, Any] = {"DatabaseInput": database_input}
    if "CatalogId" in properties:
        kwargs["CatalogId"] = str(properties["CatalogId"])
    clients.glue.create_database(**kwargs)
    _mark_created(stack, resource, database_input["Name"])


def _create_queue_policy(clients: AwsClients, stack: LocalStack, resource: StackResource) -> None:
    policy = local_policy(resource.logical_id, resource.properties["PolicyDocument"])
    if policy is not None:
        for queue_url in resource.properties["Queues"]:
            clients.sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": policy})
    _mark_created(stack, resource, f"{stack.name}-{resource.logical_id}")


def _create_bucket_policy(clients: AwsClients, stack: LocalStack, resource: StackResource) -> None:
    policy = local_policy(resource.logical_id, resource.properties["PolicyDocument"])
    if policy is not None:
        clients.s3.put_bucket_policy(Bucket=resource.properties["Bucket"], Policy=policy)
    _mark_created(stack, resource, f"{stack.name}-{resource.logical_id}")


def local_policy(logical_id: str, document: Any) -> str | None:
    """The policy document as JSON without its insecure-transport denials (None if nothing is left).

    The local endpoint is plain HTTP (moto serves no TLS), so a statement denying requests with
    `aws:SecureTransport = false` denies every local request - correctly: moto's S3 evaluates bucket
    policy denials on object operations and answered PutObject with 403. Such statements protect the
    transport, which does not exist locally; every other statement is applied unchanged.
    """
    policy = json.loads(document) if isinstance(document, str) else dict(document)
    statements = policy.get("Statement", [])
    statements = [statements] if isinstance(statements, dict) else list(statements)
    kept = [s for s in statements if not _denies_insecure_transport(s)]
    if len(kept) != len(statements):
        log.info("%s: insecure-transport denials left out locally (plain-HTTP endpoint)", logical_id)
    if not kept:
        return None
    return json.dumps({**policy, "Statement": kept})


def _denies_insecure_transport(statement: dict[str, Any]) -> bool:
    if statement.get("Effect") != "Deny":
        return False
    condition = statement.get("Condition", {})
    values = condition.get("Bool", {}).get("aws:SecureTransport") if set(condition) == {"Bool"} else None
    if values is None or set(condition["Bool"]) != {"aws:SecureTransport"}:
        return False
    values = values if isinstance(values, list) else [values]
    return [str(v).lower() for v in values] == ["false"]


def _create_alarm(clients: AwsClients, stack: LocalStack, resource: StackResource) -> None:
    properties = dict(resource.properties)
    # CloudFormation names an unnamed alarm after the stack and the logical id.
    name = properties.pop("AlarmName", f"{stack.name}-{resource.logical_id}")
    for key in ("Threshold",):
        if key in properties:
            properties[key] = float(properties[key])
    for key in ("Period", "EvaluationPeriods", "DatapointsToAlarm"):
        if key in properties:
            properties[key] = int(properties[key])
    clients.cloudwatch.put_metric_alarm(AlarmName=name, **properties)
    _mark_created(stack, resource, name)


# --- AWS::S3::Bucket ------------------------------------------------------------------------------------


def _complete_bucket(clients: AwsClients, resource: StackResource) -> None:
    s3 = clients.s3
    bucket = resource.physical_id
    properties = resource.properties
    if "VersioningConfiguration" in properties:
        s3.put_bucket_versioning(
            Bucket=bucket, VersioningConfiguration={"Status": properties["VersioningConfiguration"]["Status"]}
        )
    if "BucketEncryption" in properties:
        # moto applies the algorithm but drops BucketKeyEnabled.
        rules = [
            {
                "ApplyServerSideEncryptionByDefault": rule["ServerSideEncryptionByDefault"],
                "BucketKeyEnabled": bool(rule.get("BucketKeyEnabled", False)),
            }
            for rule in properties["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        ]
        encryption: Any = {"Rules": rules}
        s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=encryption)
    if "PublicAccessBlockConfiguration" in properties:
        s3.put_public_access_block(
            Bucket=bucket, PublicAccessBlockConfiguration=properties["PublicAccessBlockConfiguration"]
        )
    if "OwnershipControls" in properties:
        s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls=properties["OwnershipControls"])
    if "LifecycleConfiguration" in properties:
        rules = [
            _lifecycle_rule(resource.logical_id, r) for r in properties["LifecycleConfiguration"]["Rules"]
        ]
        s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules})  # type: ignore[typeddict-item]
    if "NotificationConfiguration" in properties:
        _apply_notifications(clients, resource)


def _apply_notifications(clients: AwsClients, resource: StackResource) -> None:
    s3 = clients.s3
    bucket = resource.physical_id
    current = s3.get_bucket_notification_configuration(Bucket=bucket)
    if any(k.endswith("Configurations") or k == "EventBridgeConfiguration" for k in current):
        return  # already applied (a future moto may do it): re-applying would send a second s3:TestEvent
    source = resource.properties["NotificationConfiguration"]
    config: dict[str, Any] = {}
    targets = {"QueueConfigurations": ("Queue", "QueueArn"), "TopicConfigurations": ("Topic", "TopicArn")}
    targets["LambdaConfigurations"] = ("Function", "LambdaFunctionArn")
    for section, (cfn_key, api_key) in targets.items():
        entries = []
        for entry in source.get(section, []):
            api_entry: dict[str, Any] = {api_key: entry[cfn_key], "Events": [entry["Event"]]}
            rules = entry.get("Filter", {}).get("S3Key", {}).get("Rules")
            if rules:
                api_entry["Filter"] = {"Key": {"FilterRules": rules}}
            entries.append(api_entry)
        if entries:
            config[section] = entries
    if source.get("EventBridgeConfiguration", {}).get("EventBridgeEnabled"):
        config["EventBridgeConfiguration"] = {}
    # Like S3, moto sends an s3:TestEvent message to each queue when the configuration is set.
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=config)  # type: ignore[arg-type]


def _lifecycle_rule(logical_id: str, rule: dict[str, Any]) -> dict[str, Any]:
    """A CloudFormation lifecycle rule in the shape of the S3 API."""
    api: dict[str, Any] = {"Status": rule["Status"]}
    if "Id" in rule:
        api["ID"] = rule["Id"]
    prefix = rule.get("Prefix", "")
    tags = rule.get("TagFilters")
    api["Filter"] = {"And": {"Prefix": prefix, "Tags": tags}} if tags else {"Prefix": prefix}
    expiration: dict[str, Any] = {}
    if "ExpirationInDays" in rule:
        expiration["Days"] = int(rule["ExpirationInDays"])
    if "ExpirationDate" in rule:
        expiration["Date"] = rule["ExpirationDate"]
    if "ExpiredObjectDeleteMarker" in rule:
        expiration["ExpiredObjectDeleteMarker"] = bool(rule["ExpiredObjectDeleteMarker"])
    if expiration:
        api["Expiration"] = expiration
    if "NoncurrentVersionExpiration" in rule:
        api["NoncurrentVersionExpiration"] = {
            k: int(v) for k, v in rule["NoncurrentVersionExpiration"].items()
        }
    if "NoncurrentVersionExpirationInDays" in rule:
        api["NoncurrentVersionExpiration"] = {
            "NoncurrentDays": int(rule["NoncurrentVersionExpirationInDays"])
        }
    if "AbortIncompleteMultipartUpload" in rule:
        api["AbortIncompleteMultipartUpload"] = {
            "DaysAfterInitiation": int(rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"])
        }
    if "Transitions" in rule:
        api["Transitions"] = [_transition(t, "Days") for t in rule["Transitions"]]
    if "NoncurrentVersionTransitions" in rule:
        api["NoncurrentVersionTransitions"] = [
            _transition(t, "NoncurrentDays") for t in rule["NoncurrentVersionTransitions"]
        ]
    known = {
        "Id", "Status", "Prefix", "TagFilters", "ExpirationInDays", "ExpirationDate",
        "ExpiredObjectDeleteMarker", "NoncurrentVersionExpiration", "NoncurrentVersionExpirationInDays",
        "AbortIncompleteMultipartUpload", "Transitions", "NoncurrentVersionTransitions",
    }  # fmt: skip
    unknown = sorted(set(rule) - known)
    if unknown:
        raise TemplateError(f"{logical_id}: lifecycle rule keys {unknown} are not translated for local runs")
    return api


def _transition(transition: dict[str, Any], days_key: str) -> dict[str, Any]:
    api: dict[str, Any] = {"StorageClass": transition["StorageClass"]}
    if "TransitionInDays" in transition:
        api[days_key] = int(transition["TransitionInDays"])
    if "TransitionDate" in transition:
        api["Date"] = transition["TransitionDate"]
    return api


# --- AWS::DynamoDB::Table ---------------------------------------------------------------------------


def _complete_table(clients: AwsClients, resource: StackResource) -> None:
    dynamodb = clients.dynamodb
    table = resource.physical_id
    ttl = resource.properties.get("TimeToLiveSpecification")
    if ttl and bool(ttl.get("Enabled")):
        status = dynamodb.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
        if status.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
            dynamodb.update_time_to_live(
                TableName=table,
                TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
            )
    pitr = resource.properties.get("PointInTimeRecoverySpecification")
    if pitr and bool(pitr.get("PointInTimeRecoveryEnabled")):
        dynamodb.update_continuous_backups(
            TableName=table, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
        )


# --- AWS::Lambda::Function --------------------------------------------------------------------------


def _stringify_environment(clients: AwsClients, resource: StackResource) -> None:
    variables = resource.properties.get("Environment", {}).get("Variables")
    if not variables:
        return
    as_strings = {name: _lambda_string(value) for name, value in variables.items()}
    current = clients.lambda_.get_function_configuration(FunctionName=resource.physical_id)
    if current.get("Environment", {}).get("Variables") != as_strings:
        clients.lambda_.update_function_configuration(
            FunctionName=resource.physical_id, Environment={"Variables": as_strings}
        )


def _lambda_string(value: Any) -> str:
    # How CloudFormation stringifies a non-string environment value (a Number parameter, a boolean).
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# --- AWS::StepFunctions::StateMachine ---------------------------------------------------------------


def substitute_definition(logical_id: str, definition: str, substitutions: dict[str, Any]) -> str:
    """Apply DefinitionSubstitutions (`${Name}` -> value) as CloudFormation does.

    Raises TemplateError if a `${Name}` placeholder is left without a substitution: in the cloud the
    literal would reach the state machine and fail at run time.
    """

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in substitutions:
            raise TemplateError(f"{logical_id}: DefinitionSubstitutions has no value for ${{{name}}}")
        value = substitutions[name]
        return _lambda_string(value) if not isinstance(value, str) else value

    return _SUBSTITUTION.sub(replace, definition)


def _create_state_machine(clients: AwsClients, resource: StackResource) -> None:
    properties = resource.properties
    if "DefinitionString" in properties:
        definition = properties["DefinitionString"]
    elif "Definition" in properties:
        definition = json.dumps(properties["Definition"])
    else:
        raise TemplateError(f"{resource.logical_id}: only inline definitions are supported locally")
    definition = substitute_definition(
        resource.logical_id, definition, properties.get("DefinitionSubstitutions", {})
    )
    arn = resource.physical_id
    sfn = clients.stepfunctions
    existing = {m["stateMachineArn"] for m in sfn.list_state_machines()["stateMachines"]}
    if arn in existing:
        sfn.update_state_machine(stateMachineArn=arn, definition=definition)
        return
    kwargs: dict[str, Any] = {
        "name": arn.rsplit(":", 1)[1],  # the name CloudFormation gave it, so that the ARN is the same
        "definition": definition,
        "roleArn": properties["RoleArn"],
        "type": properties.get("StateMachineType", "STANDARD"),
    }
    logging_config = properties.get("LoggingConfiguration")
    if logging_config:
        kwargs["loggingConfiguration"] = {
            "level": logging_config.get("Level", "OFF"),
            "includeExecutionData": bool(logging_config.get("IncludeExecutionData", False)),
            "destinations": [
                {"cloudWatchLogsLogGroup": {"logGroupArn": d["CloudWatchLogsLogGroup"]["LogGroupArn"]}}
                for d in logging_config.get("Destinations", [])
            ],
        }
    tracing = properties.get("TracingConfiguration")
    if tracing:
        kwargs["tracingConfiguration"] = {"enabled": bool(tracing.get("Enabled", False))}
    tags = properties.get("Tags")
    if tags:
        kwargs["tags"] = [{"key": t["Key"], "value": t["Value"]} for t in tags]
    created = sfn.create_state_machine(**kwargs)
    if created["stateMachineArn"] != arn:
        raise TemplateError(f"{resource.logical_id}: created as {created['stateMachineArn']}, expected {arn}")
