"""AthenaLake against moto: Athena, S3 and Glue have no local equivalent at the AWS edge.

moto runs no SQL: each query gets the next canned result from moto's queue, and the test checks what
was sent to Athena (SQL text, execution parameters, workgroup). Failures moto cannot produce (a failed
or reused query) are injected by rewriting moto's GetQueryExecution answer through botocore's events.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
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
from core.lake_layout import SIGNAL_STRENGTH_BY_OPERATOR, TABLES
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


def put_file(session: boto3.Session, table_prefix: str, partition: str, name: str, modified: datetime) -> str:
    """Put one object into the lake and give it a known LastModified (moto stamps seconds of now)."""
    key = f"{PREFIX}/{table_prefix}/{partition}/{name}"
    session.client("s3").put_object(Bucket=BUCKET, Key=key, Body=b"PAR1")
    stored = s3_backends[DEFAULT_ACCOUNT_ID]["aws"].get_object(BUCKET, key)
    assert stored is not None
    stored.last_modified = modified.astimezone(UTC).replace(tzinfo=None)
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
    put_file(aws, table, "dt=2026-11-27/hr=23", "batch-1.snappy.parquet", T0 - timedelta(hours=11))
    put_file(aws, table, "dt=2026-11-28/hr=09", "batch-2.snappy.parquet", T0 - timedelta(minutes=40))
    newest = put_file(aws, table, "dt=2026-11-28/hr=10", "batch-3.snappy.parquet", T0)
    put_file(aws, table, "dt=2026-11-28/hr=10", ".batch-4.snappy.parquet.tmp", T0 + timedelta(minutes=5))
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


def test_reuse_is_off_when_the_cache_is_shorter_than_a_minute(aws: boto3.Session) -> None:
    sent: dict[str, Any] = {}
    on_event(aws, "before-parameter-build.athena.StartQueryExecution", lambda params, **_: sent.update(params))
    queue_result(SIGNAL_COLUMNS, [])

    result = make_lake(aws, cache_seconds=20).query("signal_by_operator")

    assert "ResultReuseConfiguration" not in sent
    assert result.frame.empty and list(result.frame.columns) == [name for name, _ in SIGNAL_COLUMNS]
    assert result.as_of is None  # no files yet


def test_a_reused_result_is_only_as_fresh_as_its_oldest_possible_run(aws: boto3.Session) -> None:
    def reused(parsed: dict[str, Any], **_: Any) -> None:
        parsed["QueryExecution"]["Statistics"]["ResultReuseInformation"] = {"ReusedPreviousResult": True}
        parsed["QueryExecution"]["Status"]["SubmissionDateTime"] = T0 + timedelta(minutes=1)

    on_event(aws, "after-call.athena.GetQueryExecution", reused)
    put_file(aws, SIGNAL_STRENGTH_BY_OPERATOR.prefix, "dt=2026-11-28/hr=10", "batch-3.snappy.parquet", T0)
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


def test_access_denied_listing_s3_is_a_permission_error(aws: boto3.Session) -> None:
    s3 = aws.client("s3")
    lake = make_lake(aws, s3=s3)
    with Stubber(s3) as stub:
        for _ in range(2):
            stub.add_client_error("list_objects_v2", service_error_code="AccessDenied",
                                  service_message="Access Denied", http_status_code=403)
        with pytest.raises(PermissionDeniedError, match="access denied"):
            lake.freshness()
        with pytest.raises(PermissionDeniedError, match="access denied"):
            lake.query("signal_by_operator")


def test_access_denied_starting_a_query_is_a_permission_error(aws: boto3.Session) -> None:
    def denied(**_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        error = {"Code": "AccessDeniedException", "Message": "not allowed to athena:StartQueryExecution"}
        return AWSResponse("", 400, {}, None), {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 400}}

    on_event(aws, "before-call.athena.StartQueryExecution", denied)

    with pytest.raises(PermissionDeniedError, match="athena:StartQueryExecution"):
        make_lake(aws).query("signal_by_operator")


def test_freshness_counts_files_and_partitions_the_catalog_does_not_know(aws: boto3.Session) -> None:
    table = SIGNAL_STRENGTH_BY_OPERATOR
    put_file(aws, table.prefix, "dt=2026-11-28/hr=09", "batch-1.snappy.parquet", T0 - timedelta(hours=1))
    put_file(aws, table.prefix, "dt=2026-11-28/hr=09", "batch-2.snappy.parquet", T0 - timedelta(minutes=50))
    newest = put_file(aws, table.prefix, "dt=2026-11-28/hr=10", "batch-3.snappy.parquet", T0)
    put_file(aws, table.prefix, "dt=2026-11-28/hr=10", "_SUCCESS", T0 + timedelta(minutes=1))
    put_file(aws, "quarantine", "dt=2026-11-28/hr=10", "batch-3.snappy.parquet", T0)
    glue = aws.client("glue")
    glue.create_database(DatabaseInput={"Name": DATABASE})
    glue.create_table(DatabaseName=DATABASE, TableInput={
        "Name": table.name,
        "StorageDescriptor": {"Columns": [{"Name": "operator", "Type": "string"}],
                              "Location": f"s3://{BUCKET}/{PREFIX}/{table.prefix}/"},
        "PartitionKeys": [{"Name": "dt", "Type": "string"}, {"Name": "hr", "Type": "string"}],
    })
    glue.create_partition(DatabaseName=DATABASE, TableName=table.name, PartitionInput={
        "Values": ["2026-11-28", "09"],
        "StorageDescriptor": {"Location": f"s3://{BUCKET}/{PREFIX}/{table.prefix}/dt=2026-11-28/hr=09/"},
    })

    freshness = {f.table: f for f in make_lake(aws).freshness()}

    assert list(freshness) == [t.name for t in TABLES]
    signal = freshness[table.name]
    assert (signal.files, signal.partitions, signal.catalogued, signal.uncatalogued_partitions) == (3, 2, True, 1)
    assert signal.newest_file_at == last_modified(aws, newest) == T0
    quarantine = freshness["quarantine"]
    assert (quarantine.files, quarantine.partitions, quarantine.catalogued, quarantine.uncatalogued_partitions) == (
        1, 1, False, 1)
    empty = freshness["status_count"]
    assert (empty.newest_file_at, empty.files, empty.partitions, empty.catalogued) == (None, 0, 0, False)


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
