"""The lake's layout and table schemas: the contract between the streaming job and every reader.

Same relative layout locally (under $SIGNAL_HOME/lake) and on S3 (under the lake prefix):

    aggregations/<table>/dt=YYYY-MM-DD/hr=HH/batch-<batch_id>.snappy.parquet
    quarantine/dt=YYYY-MM-DD/hr=HH/batch-<batch_id>.snappy.parquet
    checkpoints/      _job/status.json

Locally, partitions are compacted (glue_job/compaction.py): their committed batch files are merged
into `compacted-<id>.snappy.parquet`, `<id>` being the highest batch id merged. A partition's live
files, the ones readers read, are the newest compacted file and the batch files newer than it
(`live_file_names`): every other data file is already inside that compacted file, so reading it too
would count its rows twice. Rows of an aggregation table with equal keys are summed into one row on
merge (`Merge`), so a compacted row's `batch_id` means "merged from batches up to this id", not
"written by this batch".

A table with a `Rollup` (coverage_grid) also gets `rollup-<id>.snappy.parquet` next to its compacted
file: the same rows summed over spans of their hour (the whole hour, and the hour's heads and tails at
`block_minutes` boundaries). It is current only while `compacted-<id>` (the same id) is the
partition's compacted file (`current_rollup_name`). Day pieces sum the whole-hour spans of several
hours of one UTC day: `dayhead-<digest>` in hour h's partition (hours 0 .. h) and `daytail-<digest>`
in hour a's partition (hours a .. 23); the digest names the rollups they sum (`day_piece_names`), so
a piece is current only while those are. None of these is a data file of the table: crawlers and
`live_file_names` never read them. Athena never sees any: the AWS job does not compact.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pyarrow as pa

AGGREGATIONS_PREFIX = "aggregations"
QUARANTINE_TABLE = "quarantine"
CHECKPOINTS_PREFIX = "checkpoints"
JOB_STATE_PREFIX = "_job"
JOB_STATUS_FILE = "status.json"
PARTITION_KEYS: tuple[str, ...] = ("dt", "hr")
WINDOW_SECONDS = 60

_TIME = pa.timestamp("ms")


@dataclass(frozen=True)
class Merge:
    """How rows of an aggregation table with equal `keys` (window included) combine into one exact row."""

    keys: tuple[str, ...]
    sums: tuple[str, ...]
    mins: tuple[str, ...] = ()
    maxes: tuple[str, ...] = ()


@dataclass(frozen=True)
class TableSpec:
    """A lake table: its name, where it lives under the lake root, its file schema and merge rule.

    Tables without a merge rule (quarantine: raw records) are only ever concatenated.
    """

    name: str
    prefix: str
    schema: pa.Schema
    merge: Merge | None = None

    @property
    def crawler(self) -> str:
        """Return the name of the crawler that catalogues this table."""
        return f"crawler_{self.name}"


SIGNAL_STRENGTH_BY_OPERATOR = TableSpec(
    "signal_strength_by_operator",
    f"{AGGREGATIONS_PREFIX}/signal_strength_by_operator",
    pa.schema([
        ("window_start", _TIME), ("window_end", _TIME), ("operator", pa.string()), ("network", pa.string()),
        ("signal_sum", pa.float64()), ("signal_count", pa.int64()),
        ("signal_min", pa.float64()), ("signal_max", pa.float64()), ("batch_id", pa.int64()),
    ]),
    Merge(("window_start", "window_end", "operator", "network"), ("signal_sum", "signal_count"),
          ("signal_min",), ("signal_max",)),
)
GPS_PRECISION_BY_PROVIDER = TableSpec(
    "gps_precision_by_provider",
    f"{AGGREGATIONS_PREFIX}/gps_precision_by_provider",
    pa.schema([
        ("window_start", _TIME), ("window_end", _TIME), ("provider", pa.string()),
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
        ("window_start", _TIME), ("window_end", _TIME), ("postal_code", pa.string()),
        ("status", pa.string()), ("description", pa.string()), ("record_count", pa.int64()),
        ("batch_id", pa.int64()),
    ]),
    Merge(("window_start", "window_end", "postal_code", "status", "description"), ("record_count",)),
)
COVERAGE_GRID = TableSpec(
    "coverage_grid",
    f"{AGGREGATIONS_PREFIX}/coverage_grid",
    pa.schema([
        ("window_start", _TIME), ("window_end", _TIME), ("lat_cell", pa.float64()), ("lon_cell", pa.float64()),
        ("operator", pa.string()), ("signal_sum", pa.float64()), ("signal_count", pa.int64()),
        ("record_count", pa.int64()), ("batch_id", pa.int64()),
    ]),
    Merge(("window_start", "window_end", "lat_cell", "lon_cell", "operator"),
          ("signal_sum", "signal_count", "record_count")),
)
QUARANTINE = TableSpec(
    QUARANTINE_TABLE,
    QUARANTINE_TABLE,
    pa.schema([
        ("arrival_time", _TIME), ("stream_seq", pa.string()), ("reason", pa.string()),
        ("raw_payload", pa.string()), ("batch_id", pa.int64()),
    ]),
)

AGGREGATION_TABLES: tuple[TableSpec, ...] = (
    SIGNAL_STRENGTH_BY_OPERATOR, GPS_PRECISION_BY_PROVIDER, STATUS_COUNT, COVERAGE_GRID,
)
TABLES: tuple[TableSpec, ...] = (*AGGREGATION_TABLES, QUARANTINE)
TABLES_BY_NAME: dict[str, TableSpec] = {table.name: table for table in TABLES}


@dataclass(frozen=True)
class Rollup:
    """Span sums of an aggregation table, kept next to its compacted files (local lake only).

    A rollup file sums its compacted file's rows per key over spans of each hour: the whole hour,
    its heads [hour, hour + k * block) and its tails [hour + k * block, hour + 60 min), k = 1 ..
    60 / block - 1. A span's rows are written only when it holds rows, every span of every hour the
    file's rows are in is written, and each span is a row group of its own (`span_start`,
    `span_minutes` prune to it). So a time range needs at most its whole hours, one tail, one head,
    and the minute rows of less than a block at each end. The file name fixes this format: another
    set of spans needs another name, or readers would miss spans in older files.

    Readers see four views: `name` (the span rows), `covered` (the minute rows of the compacted
    files a current rollup sums), `uncovered` (every other live minute row) and `days` (the current
    day pieces), so that `covered` + `uncovered` is the table, each span of `name` is `covered`
    summed over that span, and each day piece `covered` summed over its hours.
    """

    table: TableSpec
    name: str
    keys: tuple[str, ...]
    sums: tuple[str, ...]
    block_minutes: int = 10

    @property
    def schema(self) -> pa.Schema:
        """Return the rollup files' schema: the span, the keys, the sums and the merged-up-to batch id."""
        columns = self.table.schema
        return pa.schema([("span_start", _TIME), ("span_minutes", pa.int64()),
                          *(columns.field(c) for c in (*self.keys, *self.sums)), columns.field("batch_id")])

    @property
    def covered(self) -> str:
        """Return the view name of the minute rows that current rollups sum."""
        return f"{self.name}_covered"

    @property
    def uncovered(self) -> str:
        """Return the view name of the minute rows no current rollup sums."""
        return f"{self.name}_uncovered"

    @property
    def days(self) -> str:
        """Return the view name of the current day pieces (same schema as the rollup files)."""
        return f"{self.name}_days"


