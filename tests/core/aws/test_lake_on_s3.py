"""The Delta lake on S3: the job's sink, compaction and vacuum, and the console's freshness, against a
moto S3 server (S3 has no local equivalent here; delta-rs talks to it over HTTP like to the real one).
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from deltalake import DeltaTable

from core.backends.aws.athena import AthenaLake
from core.delta_lake import partition_files, storage_options
from core.lake_layout import SIGNAL_STRENGTH_BY_OPERATOR, TABLES
from glue_job.lake_files import LakeFiles
from glue_job.maintenance import LakeMaintenance
from glue_job.sink import LakeTables
from tests.core.aws.conftest import REGION
from tests.lake_fixtures import delta_rows, signal_rows

BUCKET = "signal-lake"
LAKE = f"s3://{BUCKET}/lake"
APP = "signal-stream/test/s3"
HOUR = datetime(2026, 3, 1, 10, tzinfo=UTC)


@pytest.fixture
def s3(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Point boto3, pyarrow and delta-rs at the moto server, with an empty lake bucket."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_ALLOW_HTTP", "true")
    monkeypatch.setenv("AWS_REGION", REGION)
    # moto keeps its state across servers of one process: start from none.
    urllib.request.urlopen(urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST"), timeout=10)
    client = boto3.client("s3", region_name=REGION, endpoint_url=moto_endpoint)
    client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    yield client


def _signal(tables: LakeTables, batch_id: int, minute: int = 0) -> bool:
    rows = delta_rows(SIGNAL_STRENGTH_BY_OPERATOR, batch_id,
                      signal_rows(HOUR + timedelta(minutes=minute), "Movistar", 10.0 + batch_id, 1))
    return tables.append(SIGNAL_STRENGTH_BY_OPERATOR, rows, APP, batch_id)


def _table() -> DeltaTable:
    uri = f"{LAKE}/{SIGNAL_STRENGTH_BY_OPERATOR.prefix}"
    return DeltaTable(uri, storage_options=storage_options(uri))


def _athena(s3: Any) -> AthenaLake:
    glue = boto3.client("glue", region_name=REGION, endpoint_url=s3.meta.endpoint_url)
    return AthenaLake(boto3.Session(region_name=REGION), database="db", workgroup="wg", bucket=BUCKET, prefix="lake",
                      timeout_seconds=5, cache_seconds=0, s3=s3, glue=glue)


def _freshness_calls(s3: Any) -> tuple[list[str], datetime | None]:
    calls: list[str] = []

    def count(model: Any, **_: Any) -> None:
        calls.append(model.name)

    s3.meta.events.register("before-call.s3", count)
    try:
        signal = next(f for f in _athena(s3).freshness() if f.table == SIGNAL_STRENGTH_BY_OPERATOR.name)
    finally:
        s3.meta.events.unregister("before-call.s3", count)
    return calls, signal.newest_file_at


def test_batches_commit_to_s3_and_a_retried_batch_is_skipped(s3: Any) -> None:
    tables = LakeTables(LAKE)
    tables.create_all()
    assert [_signal(tables, b) for b in range(3)] == [True, True, True]

    assert _signal(LakeTables(LAKE), 2) is False  # the job restarted and retried batch 2

    table = _table()
    assert table.version() == 3 and table.transaction_version(APP) == 2
    assert table.to_pandas()["signal_count"].sum() == 3
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="lake/")["Contents"]]
    assert {f"lake/{spec.prefix}/_delta_log/00000000000000000000.json" for spec in TABLES} <= set(keys)
    lake = LakeFiles(LAKE)  # the job's status document lives on S3 too
    lake.write_json("_job/status.json", {"state": "RUNNING"})
    assert lake.read_json("_job/status.json") == {"state": "RUNNING"}


def test_compaction_and_vacuum_on_s3(s3: Any) -> None:
    tables = LakeTables(LAKE, retention_seconds=0)  # replaced files may go at once: an hour is long for a test
    tables.create_all()
    for batch in range(12):
        _signal(tables, batch, minute=batch)
    replaced = set(_table().file_uris())
    assert len(replaced) == 12

    run = LakeMaintenance(tables, 10).compact(HOUR + timedelta(hours=2))

    assert (run.partitions, run.files_removed, run.files_added) == (1, 12, 1)
    assert partition_files(_table()) == {"dt=2026-03-01/hr=10": 1}
    assert _table().to_pandas()["signal_sum"].sum() == sum(10.0 + b for b in range(12))
    vacuum = LakeMaintenance(tables, 10).vacuum(HOUR)
    assert vacuum.files_deleted == 12
    left = {f"s3://{BUCKET}/{o['Key']}" for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="lake/")["Contents"]}
    assert not replaced & left


def test_freshness_reads_the_log_at_the_same_cost_after_10_and_120_commits(s3: Any) -> None:
    tables = LakeTables(LAKE)
    tables.create_all()
    for batch in range(10):
        _signal(tables, batch)
    young, young_newest = _freshness_calls(s3)
    for batch in range(10, 120):  # delta-rs writes a checkpoint at version 100
        _signal(tables, batch)
    assert s3.get_object(Bucket=BUCKET, Key=f"lake/{SIGNAL_STRENGTH_BY_OPERATOR.prefix}/_delta_log/_last_checkpoint")
    old, old_newest = _freshness_calls(s3)

    assert young == old, (young, old)
    assert young_newest is not None and old_newest is not None and old_newest >= young_newest
    assert len(old) == 2 * len(TABLES)  # per table: GET _last_checkpoint, LIST the log after it
