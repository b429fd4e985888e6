"""AthenaLake against moto: Athena, S3 and Glue have no local equivalent at the AWS edge.

moto runs no SQL: each query gets the next canned result from moto's queue, and the test checks what
was sent to Athena (SQL text, execution parameters, workgroup). Failures moto cannot produce (a failed
or reused query) are injected by rewriting moto's GetQueryExecution answer through botocore's events.

Freshness reads the tables' Delta logs on S3. moto's S3 stands in because S3 has no local equivalent
here: the `_delta_log` objects (commit files, `_last_checkpoint`, dummy checkpoints) are written into it
directly with boto3, as delta-rs would lay them out; no delta-rs is needed to read them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.stub import Stubber
from moto.athena.models import QueryResults, athena_backends
from moto.core import DEFAULT_ACCOUNT_ID
from moto.moto_api import state_manager
from moto.s3.models import s3_backends

from core.backends.aws.athena import AthenaLake, athena_literal
from core.errors import InputError, NotFoundError, PermissionDeniedError, QueryError
from core.lake_layout import GPS_PRECISION_BY_PROVIDER, QUARANTINE, SIGNAL_STRENGTH_BY_OPERATOR, STATUS_COUNT, TABLES
from core.queries import QUERIES
from tests.core.aws.conftest import REGION

# awswrangler 3.17 passes copy= to pandas 3 concat; harmless, and not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")

BUCKET = "signal-lake"
RESULTS_BUCKET = "signal-athena-results"
PREFIX = "lake"
DATABASE = "mobile_network_aggregations"
WORKGROUP = "signal_stream"
T0 = datetime(2026, 11, 28, 10, 30, tzinfo=UTC)
SIGNAL_COLUMNS = [("operator", "varchar"), ("avg_signal", "double"), ("samples", "bigint"),
                  ("min_signal", "double"), ("max_signal", "double")]
SIGNAL_ROWS = [["Movistar", "3.5", "12", "1.0", "5.0"], ["Yoigo", "2.0", "4", "2.0", "2.0"]]


@pytest.fixture
def aws(session: boto3.Session) -> boto3.Session:
    """Return the moto session with the lake bucket, the result bucket and the Athena workgroup."""
    s3 = session.client("s3")
    for bucket in (BUCKET, RESULTS_BUCKET):
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    session.client("athena").create_work_group(Name=WORKGROUP, Configuration={
        "ResultConfiguration": {"OutputLocation": f"s3://{RESULTS_BUCKET}/athena/"},
        "EnforceWorkGroupConfiguration": True,
    })
    return session


def make_lake(session: boto3.Session, **overrides: Any) -> AthenaLake:
    options: dict[str, Any] = {"database": DATABASE, "workgroup": WORKGROUP, "bucket": BUCKET, "prefix": PREFIX,
                               "timeout_seconds": 10, "cache_seconds": 120, "poll_seconds": 0.01}
    return AthenaLake(session, **{**options, **overrides})


def athena_backend() -> Any:
    return athena_backends[DEFAULT_ACCOUNT_ID][REGION]


def queue_result(columns: list[tuple[str, str]], rows: list[list[str]]) -> None:
    """Queue the answer moto gives the next query: a header row, then the data rows (as Athena does)."""
    header = {"Data": [{"VarCharValue": name} for name, _ in columns]}
    data = [{"Data": [{"VarCharValue": value} for value in row]} for row in rows]
    column_info = [{"Name": name, "Label": name, "Type": kind, "Nullable": "UNKNOWN"} for name, kind in columns]
    athena_backend().query_results_queue.append(QueryResults(rows=[header, *data], column_info=column_info))


def put_object(s3: Any, key: str, body: bytes, modified: datetime) -> str:
    """Put one object into the lake and give it a known LastModified (moto stamps seconds of now)."""
    s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    stored = s3_backends[DEFAULT_ACCOUNT_ID]["aws"].get_object(BUCKET, key)
    assert stored is not None
    stored.last_modified = modified.astimezone(UTC).replace(tzinfo=None)
    return key


def put_file(session: boto3.Session, table_prefix: str, partition: str, name: str, modified: datetime) -> str:
    """Put one data file into a table's partition (freshness must never look at these)."""
    return put_object(session.client("s3"), f"{PREFIX}/{table_prefix}/{partition}/{name}", b"PAR1", modified)