# Not in TABLES: no crawler, no catalog entry; only the local reader and the compaction know it.
COVERAGE_GRID_ROLLUP = Rollup(COVERAGE_GRID, "coverage_grid_rollup", ("lat_cell", "lon_cell", "operator"),
                              ("signal_sum", "signal_count", "record_count"))
ROLLUPS: dict[str, Rollup] = {COVERAGE_GRID.name: COVERAGE_GRID_ROLLUP}


def batch_file_name(batch_id: int) -> str:
    """Return the deterministic file name of one micro-batch's output in a partition."""
    return f"batch-{batch_id}.snappy.parquet"


def partition_path(table: TableSpec, dt: str, hr: str) -> str:
    """Return the relative folder of one dt/hr partition of a table."""
    return f"{table.prefix}/dt={dt}/hr={hr}"


def compacted_file_name(batch_id: int) -> str:
    """Return the name of a partition's compacted file holding every batch up to `batch_id`."""
    return f"compacted-{batch_id}.snappy.parquet"


def rollup_file_name(batch_id: int) -> str:
    """Return the name of the rollup of `compacted-<batch_id>` in the same partition."""
    return f"rollup-{batch_id}.snappy.parquet"


BATCH = "batch"
COMPACTED = "compacted"
ROLLUP = "rollup"
_ROLLUP_FILE = re.compile(r"rollup-(0|[1-9][0-9]*)\.snappy\.parquet")
_DATA_FILE = re.compile(r"(batch|compacted)-(0|[1-9][0-9]*)\.snappy\.parquet")


