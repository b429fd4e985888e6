"""The lake's tables and layout: the contract between the streaming job and every reader.

Every table is a Delta Lake table (written with delta-rs), the same locally (under
$SIGNAL_HOME/lake) and on S3 (under the lake prefix):

    aggregations/<table>/_delta_log/ + dt=YYYY-MM-DD/hr=HH/*.parquet
    quarantine/_delta_log/ + dt=YYYY-MM-DD/hr=HH/*.parquet
    checkpoints/<job>/      _job/status.json, _job/app.json

Which files hold a table's rows is the Delta log's business, not a naming rule of ours: a reader
reads a snapshot (a version's file list) and any Delta reader (DuckDB over the list, Athena,
Spark, `deltalake.DeltaTable(...).to_pandas()`) gets the same rows. Timestamps are Delta
`timestamp` (microseconds, UTC); `dt`/`hr` are the UTC partition of the row's window (quarantine:
its arrival).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa

AGGREGATIONS_PREFIX = "aggregations"
QUARANTINE_TABLE = "quarantine"
CHECKPOINTS_PREFIX = "checkpoints"
JOB_STATE_PREFIX = "_job"
JOB_STATUS_FILE = "status.json"
LAKE_APP_FILE = "app.json"
DELTA_LOG = "_delta_log"
PARTITION_KEYS: tuple[str, ...] = ("dt", "hr")
WINDOW_SECONDS = 60
# coverage_grid sums cells over coarser windows: a cell seen in every 1-minute window of a day would be
# 1,440 rows; in 1-hour windows it is 24, and the console snaps a coverage range to them. Hours, not 15
# minutes: a day at 1k records/s is then 0.75M rows instead of 3M, and the 24 h map query 54 ms instead of
# 150 (bench/RESULTS.md); a map of coverage loses little by counting whole hours.
COVERAGE_WINDOW_SECONDS = 60 * 60

# Replaced files stay readable this long by default, far longer than any query (Athena gives up after
# SIGNAL_ATHENA_TIMEOUT_SECONDS), then VACUUM deletes them.
DEFAULT_RETENTION_SECONDS = 3600
RETENTION_PROPERTY = "delta.deletedFileRetentionDuration"
LOG_RETENTION_PROPERTY = "delta.logRetentionDuration"


def table_properties(retention_seconds: int = DEFAULT_RETENTION_SECONDS) -> dict[str, str]:
    """Return the Delta properties every table gets: how long replaced files stay readable, a checkpoint
    every 100 commits, and ten minutes of log.

    Every commit and every reader's refresh lists `_delta_log/`, so the log's length is paid on each: with a
    day of log, an append at the 2 s trigger cost 18 ms at version 400 and 181 ms at version 2,000; with
    the log trimmed at each checkpoint it stayed at 18-26 ms (delta-rs 1.6.6, 2,000 appends). Nothing here
    reads old versions: readers take the newest snapshot, and replaced data files stay for the retention.
    """
    return {
        RETENTION_PROPERTY: f"interval {retention_seconds} seconds",
        LOG_RETENTION_PROPERTY: "interval 10 minutes",
        "delta.checkpointInterval": "100",
    }


TIME = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True)
class Merge:
    """How rows of an aggregation table with equal `keys` (window included) combine into one exact row."""

    keys: tuple[str, ...]
    sums: tuple[str, ...]
    mins: tuple[str, ...] = ()
    maxes: tuple[str, ...] = ()


@dataclass(frozen=True)
class TableSpec:
    """A lake table: its name, where it lives under the lake root, its columns and merge rule.

    Tables without a merge rule (quarantine: raw records) are only ever compacted, never summed.
    """

    name: str
    prefix: str
    schema: pa.Schema
    merge: Merge | None = None
    window_seconds: int = WINDOW_SECONDS

    @property
    def crawler(self) -> str:
        """Return the name of the crawler that catalogues this table."""
        return f"crawler_{self.name}"

    @property
    def delta_schema(self) -> pa.Schema:
        """Return the Delta table's schema: the columns, then the partition columns."""
        return pa.schema([*self.schema, *(pa.field(key, pa.string()) for key in PARTITION_KEYS)])


