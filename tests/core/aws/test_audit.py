"""S3AuditLog against moto: the audit log lives on S3 at the AWS edge, which has no local equivalent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3
import pytest

from core.audit import AuditEntry
from core.backends.aws.audit import S3AuditLog
from core.errors import NotFoundError
from tests.core.aws.conftest import REGION

BUCKET = "signal-lake"
T0 = datetime(2026, 11, 28, 23, 59, 59, tzinfo=UTC)


@pytest.fixture
def log(session: boto3.Session) -> S3AuditLog:
    session.client("s3").create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    return S3AuditLog(session, BUCKET, "lake/")


def entry(time: datetime, action: str, outcome: str = "ok", reason: str = "") -> AuditEntry:
    return AuditEntry(time=time, user="ana@example.com", role="operator", action=action,
                      target="crawler_status_count", outcome=outcome, reason=reason)  # type: ignore[arg-type]


def test_recent_returns_the_newest_entries_first_with_every_field(log: S3AuditLog, session: boto3.Session) -> None:
    first = entry(T0 - timedelta(hours=1), "crawler.start")
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