def write_log(session: boto3.Session, table_prefix: str, versions: Iterable[int], newest: datetime, *,
              checkpoint: int | None = None, add_files: int = 0, every: int = 100) -> str:
    """Write a Delta log as delta-rs lays it out: one commit file per version, a minute apart and ending at
    `newest`, a dummy `.checkpoint.parquet` every `every` versions up to `checkpoint`, and `_last_checkpoint`
    pointing at `checkpoint`. Return the newest commit's key."""
    s3 = session.client("s3")
    log = f"{PREFIX}/{table_prefix}/_delta_log/"
    ordered = sorted(versions)
    key = ""
    for version in ordered:
        at = newest - timedelta(minutes=ordered[-1] - version)
        line = {"commitInfo": {"timestamp": int(at.timestamp() * 1000), "operation": "WRITE" if version else
                               "CREATE TABLE"}}
        key = put_object(s3, f"{log}{version:020d}.json", json.dumps(line).encode() + b"\n", at)
        if checkpoint is not None and version and version % every == 0 and version <= checkpoint:
            put_object(s3, f"{log}{version:020d}.checkpoint.parquet", b"PAR1", at + timedelta(seconds=1))
    if checkpoint is not None:
        pointer = {"version": checkpoint, "size": checkpoint + 3, "sizeInBytes": 149744, "numOfAddFiles": add_files}
        at = newest - timedelta(minutes=ordered[-1] - checkpoint) + timedelta(seconds=2)
        put_object(s3, f"{log}_last_checkpoint", json.dumps(pointer).encode(), at)
    return key


def last_modified(session: boto3.Session, key: str) -> datetime:
    return session.client("s3").head_object(Bucket=BUCKET, Key=key)["LastModified"]


def on_event(session: boto3.Session, event: str, handler: Callable[..., Any]) -> None:
    """Register a botocore event handler for every client the session creates from now on."""
    session.events.register(event, handler)


@pytest.fixture
def queued_forever() -> Iterator[None]:
    """Keep every moto Athena query QUEUED, as a query that runs too long would stay."""
    state_manager.set_transition(model_name="athena::execution",
                                 transition={"progression": "manual", "times": 1_000_000})
    yield
    state_manager.unset_transition("athena::execution")


def test_query_sends_the_named_sql_with_quoted_parameters_and_returns_the_result(aws: boto3.Session) -> None:
    sent: dict[str, Any] = {}
    on_event(aws, "before-parameter-build.athena.StartQueryExecution", lambda params, **_: sent.update(params))
    table = SIGNAL_STRENGTH_BY_OPERATOR.prefix
    newest = write_log(aws, table, range(4), T0)
    put_file(aws, table, "dt=2026-11-28/hr=10", "part-00001-c000.snappy.parquet", T0 + timedelta(minutes=5))
    queue_result(SIGNAL_COLUMNS, SIGNAL_ROWS)

    result = make_lake(aws).query("signal_by_operator", {"since": "2026-11-28T10:00", "until": "2026-11-28 11:00"})

    assert result.frame.astype(object).values.tolist() == [["Movistar", 3.5, 12, 1.0, 5.0], ["Yoigo", 2.0, 4, 2.0, 2.0]]
    assert list(result.frame.columns) == [name for name, _ in SIGNAL_COLUMNS]
    execution = athena_backend().executions[result.query_id]
    assert execution.query == QUERIES["signal_by_operator"].sql == result.sql
    assert execution.query.count("?") == 8
    # Partition bounds (days, then first and last hour: until 11:00 is excluded, so hour 10) and times.
    assert execution.execution_parameters == [
        "'2026-11-28'", "'2026-11-28'", "'2026-11-28'", "'10'", "'2026-11-28'", "'10'",
        "'2026-11-28 10:00:00.000'", "'2026-11-28 11:00:00.000'"]
    assert result.params == ("2026-11-28", "2026-11-28", "2026-11-28", "10", "2026-11-28", "10",
                             "2026-11-28 10:00:00.000", "2026-11-28 11:00:00.000")
    assert execution.workgroup.name == WORKGROUP
    assert execution.context == {"Database": DATABASE}
    assert sent["ResultReuseConfiguration"] == {"ResultReuseByAgeConfiguration": {"Enabled": True,
                                                                                  "MaxAgeInMinutes": 2}}
    assert result.bytes_scanned == 0  # moto reports DataScannedInBytes = 0 for every query
    assert result.as_of == last_modified(aws, newest) == T0
    assert result.duration_ms > 0


