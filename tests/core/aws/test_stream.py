"""KinesisStream: partial failures, batches and errors; health; a replay through a moto server.

Kinesis has no local equivalent at the AWS edge, so these tests use botocore's Stubber (exact
requests and scripted answers, e.g. throttled entries, which moto never produces) and moto
(in-process for describe_stream_summary and CloudWatch, a moto server for the end-to-end replay).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from core import records as R
from core.backends.aws.stream import KinesisStream
from core.batching import encode
from core.domain import PutResult, StreamHealth
from core.errors import NotFoundError, PermissionDeniedError
from core.replay import replay
from tests.conftest import SAMPLE_CSV

STREAM = "mobile_coverage_logs"
THROTTLED = {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "Rate exceeded for shard"}


def stored(n: int = 0) -> dict[str, str]:
    return {"SequenceNumber": f"4959{n:020d}", "ShardId": "shardId-000000000000"}


def answer(*entries: dict[str, str]) -> dict[str, Any]:
    """Return a PutRecords response (FailedRecordCount is left out when 0: its model minimum is 1)."""
    failed = sum("ErrorCode" in e for e in entries)
    return {"Records": list(entries), **({"FailedRecordCount": failed} if failed else {})}


def records(n: int) -> list[dict[str, Any]]:
    return [{"record_id": f"r1:1:{i + 2}", "operator": "Yoigo", "signal": str(i % 30)} for i in range(n)]


def sent(batch: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Return the PutRecords parameters KinesisStream must send for these records."""
    return {"StreamName": STREAM,
            "Records": [{"Data": encode(r).data, "PartitionKey": encode(r).partition_key} for r in batch]}


class Sleeps(list[float]):
    """A sleep that records its delays instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def kinesis(session: boto3.Session) -> Iterator[tuple[KinesisStream, Stubber, Sleeps]]:
    """Return a KinesisStream on a stubbed real client, the stubber and the recorded sleeps."""
    client = session.client("kinesis")
    sleeps = Sleeps()
    with Stubber(client) as stubber:
        yield KinesisStream(session, STREAM, sleep=sleeps, client=client), stubber, sleeps
        stubber.assert_no_pending_responses()


def test_only_the_throttled_entries_are_sent_again(kinesis: tuple[KinesisStream, Stubber, Sleeps]) -> None:
    stream, stubber, sleeps = kinesis
    batch = records(5)
    stubber.add_response("put_records", answer(stored(0), THROTTLED, stored(2), THROTTLED, stored(4)), sent(batch))
    stubber.add_response("put_records", answer(stored(1), stored(3)),
                         sent([batch[1], batch[3]]))

    result = stream.put_records(batch)

    assert result == PutResult(sent=5, failed=(), api_calls=2, retries=2)
    assert len(sleeps) == 1  # one backoff before the second call


def test_a_non_retryable_entry_is_reported_and_not_sent_again(kinesis: tuple[KinesisStream, Stubber, Sleeps]) -> None:
    stream, stubber, sleeps = kinesis
    batch = records(3)
    stubber.add_response("put_records", answer(
        stored(0), {"ErrorCode": "ValidationException", "ErrorMessage": "record rejected"}, stored(2)), sent(batch))

    result = stream.put_records(batch)

    assert (result.sent, result.api_calls, result.retries) == (2, 1, 0)
    assert len(result.failed) == 1
    failure = result.failed[0]
    assert (failure.record, failure.error_code, failure.message) == (batch[1], "ValidationException", "record rejected")
    assert sleeps == []


def test_entries_throttled_on_every_attempt_are_reported(kinesis: tuple[KinesisStream, Stubber, Sleeps]) -> None:
    stream, stubber, _ = kinesis
    batch = records(2)
    stubber.add_response("put_records", answer(stored(0), THROTTLED), sent(batch))
    for _ in range(4):
        stubber.add_response("put_records", answer(THROTTLED), sent(batch[1:]))

    result = stream.put_records(batch)

    assert (result.sent, result.api_calls) == (1, 5)
    assert [(f.record, f.error_code) for f in result.failed] == [(batch[1], THROTTLED["ErrorCode"])]


def test_a_throttled_call_retries_all_its_entries(kinesis: tuple[KinesisStream, Stubber, Sleeps]) -> None:
    stream, stubber, sleeps = kinesis
    batch = records(3)
    stubber.add_client_error("put_records", "ProvisionedThroughputExceededException", "Rate exceeded",
                             http_status_code=400, expected_params=sent(batch))
    stubber.add_response("put_records", answer(*(stored(i) for i in range(3))),
                         sent(batch))

    assert stream.put_records(batch) == PutResult(sent=3, failed=(), api_calls=2, retries=3)
    assert len(sleeps) == 1


def test_1200_records_take_three_calls_of_500_500_200(kinesis: tuple[KinesisStream, Stubber, Sleeps]) -> None:
    stream, stubber, _ = kinesis
    batch = records(1200)
    for part in (batch[:500], batch[500:1000], batch[1000:]):
        stubber.add_response("put_records", answer(*(stored(i) for i in range(len(part)))),
                             sent(part))

    assert stream.put_records(batch) == PutResult(sent=1200, failed=(), api_calls=3, retries=0)


@pytest.mark.parametrize(("code", "error"), [("AccessDeniedException", PermissionDeniedError),
                                             ("ResourceNotFoundException", NotFoundError)])
def test_a_refused_call_raises_a_clear_error(kinesis: tuple[KinesisStream, Stubber, Sleeps], code: str,
                                             error: type[Exception]) -> None:
    stream, stubber, sleeps = kinesis
    stubber.add_client_error("put_records", code, "not allowed or not there", http_status_code=400)

    with pytest.raises(error, match=f"put records on Kinesis stream {STREAM}") as raised:
        stream.put_records(records(500))

    assert isinstance(raised.value, PermissionDeniedError | NotFoundError) and raised.value.next_step
    assert sleeps == []  # refused for good: no retries


def test_health_access_denied_is_raised_not_shown_as_missing(kinesis: tuple[KinesisStream, Stubber, Sleeps]) -> None:
    stream, stubber, _ = kinesis
    stubber.add_client_error("describe_stream_summary", "AccessDeniedException", "no kinesis:DescribeStreamSummary")

    with pytest.raises(PermissionDeniedError, match=f"describe Kinesis stream {STREAM}"):
        stream.health()


def put_metric(session: boto3.Session, name: str, value: float, at: datetime) -> None:
    """Seed a Kinesis metric in moto's CloudWatch (moto does not emit Kinesis metrics itself)."""
    session.client("cloudwatch").put_metric_data(Namespace="AWS/Kinesis", MetricData=[{
        "MetricName": name, "Dimensions": [{"Name": "StreamName", "Value": STREAM}], "Timestamp": at, "Value": value}])


