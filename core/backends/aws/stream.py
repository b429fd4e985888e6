"""The AWS stream: Kinesis Data Streams for put_records, CloudWatch metrics for health.

Batching and retries are core.batching's (shared with the local stream); this module only maps
Kinesis' answers onto it: per-entry ErrorCodes become EntryErrors, a throttled call retries all
its entries, and any other failure of a call is raised as the project's error, never hidden.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from botocore.exceptions import ClientError

from core.backends.aws.clients import new_client
from core.backends.aws.errors import THROTTLED, aws_errors
from core.batching import Entry, EntryError, put_with_retries
from core.domain import PutResult, StreamHealth
from core.errors import BackendError

# Per-entry codes worth re-sending; anything else (KMS key disabled, access denied...) fails for good.
RETRYABLE_ENTRY_CODES = frozenset({"ProvisionedThroughputExceededException", "InternalFailure",
                                   "KMSThrottlingException"})
# A whole PutRecords call refused with one of these is retried like a throttled entry.
THROTTLED_CALL_CODES = frozenset(THROTTLED | RETRYABLE_ENTRY_CODES)
METRICS_MINUTES = 10
METRICS_PERIOD_SECONDS = 60
# botocore's own retries stay short: core.batching does the backoff and reports what failed.


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


class KinesisStream:
    """A Kinesis data stream, reached through an injected boto3 session."""

    def __init__(
        self,
        session: boto3.Session,
        stream_name: str,
        *,
        sleep: Callable[[float], None] = time.sleep,
        endpoint_url: str | None = None,
        client: Any = None,
        cloudwatch: Any = None,
    ) -> None:
        """Use `client` / `cloudwatch` when given (tests), else build them from `session` on first use.

        `endpoint_url` points both clients at a Kinesis-compatible endpoint (moto server, LocalStack).
        """
        self.session = session
        self.name = stream_name
        self._sleep = sleep
        self._endpoint_url = endpoint_url
        self._kinesis = client
        self._cloudwatch = cloudwatch

    @property
    def kinesis(self) -> Any:
        """Return the Kinesis client, created from the session on first use."""
        if self._kinesis is None:
            self._kinesis = new_client(self.session, "kinesis", endpoint_url=self._endpoint_url)
        return self._kinesis

    @property
    def cloudwatch(self) -> Any:
        """Return the CloudWatch client, created from the session on first use."""
        if self._cloudwatch is None:
            self._cloudwatch = new_client(self.session, "cloudwatch", endpoint_url=self._endpoint_url)
        return self._cloudwatch

    def _send(self, entries: list[Entry]) -> list[EntryError | None]:
        """Send one batch with PutRecords; return one result per entry, in order."""
        records = [{"Data": entry.data, "PartitionKey": entry.partition_key} for entry in entries]
        action = f"put records on Kinesis stream {self.name}"
        with aws_errors(action):
            try:
                response = self.kinesis.put_records(StreamName=self.name, Records=records)
            except ClientError as error:
                code = _error_code(error)
                if code not in THROTTLED_CALL_CODES:
                    raise  # translated by aws_errors: the caller sees why, not N silent failures
                message = str(error.response.get("Error", {}).get("Message", "")) or code
                return [EntryError(code, message, retryable=True)] * len(entries)
        results = response.get("Records", [])
        if len(results) != len(entries):
            raise BackendError(f"{action}: Kinesis answered {len(results)} results for {len(entries)} records")
        return [_entry_error(result) for result in results]

    def put_records(self, records: Sequence[Mapping[str, Any]]) -> PutResult:
        """Put records in batches of at most 500 records / 5 MiB, re-sending only the throttled ones.

        Raises the project's error (PermissionDeniedError, NotFoundError, ...) when a call is refused
        as a whole for a reason other than throttling.
        """
        return put_with_retries(records, self._send, sleep=self._sleep)

    def health(self) -> StreamHealth:
        """Return the stream's status and shards, and from CloudWatch its last write and consumer lag."""
        with aws_errors(f"describe Kinesis stream {self.name}"):
            try:
                summary = self.kinesis.describe_stream_summary(StreamName=self.name)["StreamDescriptionSummary"]
            except ClientError as error:
                if _error_code(error) != "ResourceNotFoundException":
                    raise
                return StreamHealth(self.name, exists=False, detail=f"stream {self.name} not found")
        now = datetime.now(UTC)
        metrics = self._metrics(now)
        incoming = metrics.get("incoming", [])
        last_record_at = next((at for at, value in incoming if value > 0), None)
        ages = metrics.get("iterator_age", [])
        oldest_pending_at = now - timedelta(milliseconds=ages[0][1]) if ages and ages[0][1] > 0 else None
        throttled = int(sum(value for _, value in metrics.get("throttled", [])))

        status = summary.get("StreamStatus", "UNKNOWN")
        shards = summary.get("OpenShardCount")
        mode = summary.get("StreamModeDetails", {}).get("StreamMode", "PROVISIONED")
        parts = [status]
        if mode == "ON_DEMAND":
            parts.append("on-demand" + (f", {shards} open shards" if shards is not None else ""))
        elif shards is not None:
            parts.append(f"{shards} open shard{'s' if shards != 1 else ''} (provisioned)")
        if throttled > 0:
            parts.append(f"{throttled} writes throttled in the last {METRICS_MINUTES} min")
        if last_record_at is None:
            parts.append(f"no records in the last {METRICS_MINUTES} min")
        return StreamHealth(
            self.name,
            exists=True,
            pending_records=None,  # Kinesis does not tell how many records no consumer has read yet
            oldest_pending_at=oldest_pending_at,
            last_record_at=last_record_at,
            detail="; ".join(parts),
        )

    def _metrics(self, now: datetime) -> dict[str, list[tuple[datetime, float]]]:
        """Return the stream's metrics of the last 10 minutes by query id, newest datapoint first."""
        dimensions = [{"Name": "StreamName", "Value": self.name}]
        queries = [
            {"Id": query_id, "ReturnData": True, "MetricStat": {
                "Metric": {"Namespace": "AWS/Kinesis", "MetricName": metric, "Dimensions": dimensions},
                "Period": METRICS_PERIOD_SECONDS, "Stat": stat}}
            for query_id, metric, stat in (
                ("incoming", "IncomingRecords", "Sum"),
                ("iterator_age", "GetRecords.IteratorAgeMilliseconds", "Maximum"),
                ("throttled", "WriteProvisionedThroughputExceeded", "Sum"),
            )
        ]
        series: dict[str, list[tuple[datetime, float]]] = {}
        request: dict[str, Any] = {"MetricDataQueries": queries, "StartTime": now - timedelta(minutes=METRICS_MINUTES),
                                   "EndTime": now, "ScanBy": "TimestampDescending"}
        with aws_errors(f"read CloudWatch metrics of Kinesis stream {self.name}"):
            while True:
                response = self.cloudwatch.get_metric_data(**request)
                for result in response.get("MetricDataResults", []):
                    pairs = zip(result.get("Timestamps", []), result.get("Values", []), strict=False)
                    series.setdefault(result["Id"], []).extend(
                        (at.astimezone(UTC), float(value)) for at, value in pairs)
                token = response.get("NextToken")
                if not token:
                    break
                request["NextToken"] = token
        for points in series.values():
            points.sort(key=lambda point: point[0], reverse=True)
        return series


def _entry_error(result: Mapping[str, Any]) -> EntryError | None:
    """Return None for a stored entry, else its error, retryable when Kinesis may accept it later."""
    code = result.get("ErrorCode")
    if not code:
        return None
    message = str(result.get("ErrorMessage") or code)
    return EntryError(str(code), message, retryable=code in RETRYABLE_ENTRY_CODES)