@dataclass(frozen=True, order=True)
class DataFileName:
    """A data file of a partition, from its name: `batch` or `compacted`, and its batch id."""

    batch_id: int
    kind: str

    @property
    def name(self) -> str:
        """Return the file name."""
        return batch_file_name(self.batch_id) if self.kind == BATCH else compacted_file_name(self.batch_id)


def parse_data_file_name(name: str) -> DataFileName | None:
    """Return what a file name says (kind and batch id), or None when it is not a data file of the layout.

    Hidden files (`.batch-1.snappy.parquet.1a2b3c4d.tmp`, a write in progress) are not data files.
    """
    match = _DATA_FILE.fullmatch(name)
    return DataFileName(int(match.group(2)), match.group(1)) if match else None


def live_file_names(names: Iterable[str]) -> list[str]:
    """Return the files of one partition that readers read, in batch order.

    The newest compacted file holds the rows of every batch up to its id, so batch files (and older
    compacted files) up to that id are covered: they are left for compaction to delete. Files whose
    names are not of the layout are never data.
    """
    parsed = [f for f in (parse_data_file_name(n) for n in names) if f is not None]
    compacted = max((f.batch_id for f in parsed if f.kind == COMPACTED), default=None)
    if compacted is None:
        return [f.name for f in sorted(parsed)]
    newer = sorted(f for f in parsed if f.kind == BATCH and f.batch_id > compacted)
    return [compacted_file_name(compacted), *(f.name for f in newer)]


def rollup_batch_id(name: str) -> int | None:
    """Return the batch id of a rollup file's name, or None when it is not one."""
    match = _ROLLUP_FILE.fullmatch(name)
    return int(match.group(1)) if match else None


def current_rollup_name(names: Iterable[str]) -> str | None:
    """Return the rollup of the partition's newest compacted file when it exists, else None.

    A rollup of another id is left by a compaction that was replaced or died half-way: it sums
    other rows than the live compacted file holds, so it is never read.
    """
    names = list(names)
    compacted = max((f.batch_id for f in (parse_data_file_name(n) for n in names)
                     if f is not None and f.kind == COMPACTED), default=None)
    if compacted is None:
        return None
    wanted = rollup_file_name(compacted)
    return wanted if wanted in names else None


def partition_hour(partition: str) -> datetime | None:
    """Return the start of a `dt=YYYY-MM-DD/hr=HH` partition's hour (UTC), or None for another name."""
    try:
        dt, hr = partition.split("/")
        if not (dt.startswith("dt=") and hr.startswith("hr=")):
            return None
        return datetime.strptime(f"{dt[3:]} {hr[3:]}", "%Y-%m-%d %H").replace(tzinfo=UTC)
    except ValueError:
        return None


DAY_HEAD = "dayhead"
DAY_TAIL = "daytail"
_DAY_FILE = re.compile(r"(dayhead|daytail)-[0-9a-f]{16}\.snappy\.parquet")


def is_day_piece(name: str) -> bool:
    """Return whether a file name is a day piece's (current or not)."""
    return _DAY_FILE.fullmatch(name) is not None


def _day_piece_name(kind: str, day: datetime, rollups: Iterable[str]) -> str:
    manifest = f"{kind} {day:%Y-%m-%d}: " + ",".join(rollups)
    return f"{kind}-{hashlib.sha256(manifest.encode()).hexdigest()[:16]}.snappy.parquet"


def day_piece_names(rollups: Mapping[datetime, str | None]) -> dict[datetime, tuple[str, str]]:
    """Return, for each hour in `rollups`, the names its current day head and day tail have.

    `rollups` maps the start of every partition's hour (UTC) to its current rollup file name (None
    without one). A head in hour h's partition sums the whole-hour spans of the rollups of hours
    0 .. h of its day, a tail in hour a's partition those of hours a .. 23; an hour without a rollup
    adds nothing (its rows are all read as minute rows). The name is a digest of the day and of
    the rollup of each of those hours, so it changes whenever one of them does.
    """
    names: dict[datetime, tuple[str, str]] = {}
    for day in sorted({hour.replace(hour=0) for hour in rollups}):
        entries = [rollups.get(day + timedelta(hours=h)) or "-" for h in range(24)]
        for h in range(24):
            hour = day + timedelta(hours=h)
            if hour in rollups:
                names[hour] = (_day_piece_name(DAY_HEAD, day, entries[:h + 1]),
                               _day_piece_name(DAY_TAIL, day, entries[h:]))
    return names