def test_reuse_lasts_at_least_a_minute_when_the_refresh_is_shorter(aws: boto3.Session) -> None:
    # Refreshing every 20 s, a fixed range asked again (the next refresh, another console task) must not
    # scan again: Athena reuses results for whole minutes, so one minute at least.
    sent: list[dict[str, Any]] = []
    on_event(aws, "before-parameter-build.athena.StartQueryExecution", lambda params, **_: sent.append(dict(params)))
    queue_result(SIGNAL_COLUMNS, [])
    queue_result(SIGNAL_COLUMNS, [])
    lake = make_lake(aws, cache_seconds=20)
    bounds = {"since": "2026-11-28T10:00", "until": "2026-11-28T11:00"}

    first = lake.query("signal_by_operator", bounds)
    lake.query("signal_by_operator", bounds)

    assert [p["ResultReuseConfiguration"] for p in sent] == [
        {"ResultReuseByAgeConfiguration": {"Enabled": True, "MaxAgeInMinutes": 1}}] * 2
    # The same SQL and the same parameters: what Athena needs to serve the second from the first.
    assert sent[0]["QueryString"] == sent[1]["QueryString"]
    assert sent[0]["ExecutionParameters"] == sent[1]["ExecutionParameters"]
    assert first.frame.empty and list(first.frame.columns) == [name for name, _ in SIGNAL_COLUMNS]
    assert first.as_of is None  # no commits yet


@pytest.mark.parametrize(("cache_seconds", "minutes"),
                         [(1, 1), (59, 1), (60, 1), (150, 2), (30 * 86400, 10080), (0, None)])
def test_reuse_age_is_whole_minutes_between_one_and_athenas_limit(aws: boto3.Session, cache_seconds: float,
                                                                   minutes: int | None) -> None:
    lake = make_lake(aws, cache_seconds=cache_seconds)
    age = lake.reuse["ResultReuseByAgeConfiguration"]["MaxAgeInMinutes"] if lake.reuse else None
    assert age == minutes


def test_a_reused_result_is_only_as_fresh_as_its_oldest_possible_run(aws: boto3.Session) -> None:
    def reused(parsed: dict[str, Any], **_: Any) -> None:
        parsed["QueryExecution"]["Statistics"]["ResultReuseInformation"] = {"ReusedPreviousResult": True}
        parsed["QueryExecution"]["Status"]["SubmissionDateTime"] = T0 + timedelta(minutes=1)

    on_event(aws, "after-call.athena.GetQueryExecution", reused)
    write_log(aws, SIGNAL_STRENGTH_BY_OPERATOR.prefix, range(2), T0)
    queue_result(SIGNAL_COLUMNS, SIGNAL_ROWS)

    result = make_lake(aws, cache_seconds=120).query("signal_by_operator")

    assert result.as_of == T0 - timedelta(minutes=1)  # submitted at T0+1 min, reused up to 2 min old


def test_athena_literal_quotes_strings_once_and_passes_numbers() -> None:
    assert athena_literal("2026-11-28") == "'2026-11-28'"
    assert athena_literal("O'Brien") == "'O''Brien'"
    assert athena_literal(3) == "3"
    assert athena_literal(2.5) == "2.5"
    assert athena_literal(True) == "true"
    for bad in (None, float("nan"), b"x"):
        with pytest.raises(InputError):
            athena_literal(bad)


