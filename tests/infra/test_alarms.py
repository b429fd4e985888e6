"""AWS alerts: the job's CloudWatch metrics, the template's alarms on them and on the stream, the SNS topic.

moto stands in for CloudWatch only at the AWS edge (the boto3 client the job is given): the publisher, the
status tracker that feeds it and the template's alarm definitions are the real ones. Nothing reaches AWS.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from cfnlint.decode import cfn_yaml
from moto import mock_aws

from core import alerts
from core.config import Settings
from glue_job.lake_files import LakeFiles
from glue_job.sink import BatchOutput
from glue_job.status import BATCH_METRICS, HEARTBEAT_METRIC, HEARTBEAT_SECONDS, MetricsPublisher, StatusTracker
from tests.infra.test_template import TEMPLATE_PATH, _as_list, _resources, iter_policy_statements, render

REGION = "eu-west-1"
JOB = "etl_streaming_mobile_logs"
DEFAULTS = Settings.from_env({})


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return cfn_yaml.load(str(TEMPLATE_PATH))


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")


@pytest.fixture
def cloudwatch(aws_credentials: None) -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("cloudwatch", region_name=REGION)


def job_namespace(template: dict[str, Any]) -> str:
    [job] = _resources(template, "AWS::Glue::Job").values()
    return str(job["Properties"]["DefaultArguments"]["--metrics_namespace"])


def alarms(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: res["Properties"] for name, res in _resources(template, "AWS::CloudWatch::Alarm").items()}


def watched(alarm: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the metrics an alarm reads: its own, or those of its metric math."""
    if "MetricName" in alarm:
        return [{"Namespace": alarm["Namespace"], "MetricName": alarm["MetricName"],
                 "Dimensions": alarm["Dimensions"]}]
    return [query["MetricStat"]["Metric"] for query in alarm["Metrics"] if "MetricStat" in query]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def progress(batch_id: int, rows: int) -> dict[str, Any]:
    """A Spark progress report of one batch, as the listener hands it over."""
    return {"runId": "run-1", "batchId": batch_id, "numInputRows": rows, "timestamp": "2026-03-01T10:00:00.000Z",
            "stateOperators": [{"numRowsDroppedByWatermark": 3}]}


def sums(client: Any, namespace: str, metric: str) -> float:
    now = datetime.now(UTC)
    answer = client.get_metric_statistics(
        Namespace=namespace, MetricName=metric, Dimensions=[{"Name": "JobName", "Value": JOB}],
        StartTime=now - timedelta(hours=1), EndTime=now + timedelta(minutes=5), Period=3600, Statistics=["Sum"])
    return float(sum(point["Sum"] for point in answer["Datapoints"]))


# --- the job publishes --------------------------------------------------------------------------------

def test_each_batch_and_a_heartbeat_a_minute_reach_cloudwatch(cloudwatch: Any, tmp_path: Path) -> None:
    clock = Clock()
    publisher = MetricsPublisher(cloudwatch, JOB, "SignalStream", clock=clock)
    tracker = StatusTracker(LakeFiles(str(tmp_path / "lake")), JOB, on_batch=publisher.batch)
    tracker.record_output(BatchOutput(batch_id=0, input_rows=100, aggregated_rows=90, quarantined_rows=10, commits=5))
    tracker.absorb([progress(0, 100)])
    tracker.absorb([progress(0, 100)])  # a report seen twice is counted once
    publisher.heartbeat()  # within the minute of the batch's heartbeat: not sent
    clock.now += HEARTBEAT_SECONDS
    publisher.heartbeat()  # an idle minute later: sent
    listed = cloudwatch.list_metrics(Namespace="SignalStream")["Metrics"]
    assert {m["MetricName"] for m in listed} == {*BATCH_METRICS, HEARTBEAT_METRIC}
    assert all(m["Dimensions"] == [{"Name": "JobName", "Value": JOB}] for m in listed)
    figures = {name: sums(cloudwatch, "SignalStream", name) for name in (*BATCH_METRICS, HEARTBEAT_METRIC)}
    assert figures == {"InputRows": 100, "AggregatedRows": 90, "QuarantinedRows": 10, "LateRows": 3,
                       "DuplicateRows": 0, "Heartbeat": 2}
    assert publisher.failures == 0


def test_a_failed_publish_never_stops_the_job(aws_credentials: None) -> None:
    unreachable = boto3.client("cloudwatch", region_name=REGION, endpoint_url="http://127.0.0.1:9",
                               config=Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=1))
    publisher = MetricsPublisher(unreachable, JOB, "SignalStream")
    publisher.batch({field: 1 for field in BATCH_METRICS.values()})
    publisher.heartbeat()  # not retried at once: the next minute tries again
    assert publisher.failures == 1


# --- the template alarms on what the job publishes -----------------------------------------------------

def test_the_job_publishes_to_the_namespace_its_role_may_write_and_the_alarms_read(template: dict[str, Any]) -> None:
    namespace = job_namespace(template)
    grants = [found.statement for found in iter_policy_statements(template) if found.where.startswith("JobRole/")
              and "cloudwatch:PutMetricData" in _as_list(found.statement["Action"])]
    [grant] = grants
    assert namespace in _as_list(grant["Condition"]["StringEquals"]["cloudwatch:namespace"])
    ours = [metric for alarm in alarms(template).values() for metric in watched(alarm)
            if metric["Namespace"] != "AWS/Kinesis"]
    assert ours and all(metric["Namespace"] == namespace for metric in ours)
    assert {metric["MetricName"] for metric in ours} <= {*BATCH_METRICS, HEARTBEAT_METRIC}
    assert all(metric["Dimensions"] == [{"Name": "JobName", "Value": {"Ref": "StreamingJob"}}] for metric in ours)


