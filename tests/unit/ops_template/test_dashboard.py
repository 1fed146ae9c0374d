"""The on-call dashboard: its body is valid JSON once CloudFormation has substituted it, every `${...}` names
something the template has, and every metric it plots exists: AWS metrics of this stack's resources, and
custom metrics under exactly the names and dimensions the code emits."""

from __future__ import annotations

import json
import re
from typing import Any, get_args

from mmhealth.contracts import Modality
from tests.unit.ops_template.ops_support import emitted_metrics, functions, of_type, template

TPL = template()
(DASHBOARD_ID,) = of_type(TPL, "AWS::CloudWatch::Dashboard")
DASHBOARD = TPL["Resources"][DASHBOARD_ID]
PSEUDO = {
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
    "AWS::StackName": "mmpipe-dev",
}
ATTRIBUTES = {"AWS::SQS::Queue": {"QueueName", "Arn", "QueueUrl"}}


def substituted() -> tuple[str, set[str]]:
    """The body as CloudFormation renders it (Stage=dev; a resource's Ref -> `ref:<logical id>`), and the
    logical ids it refers to."""
    body = DASHBOARD["Properties"]["DashboardBody"]["Fn::Sub"]
    assert isinstance(body, str)  # no variable map: everything comes from the template
    referred: set[str] = set()

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in PSEUDO:
            return PSEUDO[name]
        if name == "Stage":
            return "dev"
        logical_id, _, attribute = name.partition(".")
        resource = TPL["Resources"].get(logical_id)
        assert resource is not None, f"${{{name}}} names no resource"
        if attribute:
            assert attribute in ATTRIBUTES.get(resource["Type"], set()), name
        referred.add(logical_id)
        return f"ref:{name}"

    assert "${!" not in body  # no literal ${ meant
    return re.sub(r"\$\{([^}]+)\}", value, body), referred


BODY, REFERRED = substituted()
WIDGETS: list[dict[str, Any]] = json.loads(BODY)["widgets"]


def metric_rows() -> list[tuple[str, str, dict[str, str]]]:
    rows = []
    for widget in WIDGETS:
        if widget["type"] != "metric":
            continue
        for row in widget["properties"]["metrics"]:
            plain = [x for x in row if not isinstance(x, dict)]
            assert not {"...", "."} & set(plain)  # full rows only: each one checkable alone
            namespace, name, *pairs = plain
            rows.append((namespace, name, dict(zip(pairs[::2], pairs[1::2], strict=True))))
    return rows


ROWS = metric_rows()


def test_widgets_fit_the_grid_and_do_not_overlap() -> None:
    cells: set[tuple[int, int]] = set()
    for widget in WIDGETS:
        x, y, w, h = widget["x"], widget["y"], widget["width"], widget["height"]
        assert x >= 0
        assert x + w <= 24
        area = {(i, j) for i in range(x, x + w) for j in range(y, y + h)}
        assert not area & cells, widget.get("properties", {}).get("title")
        cells |= area


def test_the_alarm_widget_shows_every_alarm() -> None:
    (widget,) = [w for w in WIDGETS if w["type"] == "alarm"]
    alarms = of_type(TPL, "AWS::CloudWatch::Alarm")
    names = {a["Properties"]["AlarmName"]["Fn::Sub"].replace("${Stage}", "dev") for a in alarms.values()}
    expected = {f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{n}" for n in names}
    assert set(widget["properties"]["alarms"]) == expected
    assert set(DASHBOARD["DependsOn"]) == set(alarms)  # ARNs by name: created after the alarms


def test_pipeline_metrics_exist_in_the_code_with_these_dimensions() -> None:
    emitted = emitted_metrics()
    modalities = {*get_args(Modality), "unknown"}
    custom = [(name, dims) for namespace, name, dims in ROWS if namespace == "mmpipe"]
    assert custom
    for name, dims in custom:
        assert dims.pop("service") == "mmpipe-dev", name  # POWERTOOLS_SERVICE_NAME of the stage
        dimension_sets = emitted.match(name)
        assert dimension_sets is not None, f"the code emits no metric {name}"
        assert frozenset(dims) in dimension_sets, (name, dims)
        if "modality" in dims:
            assert dims["modality"] in modalities
        if "job" in dims:
            assert dims["job"] in emitted.values["job"]


def test_every_modality_has_its_files_rows_quarantine_and_duration_metrics() -> None:
    plotted = {(name, dims.get("modality")) for namespace, name, dims in ROWS if namespace == "mmpipe"}
    for modality in get_args(Modality):
        for name in ("FilesIngested", "RowsStaged", "RowsCommitted", "FilesQuarantined"):
            assert (name, modality) in plotted
        for name in ("ImportSeconds", "CatalogSeconds"):
            assert (name, modality) in plotted
    assert ("FilesQuarantined", "unknown") in plotted  # files classify could not place
    jobs = {dims.get("job") for namespace, name, dims in ROWS if name == "JobsFailed"}
    assert jobs == emitted_metrics().values["job"]


def test_every_function_has_errors_throttles_and_duration() -> None:
    for metric in ("Errors", "Throttles", "Duration"):
        plotted = {
            dims["FunctionName"].removeprefix("ref:")
            for namespace, name, dims in ROWS
            if (namespace, name) == ("AWS/Lambda", metric)
        }
        assert plotted == functions(TPL), metric


def test_executions_and_the_ingest_queues_are_plotted() -> None:
    states = {name for namespace, name, dims in ROWS if namespace == "AWS/States"}
    assert states == {
        "ExecutionsStarted",
        "ExecutionsSucceeded",
        "ExecutionsFailed",
        "ExecutionsTimedOut",
        "ExecutionsAborted",
        "ExecutionTime",
    }
    assert all(
        dims == {"StateMachineArn": "ref:PipelineStateMachine"} for ns, _, dims in ROWS if ns == "AWS/States"
    )
    queues = {(name, dims["QueueName"]) for namespace, name, dims in ROWS if namespace == "AWS/SQS"}
    assert queues == {
        ("ApproximateNumberOfMessagesVisible", "ref:IngestQueue.QueueName"),
        ("ApproximateNumberOfMessagesVisible", "ref:IngestDeadLetterQueue.QueueName"),
        ("ApproximateAgeOfOldestMessage", "ref:IngestQueue.QueueName"),
    }


def test_the_log_widgets_read_every_function_log_group() -> None:
    log_groups = {
        f["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        for f in of_type(TPL, "AWS::Serverless::Function").values()
    }
    queries = [w["properties"]["query"] for w in WIDGETS if w["type"] == "log"]
    assert len(queries) == 2
    for query in queries:
        sources = set(re.findall(r"SOURCE 'ref:(\w+)'", query))
        assert sources == log_groups
    assert "correlation_id" in queries[0]


def test_the_dashboard_name_is_an_output() -> None:
    assert DASHBOARD["Properties"]["DashboardName"] == {"Fn::Sub": "mmpipe-${Stage}"}
    assert TPL["Outputs"]["DashboardName"]["Value"] == {"Ref": DASHBOARD_ID}
    assert {"PipelineStateMachine", "IngestQueue", "IngestDeadLetterQueue"} <= REFERRED