def test_a_query_over_the_timeout_is_stopped_in_athena(aws: boto3.Session, queued_forever: None) -> None:
    with pytest.raises(QueryError, match=r"did not finish within 0.2 s and was cancelled") as caught:
        make_lake(aws, timeout_seconds=0.2).query("signal_by_operator")

    assert "SIGNAL_ATHENA_TIMEOUT_SECONDS" in str(caught.value)
    (execution,) = athena_backend().executions.values()
    assert execution.status == "CANCELLED"


@pytest.mark.parametrize(("state", "reason", "error", "message"), [
    ("FAILED", "TABLE_NOT_FOUND: line 3:6: Table 'awsdatacatalog.mobile_network_aggregations."
     "signal_strength_by_operator' does not exist", NotFoundError,
     "table signal_strength_by_operator is not in the catalog yet (run the crawlers"),
    ("CANCELLED", "Query cancelled! : Bytes scanned limit was exceeded", QueryError,
     "would scan more data than workgroup signal_stream allows"),
    ("FAILED", "Access denied when writing output to url: s3://signal-athena-results/athena/x.csv",
     PermissionDeniedError, "Access denied when writing output"),
    ("FAILED", "SYNTAX_ERROR: line 1:8: Column 'x' cannot be resolved", QueryError, "Column 'x' cannot be resolved"),
])
def test_a_failed_query_becomes_the_projects_error_with_a_next_step(
        aws: boto3.Session, state: str, reason: str, error: type[Exception], message: str) -> None:
    def failed(parsed: dict[str, Any], **_: Any) -> None:
        parsed["QueryExecution"]["Status"].update(State=state, StateChangeReason=reason)

    on_event(aws, "after-call.athena.GetQueryExecution", failed)

    with pytest.raises(error) as caught:
        make_lake(aws).query("signal_by_operator")

    assert type(caught.value) is error
    assert message in str(caught.value)


def test_a_failed_query_never_shows_the_role_arn_or_the_account_id(aws: boto3.Session) -> None:
    reason = ("Access denied: User: arn:aws:sts::123456789012:assumed-role/signal-console/task is not authorized "
              "to perform glue:GetTable")

    def failed(parsed: dict[str, Any], **_: Any) -> None:
        parsed["QueryExecution"]["Status"].update(State="FAILED", StateChangeReason=reason)

    on_event(aws, "after-call.athena.GetQueryExecution", failed)

    with pytest.raises(PermissionDeniedError) as caught:
        make_lake(aws).query("signal_by_operator")

    assert "123456789012" not in str(caught.value) and "arn:aws" not in str(caught.value)
    assert "not authorized to perform glue:GetTable" in str(caught.value)


def test_access_denied_reading_the_delta_log_is_a_permission_error(aws: boto3.Session) -> None:
    s3 = aws.client("s3")
    lake = make_lake(aws, s3=s3)
    with Stubber(s3) as stub:
        for _ in range(2):
            stub.add_client_error("get_object", service_error_code="AccessDenied",
                                  service_message="Access Denied", http_status_code=403)
        with pytest.raises(PermissionDeniedError, match="access denied"):
            lake.freshness()
        with pytest.raises(PermissionDeniedError, match="access denied"):
            lake.query("signal_by_operator")
        # No checkpoint yet is no error, but a listing the role may not make is.
        stub.add_client_error("get_object", service_error_code="NoSuchKey", http_status_code=404)
        stub.add_client_error("list_objects_v2", service_error_code="AccessDenied",
                              service_message="Access Denied", http_status_code=403)
        with pytest.raises(PermissionDeniedError, match=r"list s3://signal-lake/lake/.*/_delta_log/: access denied"):
            lake.freshness()


def test_a_missing_lake_bucket_is_not_found_not_an_empty_table(aws: boto3.Session) -> None:
    with pytest.raises(NotFoundError, match="_last_checkpoint: not found"):
        make_lake(aws, bucket="no-such-lake").freshness()