def test_health_of_a_stream_with_recent_writes_and_a_lagging_consumer(session: boto3.Session) -> None:
    session.client("kinesis").create_stream(StreamName=STREAM, ShardCount=1)
    now = datetime.now(UTC)
    put_metric(session, "IncomingRecords", 420, now - timedelta(minutes=3))
    put_metric(session, "IncomingRecords", 0, now - timedelta(minutes=1))
    put_metric(session, "GetRecords.IteratorAgeMilliseconds", 5_000, now - timedelta(minutes=2))
    put_metric(session, "GetRecords.IteratorAgeMilliseconds", 90_000, now - timedelta(seconds=30))
    put_metric(session, "WriteProvisionedThroughputExceeded", 7, now - timedelta(minutes=2))

    health = KinesisStream(session, STREAM).health()

    assert health.exists and health.pending_records is None
    assert health.detail == "ACTIVE; 1 open shard (provisioned); 7 writes throttled in the last 10 min"
    assert health.last_record_at is not None  # the period holding the 420 records, not the later 0
    assert now - timedelta(minutes=4) <= health.last_record_at <= now - timedelta(minutes=2)
    assert health.oldest_pending_at is not None  # now - the latest iterator age (90 s)
    assert abs(health.oldest_pending_at - (now - timedelta(seconds=90))) < timedelta(seconds=10)


def test_health_of_an_idle_on_demand_stream(session: boto3.Session) -> None:
    session.client("kinesis").create_stream(StreamName=STREAM, StreamModeDetails={"StreamMode": "ON_DEMAND"})

    health = KinesisStream(session, STREAM).health()

    assert (health.exists, health.last_record_at, health.oldest_pending_at) == (True, None, None)
    assert "on-demand" in health.detail and "no records in the last 10 min" in health.detail


def test_health_of_a_missing_stream(session: boto3.Session) -> None:
    assert KinesisStream(session, "nope").health() == StreamHealth("nope", exists=False,
                                                                   detail="stream nope not found")


class CountingStream:
    """Pass put_records through, keeping every PutResult."""

    def __init__(self, stream: KinesisStream) -> None:
        self.stream = stream
        self.results: list[PutResult] = []

    def put_records(self, batch: Sequence[Mapping[str, Any]]) -> PutResult:
        self.results.append(self.stream.put_records(batch))
        return self.results[-1]

    def health(self) -> StreamHealth:
        return self.stream.health()


def read_shard(client: Any) -> list[dict[str, Any]]:
    """Return every record of the stream's only shard, decoded, from the oldest."""
    shard = client.list_shards(StreamName=STREAM)["Shards"][0]["ShardId"]
    iterator = client.get_shard_iterator(StreamName=STREAM, ShardId=shard,
                                         ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    found: list[dict[str, Any]] = []
    while True:
        answer = client.get_records(ShardIterator=iterator, Limit=1000)
        if not answer["Records"]:
            return found
        found.extend(json.loads(record["Data"]) for record in answer["Records"])
        iterator = answer["NextShardIterator"]


def test_replay_of_the_sample_through_a_moto_server(moto_endpoint: str) -> None:
    session = boto3.Session(region_name="eu-west-1")
    client = session.client("kinesis", endpoint_url=moto_endpoint)
    client.create_stream(StreamName=STREAM, ShardCount=1)
    client.get_waiter("stream_exists").wait(StreamName=STREAM, WaiterConfig={"Delay": 0.1, "MaxAttempts": 50})
    stream = CountingStream(KinesisStream(session, STREAM, endpoint_url=moto_endpoint))

    summary = replay(SAMPLE_CSV, stream, replay_id="r-e2e")

    with SAMPLE_CSV.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        next(reader)
        expected = {f"r-e2e:1:{reader.line_num}": dict(zip(R.SOURCE_FIELDS, row, strict=True)) for row in reader}
    assert len(expected) == 4000
    assert (summary.sent, summary.rejected, summary.failed) == (4000, 0, 0)
    assert sum(r.api_calls for r in stream.results) <= math.ceil(4000 / 500)
    received = read_shard(client)
    assert sorted(r["record_id"] for r in received) == sorted(expected)  # every row once, none twice
    for record in received:
        assert {f: record[f] for f in R.SOURCE_FIELDS} == expected[record["record_id"]]
        assert record["replay_id"] == "r-e2e" and record["event_time"].endswith("Z")
    health = stream.health()  # CloudWatch through the same endpoint
    assert health.exists and health.detail.startswith("ACTIVE; 1 open shard")