SIGNAL_STRENGTH_BY_OPERATOR = TableSpec(
    "signal_strength_by_operator",
    f"{AGGREGATIONS_PREFIX}/signal_strength_by_operator",
    pa.schema([
        ("window_start", TIME), ("window_end", TIME), ("operator", pa.string()), ("network", pa.string()),
        ("signal_sum", pa.float64()), ("signal_count", pa.int64()),
        ("signal_min", pa.float64()), ("signal_max", pa.float64()),
        # Every usable record, with a signal or not: the records KPI reads this table (15 rows a minute)
        # instead of status_count (hundreds of rows a minute).
        ("record_count", pa.int64()), ("batch_id", pa.int64()),
    ]),
    Merge(("window_start", "window_end", "operator", "network"), ("signal_sum", "signal_count", "record_count"),
          ("signal_min",), ("signal_max",)),
)
GPS_PRECISION_BY_PROVIDER = TableSpec(
    "gps_precision_by_provider",
    f"{AGGREGATIONS_PREFIX}/gps_precision_by_provider",
    pa.schema([
        ("window_start", TIME), ("window_end", TIME), ("provider", pa.string()),
        ("precision_sum", pa.float64()), ("precision_count", pa.int64()),
        ("satellites_sum", pa.float64()), ("satellites_count", pa.int64()), ("batch_id", pa.int64()),
    ]),
    Merge(("window_start", "window_end", "provider"),
          ("precision_sum", "precision_count", "satellites_sum", "satellites_count")),
)
STATUS_COUNT = TableSpec(
    "status_count",
    f"{AGGREGATIONS_PREFIX}/status_count",
    pa.schema([
        ("window_start", TIME), ("window_end", TIME), ("postal_code", pa.string()),
        ("status", pa.string()), ("description", pa.string()), ("record_count", pa.int64()),
        ("batch_id", pa.int64()),
    ]),
    Merge(("window_start", "window_end", "postal_code", "status", "description"), ("record_count",)),
)
COVERAGE_GRID = TableSpec(
    "coverage_grid",
    f"{AGGREGATIONS_PREFIX}/coverage_grid",
    pa.schema([
        ("window_start", TIME), ("window_end", TIME), ("lat_cell", pa.float64()), ("lon_cell", pa.float64()),
        ("operator", pa.string()), ("signal_sum", pa.float64()), ("signal_count", pa.int64()),
        ("record_count", pa.int64()), ("batch_id", pa.int64()),
    ]),
    Merge(("window_start", "window_end", "lat_cell", "lon_cell", "operator"),
          ("signal_sum", "signal_count", "record_count")),
    window_seconds=COVERAGE_WINDOW_SECONDS,
)
QUARANTINE = TableSpec(
    QUARANTINE_TABLE,
    QUARANTINE_TABLE,
    pa.schema([
        ("arrival_time", TIME), ("stream_seq", pa.string()), ("reason", pa.string()),
        ("raw_payload", pa.string()), ("batch_id", pa.int64()),
    ]),
)

AGGREGATION_TABLES: tuple[TableSpec, ...] = (
    SIGNAL_STRENGTH_BY_OPERATOR, GPS_PRECISION_BY_PROVIDER, STATUS_COUNT, COVERAGE_GRID,
)
TABLES: tuple[TableSpec, ...] = (*AGGREGATION_TABLES, QUARANTINE)
TABLES_BY_NAME: dict[str, TableSpec] = {table.name: table for table in TABLES}


def partition_name(dt: str, hr: str) -> str:
    """Return a partition's name as catalogs spell it: `dt=YYYY-MM-DD/hr=HH`."""
    return f"dt={dt}/hr={hr}"


def table_uri(lake_uri: str, spec: TableSpec) -> str:
    """Return the URI (local path or s3://) of a table under the lake root."""
    return f"{lake_uri.rstrip('/')}/{spec.prefix}"


@dataclass(frozen=True)
class MaintenanceRun:
    """What one compaction or vacuum of the lake did: the job writes its newest runs into its status
    document (glue_job/maintenance.py), the health page shows them."""

    kind: str  # "compaction" or "vacuum"
    at: datetime
    seconds: float
    partitions: int = 0
    files_removed: int = 0
    files_added: int = 0
    files_deleted: int = 0
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the run as a JSON-ready dict."""
        return {**asdict(self), "at": self.at.isoformat()}
