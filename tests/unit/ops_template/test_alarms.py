"""template.yaml's on-call wiring: every alarm reaches the topic on the right metric, tells on-call what to do,
covers every function and every job the code reports; tracing and the Powertools settings are on.

Read as CloudFormation reads it (cfn-lint's decoder), like the other template tests.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.conftest import REPO
from tests.unit.ops_template.ops_support import emitted_metrics, functions, of_type, template

TPL = template()
ALARMS = of_type(TPL, "AWS::CloudWatch::Alarm")
SERVICE = {"Fn::Sub": "mmpipe-${Stage}"}


def metric_queries(alarm: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(namespace, metric, dimensions) the alarm reads: its metric, or every MetricStat of its math."""
    props = alarm["Properties"]
    if "Metrics" not in props:
        dims = {d["Name"]: d["Value"] for d in props.get("Dimensions", [])}
        return [(props["Namespace"], props["MetricName"], dims)]
    found = []
    for query in props["Metrics"]:
        if "MetricStat" in query:
            metric = query["MetricStat"]["Metric"]
            dims = {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])}
            found.append((metric["Namespace"], metric["MetricName"], dims))
    return found


def description(alarm: dict[str, Any], stack: str = "mmpipe-prod", stage: str = "prod") -> str:
    """The description as a deployed stack shows it (the commands name the stack)."""
    text = alarm["Properties"]["AlarmDescription"]["Fn::Sub"]
    rendered = text.replace("${AWS::StackName}", stack).replace("${Stage}", stage)
    assert "${" not in rendered
    return str(rendered)


def test_every_alarm_pages_the_topic_and_says_what_to_do() -> None:
    assert len(ALARMS) == 15
    for logical_id, alarm in ALARMS.items():
        props = alarm["Properties"]
        assert props["AlarmActions"] == [{"Ref": "RunNotificationTopic"}], logical_id
        assert props["TreatMissingData"] == "notBreaching", logical_id
        text = description(alarm)
        commands = ("mmpipe status --stack mmpipe-prod --run RUN", "mmpipe redrive --stack mmpipe-prod")
        assert any(c in text for c in commands), logical_id
        assert "<stage>" not in text, logical_id
        # CloudWatch's limit, with room for a long stack name
        assert len(description(alarm, stack="x" * 64)) <= 1024, logical_id
        assert props["AlarmName"]["Fn::Sub"].startswith("mmpipe-${Stage}-"), logical_id


def test_every_alarm_is_in_the_runbook_table() -> None:
    page = (REPO / "docs" / "runbook.md").read_text()
    runbook = page.split("\n## Alarms\n", 1)[1].split("\n## ", 1)[0]
    for alarm in ALARMS.values():
        short = alarm["Properties"]["AlarmName"]["Fn::Sub"].removeprefix("mmpipe-${Stage}-")
        assert f"`{short}`" in runbook, short


@pytest.mark.parametrize(
    ("logical_id", "queries", "threshold"),
    [
        (
            "ExecutionsFailedAlarm",
            [
                ("AWS/States", m, {"StateMachineArn": {"Ref": "PipelineStateMachine"}})
                for m in ("ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsAborted")
            ],
            0,
        ),
        (
            "IngestDeadLetterAlarm",
            [
                (
                    "AWS/SQS",
                    "ApproximateNumberOfMessagesVisible",
                    {"QueueName": {"Fn::GetAtt": ["IngestDeadLetterQueue", "QueueName"]}},
                )
            ],
            0,
        ),
        (
            "IngestQueueStuckAlarm",
            [
                (
                    "AWS/SQS",
                    "ApproximateAgeOfOldestMessage",
                    {"QueueName": {"Fn::GetAtt": ["IngestQueue", "QueueName"]}},
                )
            ],
            2400,
        ),
        ("RadiomicsJobFailedAlarm", [("mmpipe", "JobsFailed", {"service": SERVICE, "job": "radiomics"})], 0),
        ("TrainingJobFailedAlarm", [("mmpipe", "JobsFailed", {"service": SERVICE, "job": "training"})], 0),
        ("ScoringJobFailedAlarm", [("mmpipe", "JobsFailed", {"service": SERVICE, "job": "scoring"})], 0),
        (
            "HealthImportJobFailedAlarm",
            [
                ("mmpipe", "JobsFailed", {"service": SERVICE, "job": job})
                for job in ("healthomics", "healthlake", "healthimaging")
            ],
            0,
        ),
    ],
)
def test_each_alarm_watches_its_metric(
    logical_id: str, queries: list[tuple[str, str, dict[str, Any]]], threshold: int
) -> None:
    props = ALARMS[logical_id]["Properties"]
    assert metric_queries(ALARMS[logical_id]) == queries
    assert (props["Threshold"], props["ComparisonOperator"]) == (threshold, "GreaterThanThreshold")
    assert props["EvaluationPeriods"] == 1


