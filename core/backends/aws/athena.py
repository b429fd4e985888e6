"""SQL over the lake on Athena (through awswrangler), and lake freshness from S3 listings and Glue.

Same semantics as the local twin (core/backends/local_lake.py): named queries from core.queries, the
data's as-of time from the newest files of the queried tables, the same NotFoundError when a table
has not been crawled yet. awswrangler is imported on the first query, so the console starts without it.

- Parameters: the named query's `?` placeholders go to Athena unchanged, the values as Athena
  ExecutionParameters. awswrangler's qmark paramstyle passes them through untouched, and Athena reads
  each one as a SQL literal, so `athena_literal` quotes every value here, exactly once.
- Reuse: Athena's server-side result reuse (ResultReuseConfiguration), at most `cache_seconds` old, in
  whole minutes (Athena's unit): under a minute, reuse is off. awswrangler's client-side cache is not
  used: it matches the SQL text alone, so with `?` parameters it would return another range's answer.
- Timeout: awswrangler waits without a deadline, so the query is started with awswrangler, polled here
  until `timeout_seconds`, and stopped in Athena when the deadline passes (it stops scanning, and
  billing); its results are read with awswrangler once it succeeded.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from types import ModuleType
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from core import queries
from core.backends.aws.clients import new_client
from core.backends.aws.errors import aws_errors, translate
from core.backends.base import QueryResult, TableFreshness
from core.errors import (
    BackendError,
    ConfigError,
    InputError,
    NotFoundError,
    PermissionDeniedError,
    QueryError,
    SignalStreamError,
)
from core.lake_layout import TABLES, TABLES_BY_NAME

logger = logging.getLogger(__name__)

FINAL_STATES = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})
MAX_POLL_SECONDS = 1.0
CRAWL_STEP = "run the crawlers once data has arrived: python -m core.cli crawl"
_MISSING_TABLE = re.compile(r"table\s+'?([\w.\"`]+?)'?\s+does not exist", re.IGNORECASE)


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


def _is_data_file(name: str) -> bool:
    return name.endswith(".parquet") and not name.startswith(".")


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
        minutes = int(cache_seconds // 60)
        self.reuse: dict[str, Any] | None = (
            {"ResultReuseByAgeConfiguration": {"Enabled": True, "MaxAgeInMinutes": minutes}} if minutes >= 1 else None
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
        # Listed before the query starts: every file older than as_of is visible to the query.
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

    # -- S3 listings ------------------------------------------------------------------------------

    def _table_root(self, table: str) -> str:
        return _join(self.prefix, TABLES_BY_NAME[table].prefix) + "/"

    def _pages(self, action: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        with aws_errors(action):
            yield from self._client("s3").get_paginator("list_objects_v2").paginate(Bucket=self.bucket, **kwargs)

    def _subfolders(self, folder: str, key: str) -> list[str]:
        """Return the `key=...` folders directly under `folder` (full prefixes, sorted)."""
        found = [p["Prefix"] for page in self._pages(f"list s3://{self.bucket}/{folder}",
                                                       Prefix=f"{folder}{key}=", Delimiter="/")
                 for p in page.get("CommonPrefixes") or []]
        return sorted(found)

    def _newest_partitions(self, root: str, count: int = 2) -> list[str]:
        partitions: list[str] = []
        for dt in reversed(self._subfolders(root, "dt")):
            partitions = self._subfolders(dt, "hr") + partitions
            if len(partitions) >= count:
                break
        return partitions[-count:]

    def _newest_file_at(self, table: str) -> datetime | None:
        # Late data lands at most one watermark behind, so the two newest partitions hold the newest file.
        newest: datetime | None = None
        for partition in self._newest_partitions(self._table_root(table)):
            for page in self._pages(f"list s3://{self.bucket}/{partition}", Prefix=partition):
                for item in page.get("Contents") or []:
                    name = item["Key"][len(partition):]
                    if "/" not in name and _is_data_file(name) and (newest is None or item["LastModified"] > newest):
                        newest = item["LastModified"]
        return newest

    def _as_of(self, tables: tuple[str, ...]) -> datetime | None:
        newest = [self._newest_file_at(t.name) for t in TABLES if t.name in tables]
        known = [n for n in newest if n is not None]
        return min(known) if known else None

    # -- freshness --------------------------------------------------------------------------------

    def freshness(self) -> list[TableFreshness]:
        """Return every table's newest file, file and partition counts and catalog coverage."""
        return [self._table_freshness(table.name) for table in TABLES]

    def _table_freshness(self, table: str) -> TableFreshness:
        root = self._table_root(table)
        partitions: set[str] = set()
        files = 0
        newest: datetime | None = None
        for page in self._pages(f"list s3://{self.bucket}/{root}", Prefix=root):
            for item in page.get("Contents") or []:
                parts = item["Key"][len(root):].split("/")
                if len(parts) != 3 or not parts[0].startswith("dt=") or not parts[1].startswith("hr="):
                    continue
                if not _is_data_file(parts[2]):
                    continue
                files += 1
                partitions.add(f"{parts[0]}/{parts[1]}")
                if newest is None or item["LastModified"] > newest:
                    newest = item["LastModified"]
        catalogued = self._catalogued_partitions(table)
        return TableFreshness(
            table=table,
            newest_file_at=newest,
            files=files,
            partitions=len(partitions),
            catalogued=catalogued is not None,
            uncatalogued_partitions=len(partitions - (catalogued or set())),
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
    reason = str(status.get("StateChangeReason") or (status.get("AthenaError") or {}).get("ErrorMessage") or "")
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
