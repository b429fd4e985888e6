"""S3AuditLog against moto: the audit log lives on S3 at the AWS edge, which has no local equivalent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3
import pytest

from core.audit import AuditEntry, Outcome
from core.backends.aws.audit import S3AuditLog
from core.errors import NotFoundError
from tests.core.aws.conftest import REGION

BUCKET = "signal-lake"
T0 = datetime(2026, 11, 28, 23, 59, 59, tzinfo=UTC)


@pytest.fixture
def log(session: boto3.Session) -> S3AuditLog:
    session.client("s3").create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    return S3AuditLog(session, BUCKET, "lake/")


def entry(time: datetime, action: str, outcome: Outcome = "succeeded", reason: str = "") -> AuditEntry:
    return AuditEntry(time=time, user="ana@example.com", role="operator", action=action,
                      target="crawler_status_count", outcome=outcome, reason=reason)


def test_recent_returns_the_newest_entries_first_with_every_field(log: S3AuditLog, session: boto3.Session) -> None:
    first = entry(T0 - timedelta(hours=1), "crawler.start", outcome="requested")
    second = entry(T0, "job.stop", outcome="refused", reason="viewer role: \"read only\"")
    # Past midnight: the newest entry is in the next day's folder, and has no microseconds.
    third = entry(T0 + timedelta(seconds=1), "job.start", outcome="failed", reason="ConcurrentRunsExceeded")
    for item in (second, third, first):  # written out of order, read back by time
        log.append(item)

    assert log.recent() == [third, second, first]
    assert log.recent(limit=2) == [third, second]
    assert log.recent(limit=0) == []
    keys = [o["Key"] for o in session.client("s3").list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert len(keys) == 3 and all(k.startswith("lake/_audit/dt=2026-11-") and k.endswith(".json") for k in keys)
    assert sum(k.startswith("lake/_audit/dt=2026-11-29/2026-11-29T00:00:00.000000Z-") for k in keys) == 1


def test_entries_at_the_same_time_are_all_kept(log: S3AuditLog) -> None:
    for action in ("crawler.start", "crawler.start", "job.stop"):
        log.append(entry(T0, action))

    assert sorted(e.action for e in log.recent()) == ["crawler.start", "crawler.start", "job.stop"]


def test_an_empty_log_has_no_entries(log: S3AuditLog) -> None:
    assert log.recent() == []


def test_a_missing_bucket_is_not_found(session: boto3.Session) -> None:
    with pytest.raises(NotFoundError, match="bucket does not exist"):
        S3AuditLog(session, "no-such-bucket", "lake").append(entry(T0, "job.stop"))


def test_objects_that_are_not_entries_are_skipped_and_counted(log: S3AuditLog, session: boto3.Session) -> None:
    log.append(entry(T0, "job.stop"))
    s3 = session.client("s3")
    day = "lake/_audit/dt=2026-11-28/"
    s3.put_object(Bucket=BUCKET, Key=f"{day}2026-11-28T23:59:58.000000Z-torn.json", Body=b'{"time": "2026-11')
    s3.put_object(Bucket=BUCKET, Key=f"{day}2026-11-28T23:59:57.000000Z-list.json", Body=b"[1, 2]")
    unknown_outcome = ('{"time": "2026-11-28T23:59:56+00:00", "user": "x", "role": "operator", "action": "job.stop", '
                       '"target": "t", "outcome": "maybe"}')
    s3.put_object(Bucket=BUCKET, Key=f"{day}2026-11-28T23:59:56.000000Z-outcome.json", Body=unknown_outcome.encode())

    entries = log.recent()

    assert entries == [entry(T0, "job.stop")]
    assert entries.skipped == 3


def test_entries_written_before_the_request_outcome_split_read_as_succeeded(log: S3AuditLog,
                                                                           session: boto3.Session) -> None:
    legacy = ('{"time": "2026-11-28T23:59:59+00:00", "user": "ana@example.com", "role": "operator", '
              '"action": "job.stop", "target": "crawler_status_count", "outcome": "ok", "reason": ""}')
    session.client("s3").put_object(Bucket=BUCKET, Body=legacy.encode(),
                                    Key="lake/_audit/dt=2026-11-28/2026-11-28T23:59:59.000000Z-legacy.json")

    assert log.recent() == [entry(T0, "job.stop", outcome="succeeded")]