def test_the_queue_age_threshold_is_beyond_what_retries_alone_can_reach() -> None:
    # A message being retried is visible again after each VisibilityTimeout and is dead-lettered after
    # maxReceiveCount receives; the stuck-queue alarm must not fire for that (the DLQ alarm does).
    queue = TPL["Resources"]["IngestQueue"]["Properties"]
    trigger = TPL["Resources"]["TriggerFunction"]["Properties"]["Events"]["LandingObjects"]["Properties"]
    retries_take = (
        queue["VisibilityTimeout"] * queue["RedrivePolicy"]["maxReceiveCount"]
        + trigger["MaximumBatchingWindowInSeconds"]
    )
    assert ALARMS["IngestQueueStuckAlarm"]["Properties"]["Threshold"] > retries_take


def test_metric_math_alarms_sum_all_their_metrics_with_gaps_as_zero() -> None:
    for logical_id, alarm in ALARMS.items():
        queries = alarm["Properties"].get("Metrics")
        if queries is None:
            continue
        returned = [q for q in queries if q.get("ReturnData", True)]
        assert len(returned) == 1, logical_id
        assert returned[0]["Expression"] == "SUM(FILL(METRICS(), 0))", logical_id
        stats = [q for q in queries if "MetricStat" in q]
        assert 1 <= len(stats) <= 10, logical_id  # CloudWatch: at most 10 metrics per metric math alarm
        assert all(q["MetricStat"]["Stat"] == "Sum" and q["MetricStat"]["Period"] == 300 for q in stats)


@pytest.mark.parametrize("metric", ["Errors", "Throttles"])
def test_every_function_is_in_exactly_one_lambda_alarm_per_metric(metric: str) -> None:
    covered: list[str] = []
    for alarm in ALARMS.values():
        for namespace, name, dims in metric_queries(alarm):
            if (namespace, name) == ("AWS/Lambda", metric):
                assert set(dims) == {"FunctionName"}
                covered.append(dims["FunctionName"]["Ref"])
    assert sorted(covered) == sorted(functions(TPL))


def test_every_job_the_code_reports_failed_has_an_alarm() -> None:
    emitted = emitted_metrics()
    assert emitted.match("JobsFailed") == {frozenset({"job"})}
    alarmed = {
        dims["job"]
        for alarm in ALARMS.values()
        for namespace, name, dims in metric_queries(alarm)
        if (namespace, name) == ("mmpipe", "JobsFailed")
    }
    assert (
        alarmed
        == emitted.values["job"]
        == {
            "radiomics",
            "training",
            "scoring",
            "healthomics",
            "healthlake",
            "healthimaging",
        }
    )


def test_alarms_can_publish_to_the_encrypted_topic() -> None:
    # CloudWatch cannot use the AWS managed key alias/aws/sns: the topic needs a key whose policy lets
    # cloudwatch.amazonaws.com encrypt, and the state machine (the other publisher) needs the key too.
    resources = TPL["Resources"]
    assert resources["RunNotificationTopic"]["Properties"]["KmsMasterKeyId"] == {"Ref": "PipelineKey"}
    statements = resources["PipelineKey"]["Properties"]["KeyPolicy"]["Statement"]
    cloudwatch = [s for s in statements if s["Principal"].get("Service") == "cloudwatch.amazonaws.com"]
    assert len(cloudwatch) == 1
    assert set(cloudwatch[0]["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}
    machine = resources["PipelineStateMachine"]["Properties"]["Policies"]
    kms = [
        s
        for p in machine
        if isinstance(p, dict) and "Statement" in p
        for s in p["Statement"]
        if s.get("Resource") == {"Fn::GetAtt": ["PipelineKey", "Arn"]}
    ]
    assert kms
    assert {"kms:GenerateDataKey*", "kms:Decrypt"} <= set(kms[0]["Action"])


def test_tracing_and_powertools_settings_are_on_for_every_function() -> None:
    function_globals = TPL["Globals"]["Function"]
    assert function_globals["Tracing"] == "Active"
    variables = function_globals["Environment"]["Variables"]
    assert variables["POWERTOOLS_METRICS_NAMESPACE"] == "mmpipe"
    assert variables["POWERTOOLS_SERVICE_NAME"] == SERVICE  # per stage: dev and prod metrics never mix
    for logical_id, function in of_type(TPL, "AWS::Serverless::Function").items():
        props = function["Properties"]
        assert props.get("Tracing", "Active") == "Active", logical_id
        overridden = set(props.get("Environment", {}).get("Variables", {})) & {
            "POWERTOOLS_METRICS_NAMESPACE",
            "POWERTOOLS_SERVICE_NAME",
        }
        assert not overridden, logical_id
    machine = TPL["Resources"]["PipelineStateMachine"]["Properties"]
    assert machine["Tracing"] == {"Enabled": True}
    # Every transition is logged by default (what the runbook reads), without states' input and output.
    assert machine["Logging"]["Level"] == {"Ref": "StateMachineLogLevel"}
    assert TPL["Parameters"]["StateMachineLogLevel"]["Default"] == "ALL"
    assert machine["Logging"]["IncludeExecutionData"] == {"Fn::If": ["LogExecutionData", True, False]}
    assert TPL["Parameters"]["StateMachineLogExecutionData"]["Default"] == "false"


def test_alarm_names_are_unique_and_readable() -> None:
    names = [a["Properties"]["AlarmName"]["Fn::Sub"] for a in ALARMS.values()]
    assert len(set(names)) == len(names)
    assert all(re.fullmatch(r"mmpipe-\$\{Stage\}-[a-z-]+", n) for n in names)
