"""The lake's layout and table schemas: the contract between the streaming job and every reader.

Same relative layout locally (under $SIGNAL_HOME/lake) and on S3 (under the lake prefix):

    aggregations/<table>/dt=YYYY-MM-DD/hr=HH/batch-<batch_id>.snappy.parquet
    quarantine/dt=YYYY-MM-DD/hr=HH/batch-<batch_id>.snappy.parquet
    checkpoints/      _job/status.json

Locally, closed partitions are compacted (glue_job/compaction.py): their batch files are merged into
`compacted-<max_batch_id>.snappy.parquet`. A partition's live files, the ones readers read, are the
newest compacted file and the batch files newer than it (`live_file_names`): every other data file
is already inside that compacted file, so reading it too would count its rows twice.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

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
class TableSpec:
    """A lake table: its name, where it lives under the lake root, and its file schema."""

    name: str
    prefix: str
    schema: pa.Schema

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
)
GPS_PRECISION_BY_PROVIDER = TableSpec(
    "gps_precision_by_provider",
    f"{AGGREGATIONS_PREFIX}/gps_precision_by_provider",
    pa.schema([
        ("window_start", _TIME), ("window_end", _TIME), ("provider", pa.string()),
        ("precision_sum", pa.float64()), ("precision_count", pa.int64()),
        ("satellites_sum", pa.float64()), ("satellites_count", pa.int64()), ("batch_id", pa.int64()),
    ]),
)
STATUS_COUNT = TableSpec(
    "status_count",
    f"{AGGREGATIONS_PREFIX}/status_count",
    pa.schema([
        ("window_start", _TIME), ("window_end", _TIME), ("postal_code", pa.string()),
        ("status", pa.string()), ("description", pa.string()), ("record_count", pa.int64()),
        ("batch_id", pa.int64()),
    ]),
)
COVERAGE_GRID = TableSpec(
    "coverage_grid",
    f"{AGGREGATIONS_PREFIX}/coverage_grid",
    pa.schema([
        ("window_start", _TIME), ("window_end", _TIME), ("lat_cell", pa.float64()), ("lon_cell", pa.float64()),
        ("operator", pa.string()), ("signal_sum", pa.float64()), ("signal_count", pa.int64()),
        ("record_count", pa.int64()), ("batch_id", pa.int64()),
    ]),
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


def batch_file_name(batch_id: int) -> str:
    """Return the deterministic file name of one micro-batch's output in a partition."""
    return f"batch-{batch_id}.snappy.parquet"


def partition_path(table: TableSpec, dt: str, hr: str) -> str:
    """Return the relative folder of one dt/hr partition of a table."""
    return f"{table.prefix}/dt={dt}/hr={hr}"


def compacted_file_name(batch_id: int) -> str:
    """Return the name of a partition's compacted file holding every batch up to `batch_id`."""
    return f"compacted-{batch_id}.snappy.parquet"


BATCH = "batch"
COMPACTED = "compacted"
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