def test_access_denied_starting_a_query_is_a_permission_error(aws: boto3.Session) -> None:
    def denied(**_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        error = {"Code": "AccessDeniedException", "Message": "not allowed to athena:StartQueryExecution"}
        return AWSResponse("", 400, {}, None), {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 400}}

    on_event(aws, "before-call.athena.StartQueryExecution", denied)

    with pytest.raises(PermissionDeniedError, match="athena:StartQueryExecution"):
        make_lake(aws).query("signal_by_operator")


def create_glue_table(session: boto3.Session, name: str, table_prefix: str) -> None:
    """Catalogue a table as the crawlers do for Delta: a native Delta table, no partitions registered."""
    glue = session.client("glue")
    glue.create_database(DatabaseInput={"Name": DATABASE})
    glue.create_table(DatabaseName=DATABASE, TableInput={
        "Name": name,
        "TableType": "EXTERNAL_TABLE",
        "Parameters": {"table_type": "DELTA", "classification": "delta"},
        "StorageDescriptor": {"Columns": [{"Name": "operator", "Type": "string"}],
                              "Location": f"s3://{BUCKET}/{PREFIX}/{table_prefix}/"},
        "PartitionKeys": [],
    })


def test_freshness_reads_the_newest_commit_from_the_delta_log_not_the_data_files(aws: boto3.Session) -> None:
    signal, quarantine = SIGNAL_STRENGTH_BY_OPERATOR, QUARANTINE
    # 250 commits: checkpoints at 100 and 200, `_last_checkpoint` -> 200 with 42 live files.
    newest = write_log(aws, signal.prefix, range(250), T0, checkpoint=200, add_files=42)
    write_log(aws, quarantine.prefix, range(3), T0 - timedelta(minutes=30))
    write_log(aws, STATUS_COUNT.prefix, [0], T0 + timedelta(hours=1))  # created, never written to
    # Data files, newer than every commit (one not yet committed, one replaced but not vacuumed): ignored.
    put_file(aws, signal.prefix, "dt=2026-11-28/hr=11", "part-00000-4f1e-c000.snappy.parquet",
             T0 + timedelta(minutes=10))
    put_file(aws, quarantine.prefix, "dt=2026-11-28/hr=11", "part-00000-9a2b-c000.snappy.parquet",
             T0 + timedelta(minutes=10))
    create_glue_table(aws, signal.name, signal.prefix)

    freshness = {f.table: f for f in make_lake(aws).freshness()}

    assert list(freshness) == [t.name for t in TABLES]
    got = freshness[signal.name]
    assert got.newest_file_at == last_modified(aws, newest) == T0
    assert (got.files, got.partitions, got.catalogued, got.uncatalogued_partitions) == (42, 0, True, 0)
    got = freshness[quarantine.name]
    assert got.newest_file_at == T0 - timedelta(minutes=30)
    # No checkpoint yet: no file count without listing data files.
    assert (got.files, got.partitions, got.catalogued, got.uncatalogued_partitions) == (0, 0, False, 0)
    got = freshness[STATUS_COUNT.name]
    assert (got.newest_file_at, got.files) == (None, 0)  # version 0 only: no data yet
    got = freshness[GPS_PRECISION_BY_PROVIDER.name]
    assert (got.newest_file_at, got.files, got.partitions, got.catalogued) == (None, 0, 0, False)  # no log


def test_as_of_is_the_oldest_newest_commit_of_the_queried_tables(aws: boto3.Session) -> None:
    lake = make_lake(aws)
    write_log(aws, SIGNAL_STRENGTH_BY_OPERATOR.prefix, range(5), T0)
    write_log(aws, GPS_PRECISION_BY_PROVIDER.prefix, range(130), T0 - timedelta(minutes=7), checkpoint=100)
    write_log(aws, STATUS_COUNT.prefix, [0], T0 + timedelta(hours=1))
    put_file(aws, GPS_PRECISION_BY_PROVIDER.prefix, "dt=2026-11-28/hr=11", "part-1.parquet", T0 + timedelta(hours=2))

    signal, gps, status = SIGNAL_STRENGTH_BY_OPERATOR.name, GPS_PRECISION_BY_PROVIDER.name, STATUS_COUNT.name
    assert lake._as_of((signal,)) == T0
    assert lake._as_of((signal, gps)) == T0 - timedelta(minutes=7)
    assert lake._as_of((signal, status)) == T0  # a table without data yet does not hold as_of back
    assert lake._as_of((status, "coverage_grid")) is None