def test_the_alarms_are_the_local_rules_at_their_default_thresholds(template: dict[str, Any]) -> None:
    found = alarms(template)
    assert set(found) == {"JobHeartbeatAlarm", "QuarantineShareAlarm", "LateShareAlarm", "StreamIteratorAgeAlarm"}
    heartbeat = found["JobHeartbeatAlarm"]
    assert heartbeat["Period"] * heartbeat["EvaluationPeriods"] == DEFAULTS.alert_stale_seconds
    assert heartbeat["Period"] >= HEARTBEAT_SECONDS and heartbeat["TreatMissingData"] == "breaching"
    assert (heartbeat["Statistic"], heartbeat["ComparisonOperator"], heartbeat["Threshold"]) == (
        "Sum", "LessThanThreshold", 1)
    for name, part, limit in (("QuarantineShareAlarm", "QuarantinedRows", DEFAULTS.alert_quarantine_percent),
                              ("LateShareAlarm", "LateRows", DEFAULTS.alert_late_percent)):
        alarm = found[name]
        queries = {query["Id"]: query for query in alarm["Metrics"]}
        assert queries["part"]["MetricStat"]["Metric"]["MetricName"] == part
        assert queries["input"]["MetricStat"]["Metric"]["MetricName"] == "InputRows"
        # sums of counts over the local rule's window, divided once: never an average of per-batch shares
        assert {q["MetricStat"]["Period"] for q in (queries["part"], queries["input"])} == {
            alerts.SHARE_WINDOW.total_seconds()}
        assert {q["MetricStat"]["Stat"] for q in (queries["part"], queries["input"])} == {"Sum"}
        assert queries["share"]["Expression"] == f"IF(input >= {alerts.MIN_SHARE_INPUT}, 100 * part / input, 0)"
        assert [q.get("ReturnData", True) for q in alarm["Metrics"]] == [False, False, True]
        assert (alarm["Threshold"], alarm["ComparisonOperator"], alarm["TreatMissingData"]) == (
            limit, "GreaterThanThreshold", "notBreaching")
    age = found["StreamIteratorAgeAlarm"]
    assert (age["Namespace"], age["MetricName"]) == ("AWS/Kinesis", "GetRecords.IteratorAgeMilliseconds")
    assert age["Dimensions"] == [{"Name": "StreamName", "Value": {"Ref": "Stream"}}]
    assert age["Threshold"] == DEFAULTS.alert_stale_seconds * 1000 and age["Statistic"] == "Maximum"


def test_every_alarm_notifies_the_topic_when_it_fires_and_when_it_resolves(template: dict[str, Any]) -> None:
    for name, alarm in alarms(template).items():
        assert alarm["AlarmActions"] == alarm["OKActions"] == [{"Ref": "AlertTopic"}], name
    [topic] = _resources(template, "AWS::SNS::Topic")
    assert topic == "AlertTopic"


def test_the_email_subscription_exists_only_when_an_address_is_given(template: dict[str, Any]) -> None:
    [subscription] = _resources(template, "AWS::SNS::Subscription").values()
    assert subscription["Condition"] == "HasAlertEmail"
    assert template["Conditions"]["HasAlertEmail"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlertEmail"}, ""]}]}
    assert subscription["Properties"] == {"TopicArn": {"Ref": "AlertTopic"}, "Protocol": "email",
                                          "Endpoint": {"Ref": "AlertEmail"}}
    assert template["Parameters"]["AlertEmail"]["Default"] == ""
    assert "AlertTopicArn" in template["Outputs"]


def _api_value(value: Any, template: dict[str, Any], topic_arn: str) -> Any:
    """Return a template value as the CloudWatch API takes it (Refs resolved to defaults or the moto topic)."""
    if value == {"Ref": "AlertTopic"}:
        return topic_arn
    if isinstance(value, dict) and set(value) == {"Ref"}:
        rendered = render(value, template)
        return JOB if rendered == "<StreamingJob>" else "mobile_coverage_logs" if rendered == "<Stream>" else rendered
    if isinstance(value, dict):
        return {key: _api_value(item, template, topic_arn) for key, item in value.items()}
    if isinstance(value, list):
        return [_api_value(item, template, topic_arn) for item in value]
    return value


def test_cloudwatch_takes_every_alarm_as_the_template_writes_it(template: dict[str, Any], cloudwatch: Any) -> None:
    # botocore checks each parameter against the CloudWatch API's shapes before moto stores the alarm.
    topic_arn = boto3.client("sns", region_name=REGION).create_topic(Name="alerts")["TopicArn"]
    for name, alarm in alarms(template).items():
        cloudwatch.put_metric_alarm(AlarmName=name, **_api_value(alarm, template, topic_arn))
    stored = cloudwatch.describe_alarms()["MetricAlarms"]
    assert sorted(a["AlarmName"] for a in stored) == sorted(alarms(template))
    assert all(a["AlarmActions"] == a["OKActions"] == [topic_arn] for a in stored)
