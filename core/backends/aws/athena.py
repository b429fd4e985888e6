"""SQL over the lake on Athena (through awswrangler), and lake freshness from the Delta log and Glue.

Same semantics as the local twin (core/backends/local_lake.py): named queries from core.queries, the
data's as-of time from the newest commits of the queried tables, the same NotFoundError when a table
has not been crawled yet. awswrangler is imported on the first query, so the console starts without it.

- Freshness: read from each table's Delta log (`<table>/_delta_log/`), never from a listing of its data
  files, whose names follow no rule of ours and which stay until VACUUM. Two S3 calls per table,
  whatever the lake's age: GET `_last_checkpoint`, then one listing of the log after that checkpoint
  (at most the ~100 commits since it, one page). The newest commit's LastModified is the table's
  newest data; a table whose only commit is version 0 (its creation) has none yet.

- Parameters: the named query's `?` placeholders go to Athena unchanged, the values as Athena
  ExecutionParameters. awswrangler's qmark paramstyle passes them through untouched, and Athena reads
  each one as a SQL literal, so `athena_literal` quotes every value here, exactly once.
- Reuse: Athena's server-side result reuse (ResultReuseConfiguration), at most `cache_seconds` old in
  whole minutes (Athena's unit), and at least one minute whatever the refresh interval: a query run
  again with the same parameters (a fixed range refreshed, or the same rounded range from another
  console task) is served from the last result instead of scanning again. A reused result's as-of
  time says how old it may be. Only `cache_seconds <= 0` turns reuse off. awswrangler's client-side
  cache is not used: it matches the SQL text alone, so with `?` parameters it would return another
  range's answer.
- Timeout: awswrangler waits without a deadline, so the query is started with awswrangler, polled here
  until `timeout_seconds`, and stopped in Athena when the deadline passes (it stops scanning, and
  billing); its results are read with awswrangler once it succeeded.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import ModuleType
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from core import queries
from core.backends.aws.clients import new_client
from core.backends.aws.errors import aws_errors, redact, translate
from core.domain import QueryResult, TableFreshness
from core.errors import (
    BackendError,
    ConfigError,
    InputError,
    NotFoundError,
    PermissionDeniedError,
    QueryError,
    SignalStreamError,
)
from core.lake_layout import DELTA_LOG, TABLES, TABLES_BY_NAME

logger = logging.getLogger(__name__)

FINAL_STATES = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})
MAX_POLL_SECONDS = 1.0
MAX_REUSE_MINUTES = 7 * 24 * 60  # the longest MaxAgeInMinutes Athena accepts
CRAWL_STEP = "run the crawlers once data has arrived: python -m core.cli crawl"
_MISSING_TABLE = re.compile(r"table\s+'?([\w.\"`]+?)'?\s+does not exist", re.IGNORECASE)
_COMMIT_FILE = re.compile(r"(\d{20})\.json")  # a Delta commit: 20-digit zero-padded version
_NO_SUCH_KEY = frozenset({"NoSuchKey", "404", "NotFound"})


def athena_literal(value: Any) -> str:
    """Return `value` as the SQL literal Athena expects in ExecutionParameters ('it''s' for a string)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    raise InputError(f"query parameter {value!r} is not a string or a finite number")


def _join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p.strip("/"))


@dataclass(frozen=True)
class _Checkpoint:
    """What `_delta_log/_last_checkpoint` says, and when it was written (right after the checkpoint)."""

    version: int
    files: int
    written_at: datetime


@dataclass(frozen=True)
class _LogState:
    """A table's Delta log as far as freshness needs it."""

    version: int | None  # the newest commit's version; None when the table has no log
    newest_commit_at: datetime | None  # None without a log, or when only version 0 (creation) exists
    files: int  # live data files as of the last checkpoint; 0 before the first one