def test_a_checkpoint_with_no_commit_after_it_dates_the_table_by_the_checkpoint(aws: boto3.Session) -> None:
    # The commit files up to the checkpoint were cleaned up: only the checkpoint pointer remains to date it.
    s3 = aws.client("s3")
    log = f"{PREFIX}/{SIGNAL_STRENGTH_BY_OPERATOR.prefix}/_delta_log/"
    put_object(s3, f"{log}{300:020d}.checkpoint.parquet", b"PAR1", T0)
    put_object(s3, f"{log}_last_checkpoint", b'{"version":300,"size":302,"numOfAddFiles":7}', T0)

    (got, *_) = make_lake(aws).freshness()

    assert (got.table, got.newest_file_at, got.files) == (SIGNAL_STRENGTH_BY_OPERATOR.name, T0, 7)


# Versions 0..999 with the last checkpoint at 900 (the most commits a listing ever holds: 900..999), and
# 0..1000 with the checkpoint at 1000 (delta-rs writes it with that version's commit).
@pytest.mark.parametrize(("commits", "last_checkpoint"), [(1000, 900), (1001, 1000)])
def test_freshness_makes_the_same_s3_calls_for_a_young_and_an_old_table(
        aws: boto3.Session, commits: int, last_checkpoint: int) -> None:
    young, old = SIGNAL_STRENGTH_BY_OPERATOR, GPS_PRECISION_BY_PROVIDER
    write_log(aws, young.prefix, range(10), T0)  # 10 commits, no checkpoint yet
    write_log(aws, old.prefix, range(commits), T0 - timedelta(minutes=1), checkpoint=last_checkpoint, add_files=299)
    s3 = aws.client("s3")
    calls: list[str] = []
    listed: list[dict[str, Any]] = []
    s3.meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))
    s3.meta.events.register("after-call.s3.ListObjectsV2", lambda parsed, **_: listed.append(parsed))
    lake = make_lake(aws, s3=s3)

    def calls_for(table: str) -> list[str]:
        calls.clear()
        listed.clear()
        lake._table_freshness(table)
        return list(calls)

    young_calls = calls_for(young.name)
    old_calls = calls_for(old.name)
    old_listed = list(listed)

    assert young_calls == old_calls == ["GetObject", "ListObjectsV2"]
    (page,) = old_listed  # one page: the commits since the checkpoint, and `_last_checkpoint`
    keys = [item["Key"].rsplit("/", 1)[1] for item in page["Contents"]]
    commits = [k for k in keys if k.endswith(".json")]
    assert not page["IsTruncated"]
    assert len(commits) <= 100 and set(keys) - set(commits) == {"_last_checkpoint"}
    assert commits[0] == f"{last_checkpoint:020d}.json"
    fresh = lake._table_freshness(old.name)
    assert (fresh.newest_file_at, fresh.files) == (T0 - timedelta(minutes=1), 299)


def test_a_workgroup_with_managed_results_runs_without_reuse(aws: boto3.Session) -> None:
    aws.client("athena").create_work_group(Name="managed", Configuration={
        "ManagedQueryResultsConfiguration": {"Enabled": True}, "EnforceWorkGroupConfiguration": True})
    queue_result(SIGNAL_COLUMNS, SIGNAL_ROWS)
    lake = make_lake(aws, workgroup="managed")

    result = lake.query("signal_by_operator")

    assert lake.reuse is None
    assert result.frame["operator"].tolist() == ["Movistar", "Yoigo"]


def test_a_result_that_cannot_be_read_is_a_query_error(aws: boto3.Session) -> None:
    # Nothing queued: moto leaves an empty result file, where Athena always writes a header row.
    with pytest.raises(QueryError, match="cannot read its results") as caught:
        make_lake(aws).query("signal_by_operator")

    assert "Athena console" in str(caught.value)
