"""The on-call resources exist on the local runtime too (the same template, created in moto): every alarm
with its metric math, and the dashboard, whose alarm widget names exactly those alarms."""

from __future__ import annotations

import json

from mmpipe.local import LocalRuntime
from tests.unit.ops_template.ops_support import of_type, template


def test_the_local_stack_has_every_alarm_and_the_dashboard() -> None:
    alarms = of_type(template(), "AWS::CloudWatch::Alarm")
    expected = {a["Properties"]["AlarmName"]["Fn::Sub"].replace("${Stage}", "dev") for a in alarms.values()}

    with LocalRuntime() as runtime:
        cloudwatch = runtime.client("cloudwatch")
        created = {a["AlarmName"]: a for a in cloudwatch.describe_alarms()["MetricAlarms"]}
        body = json.loads(cloudwatch.get_dashboard(DashboardName="mmpipe-dev")["DashboardBody"])
        topic = runtime.stack.outputs["RunNotificationTopicArn"]

    assert set(created) == expected
    assert all(a["AlarmActions"] == [topic] for a in created.values())
    math = created["mmpipe-dev-executions-failed"]["Metrics"]
    assert [q["Id"] for q in math] == ["notFinished", "failed", "timedOut", "aborted"]
    (widget,) = [w for w in body["widgets"] if w["type"] == "alarm"]
    assert set(widget["properties"]["alarms"]) == {a["AlarmArn"] for a in created.values()}