class AthenaLake:
    """Named queries on Athena over the catalogued lake on S3."""

    def __init__(self, session: boto3.Session, *, database: str, workgroup: str, bucket: str, prefix: str,
                 timeout_seconds: float, cache_seconds: float, poll_seconds: float = 0.2,
                 s3: Any = None, glue: Any = None, athena: Any = None) -> None:
        """Use the given clients when passed (tests), else create them from `session` on first use."""
        self.session = session
        self.database = database
        self.workgroup = workgroup
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.timeout_seconds = timeout_seconds
        self.poll_seconds = poll_seconds
        # At least a minute: with a shorter refresh, reuse off would let every refresh of an unchanged
        # range scan again (Athena's unit is whole minutes).
        minutes = min(max(1, int(cache_seconds // 60)), MAX_REUSE_MINUTES)
        self.reuse: dict[str, Any] | None = (
            {"ResultReuseByAgeConfiguration": {"Enabled": True, "MaxAgeInMinutes": minutes}} if cache_seconds > 0
            else None
        )
        self._clients: dict[str, Any] = {"s3": s3, "glue": glue, "athena": athena}
        self._lock = threading.Lock()

    def _client(self, service: str) -> Any:
        with self._lock:
            if self._clients.get(service) is None:
                self._clients[service] = new_client(self.session, service)
            return self._clients[service]

    # -- queries ----------------------------------------------------------------------------------

    def query(self, name: str, params: Mapping[str, Any] | None = None) -> QueryResult:
        """Run a named query; raise NotFoundError when its table has not been crawled yet."""
        query, values = queries.bind(name, params)
        execution_parameters = [athena_literal(v) for v in values]
        # Read before the query starts: every commit up to as_of is visible to the query.
        as_of = self._as_of(query.tables)
        wr = _awswrangler()
        started = time.perf_counter()
        query_id = self._start(wr, name, query.sql, execution_parameters)
        execution = self._wait(name, query_id, query.tables)
        # A result file pandas cannot parse raises ValueError; awswrangler's own errors share no base class.
        unreadable: tuple[type[Exception], ...] = (ValueError, *_wrangler_errors(wr))
        try:
            frame = wr.athena.get_query_results(query_execution_id=query_id, boto3_session=self.session,
                                                athena_query_wait_polling_delay=self.poll_seconds)
        except (ClientError, BotoCoreError) as error:
            raise translate(error, f"read the results of query {name}") from error
        except unreadable as error:
            raise QueryError(f"query {name}: cannot read its results ({type(error).__name__}: {error})",
                             next_step=f"look at query {query_id} in the Athena console") from error
        duration_ms = (time.perf_counter() - started) * 1000
        metadata = getattr(frame, "query_metadata", None) or execution
        scanned = (metadata.get("Statistics") or {}).get("DataScannedInBytes")
        return QueryResult(
            name=name,
            frame=frame,
            as_of=self._reused_as_of(as_of, execution),
            sql=query.sql,
            params=values,
            query_id=str(metadata.get("QueryExecutionId") or query_id),
            bytes_scanned=int(scanned) if scanned is not None else None,
            duration_ms=duration_ms,
        )

    def _start(self, wr: ModuleType, name: str, sql: str, execution_parameters: list[str]) -> str:
        def start(reuse: dict[str, Any] | None) -> str:
            return str(wr.athena.start_query_execution(
                sql=sql, database=self.database, workgroup=self.workgroup,
                params=execution_parameters, paramstyle="qmark",
                result_reuse_configuration=reuse, boto3_session=self.session,
            ))

        try:
            try:
                return start(self.reuse)
            except wr.exceptions.InvalidArgumentCombination:
                if self.reuse is None:
                    raise
                # A workgroup with Athena-managed results cannot reuse results: run without reuse.
                logger.warning("workgroup %s cannot reuse query results; reuse is off", self.workgroup)
                self.reuse = None
                return start(None)
        except (ClientError, BotoCoreError) as error:
            raise translate(error, f"start query {name} in Athena workgroup {self.workgroup}") from error
        except _wrangler_errors(wr) as error:
            raise QueryError(f"query {name} could not start: {type(error).__name__}: {error}") from error

    def _wait(self, name: str, query_id: str, tables: tuple[str, ...]) -> dict[str, Any]:
        athena = self._client("athena")
        deadline = time.monotonic() + self.timeout_seconds
        delay = self.poll_seconds
        while True:
            with aws_errors(f"read the state of query {name}"):
                execution: dict[str, Any] = athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]
            state = str(execution.get("Status", {}).get("State", ""))
            if state == "SUCCEEDED":
                return execution
            if state in FINAL_STATES:
                raise _failure(name, state, execution, tables, self.workgroup)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._cancel(query_id)
                raise QueryError(f"query {name} did not finish within {self.timeout_seconds:g} s and was cancelled",
                                 next_step="choose a shorter time range, or raise SIGNAL_ATHENA_TIMEOUT_SECONDS")
            time.sleep(min(delay, remaining))
            delay = min(delay * 1.5, MAX_POLL_SECONDS)

    def _cancel(self, query_id: str) -> None:
        try:
            self._client("athena").stop_query_execution(QueryExecutionId=query_id)
        except (ClientError, BotoCoreError, SignalStreamError) as error:
            # The timeout is the error to report; Athena's own limit ends the query eventually.
            logger.warning("could not stop Athena query %s: %s", query_id, error)

    def _reused_as_of(self, as_of: datetime | None, execution: dict[str, Any]) -> datetime | None:
        reused = (execution.get("Statistics") or {}).get("ResultReuseInformation", {}).get("ReusedPreviousResult")
        submitted = execution.get("Status", {}).get("SubmissionDateTime")
        if not reused or as_of is None or self.reuse is None or not isinstance(submitted, datetime):
            return as_of
        # A reused result ran at most MaxAge before this query: it holds every file written up to then.
        oldest_run = submitted - timedelta(minutes=self.reuse["ResultReuseByAgeConfiguration"]["MaxAgeInMinutes"])
        return min(as_of, oldest_run)

    # -- the Delta log ----------------------------------------------------------------------------

    def _table_root(self, table: str) -> str:
        return _join(self.prefix, TABLES_BY_NAME[table].prefix) + "/"

    def _pages(self, action: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        with aws_errors(action):
            yield from self._client("s3").get_paginator("list_objects_v2").paginate(Bucket=self.bucket, **kwargs)

    def _last_checkpoint(self, log: str) -> _Checkpoint | None:
        """Return what `_last_checkpoint` says, or None when the table has no checkpoint yet (< 100 commits)."""
        key = f"{log}_last_checkpoint"
        with aws_errors(f"read s3://{self.bucket}/{key}"):
            try:
                response = self._client("s3").get_object(Bucket=self.bucket, Key=key)
            except ClientError as error:
                if str(error.response.get("Error", {}).get("Code", "")) in _NO_SUCH_KEY:
                    return None  # no checkpoint yet, or no table at all: not an error
                raise
            body = response["Body"].read()
        try:
            content = json.loads(body)
            return _Checkpoint(version=int(content["version"]), files=int(content.get("numOfAddFiles") or 0),
                               written_at=response["LastModified"])
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            # Without it the whole log is listed: slower, never wrong.
            logger.warning("s3://%s/%s is not a Delta checkpoint pointer (%s); listing the whole log",
                           self.bucket, key, error)
            return None

    def _read_log(self, table: str) -> _LogState:
        """Return the table's newest commit from its Delta log, in two S3 calls whatever the log's length."""
        log = f"{self._table_root(table)}{DELTA_LOG}/"
        checkpoint = self._last_checkpoint(log)
        # The Delimiter keeps any subfolder of the log (staged commits) out of the page.
        listing: dict[str, Any] = {"Prefix": log, "Delimiter": "/"}
        version: int | None = None
        newest: datetime | None = None
        files = 0
        if checkpoint is not None:
            # Keys sort by version (zero-padded), and the checkpoint's own commit sorts after its
            # `.checkpoint.parquet`: the listing holds just the commits since the checkpoint.
            listing["StartAfter"] = f"{log}{checkpoint.version:020d}.checkpoint.parquet"
            version, newest, files = checkpoint.version, checkpoint.written_at, checkpoint.files
        pages = 0
        for page in self._pages(f"list s3://{self.bucket}/{log}", **listing):
            pages += 1
            for item in page.get("Contents") or []:
                commit = _COMMIT_FILE.fullmatch(item["Key"][len(log):])
                if commit is not None and (version is None or int(commit.group(1)) >= version):
                    version, newest = int(commit.group(1)), item["LastModified"]
        if pages > 1:
            # Only when checkpoints stopped being written: still right, but no longer constant.
            logger.warning("the Delta log of table %s has over a page of commits since its last checkpoint; "
                           "read %d pages", table, pages)
        if not version:  # no log, or only version 0: the empty table's creation holds no data
            newest = None
        return _LogState(version=version, newest_commit_at=newest, files=files)

    def _as_of(self, tables: tuple[str, ...]) -> datetime | None:
        newest = [self._read_log(t.name).newest_commit_at for t in TABLES if t.name in tables]
        known = [n for n in newest if n is not None]
        return min(known) if known else None

    # -- freshness --------------------------------------------------------------------------------

    def freshness(self) -> list[TableFreshness]:
        """Return every table's newest commit, live files, catalogued partitions and catalog coverage.

        `newest_file_at` is the LastModified of the newest commit in the table's Delta log (None before
        any data). `files` is the live data file count as of the table's last checkpoint (numOfAddFiles
        in `_last_checkpoint`; 0 before the first checkpoint): on AWS it is never counted by listing the
        data files. `partitions` is the number of partitions the Glue catalog lists for the table.
        """
        return [self._table_freshness(table.name) for table in TABLES]

    def _table_freshness(self, table: str) -> TableFreshness:
        log = self._read_log(table)
        catalogued = self._catalogued_partitions(table)
        return TableFreshness(
            table=table,
            newest_file_at=log.newest_commit_at,
            files=log.files,
            partitions=len(catalogued or ()),
            catalogued=catalogued is not None,
            # The crawlers create native Delta tables: Athena reads the partitions from the Delta log,
            # so no partition ever needs registering in Glue.
            uncatalogued_partitions=0,
        )

    def _catalogued_partitions(self, table: str) -> set[str] | None:
        """Return the table's partitions in the Glue catalog as `dt=.../hr=...`, or None if it has no table."""
        glue = self._client("glue")
        with aws_errors(f"read table {self.database}.{table} from the Glue catalog"):
            try:
                described = glue.get_table(DatabaseName=self.database, Name=table)["Table"]
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") == "EntityNotFoundException":
                    return None
                raise
            keys = [k["Name"] for k in described.get("PartitionKeys") or []] or ["dt", "hr"]
            found: set[str] = set()
            pages = glue.get_paginator("get_partitions").paginate(
                DatabaseName=self.database, TableName=table, ExcludeColumnSchema=True)
            for page in pages:
                for partition in page.get("Partitions") or []:
                    found.add("/".join(f"{k}={v}" for k, v in zip(keys, partition.get("Values") or [], strict=False)))
        return found


def _awswrangler() -> ModuleType:
    try:
        import awswrangler
    except ImportError as error:
        raise ConfigError("the aws backend needs awswrangler, which is not installed",
                          next_step="pip install -r requirements.txt") from error
    return awswrangler


def _wrangler_errors(wr: ModuleType) -> tuple[type[Exception], ...]:
    """Return awswrangler's exception classes (they share no base class but Exception)."""
    return tuple(v for v in vars(wr.exceptions).values() if isinstance(v, type) and issubclass(v, Exception))


def _failure(name: str, state: str, execution: dict[str, Any], tables: tuple[str, ...],
             workgroup: str) -> SignalStreamError:
    """Return the project's error for a query Athena failed or cancelled, with the next step."""
    status = execution.get("Status") or {}
    # Athena's reason can carry the role's ARN and the account id: they never reach a viewer.
    reason = redact(str(status.get("StateChangeReason") or (status.get("AthenaError") or {}).get("ErrorMessage")
                        or ""))
    lowered = reason.lower()
    if "bytes scanned limit" in lowered or ("scanned" in lowered and "limit" in lowered):
        return QueryError(f"query {name} was stopped: it would scan more data than workgroup {workgroup} allows",
                          next_step="choose a shorter time range, or raise the workgroup's bytes-scanned limit "
                          "in infra/template.yaml")
    missing = _MISSING_TABLE.search(reason)
    if "table_not_found" in lowered or missing:
        table = missing.group(1).split(".")[-1].strip("\"`'") if missing else (tables[0] if tables else "?")
        return NotFoundError(f"table {table} is not in the catalog yet", next_step=CRAWL_STEP)
    if "schema_not_found" in lowered or ("schema" in lowered and "does not exist" in lowered):
        return NotFoundError(f"query {name}: database {execution.get('QueryExecutionContext', {}).get('Database')} "
                             "is not in the catalog", next_step=f"check SIGNAL_DATABASE, then {CRAWL_STEP}")
    if "access denied" in lowered or "permission" in lowered or "not authorized" in lowered:
        return PermissionDeniedError(f"query {name}: {reason}",
                                     next_step="the role needs read access to the lake, the catalog and the "
                                     "workgroup's result location; see infra/template.yaml")
    if state == "CANCELLED":
        return QueryError(f"query {name} was cancelled{': ' + reason if reason else ''}",
                          next_step="run it again; the console retries on its next refresh")
    if (status.get("AthenaError") or {}).get("Retryable"):
        return BackendError(f"query {name} failed in Athena: {reason}",
                            next_step="retry in a few seconds; the console retries on its next refresh")
    return QueryError(f"query {name} failed in Athena: {reason or 'no reason given'}")
