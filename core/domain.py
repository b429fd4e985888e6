"""The values the product passes around: stream results, job progress, crawler and table state, query answers.

They are plain frozen dataclasses, shared by the backends (which return them) and by batching, replay,
charts, health and the demo (which read them). The ports that return them are in core/backends/base.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd

from core.lake_layout import MaintenanceRun

MAX_RECORDS_PER_PUT = 500
MAX_BYTES_PER_PUT = 5 * 1024 * 1024
MAX_BYTES_PER_RECORD = 1024 * 1024


@dataclass(frozen=True)
class FailedRecord:
    """A record the stream refused for good, with the last error it gave."""

    record: Mapping[str, Any]
    error_code: str
    message: str


@dataclass(frozen=True)
class PutResult:
    """What happened to one put_records call."""

    sent: int
    failed: tuple[FailedRecord, ...] = ()
    api_calls: int = 0
    retries: int = 0


@dataclass(frozen=True)
class StreamHealth:
    """The stream's state as the console shows it."""

    name: str
    exists: bool
    pending_records: int | None = None
    oldest_pending_at: datetime | None = None
    last_record_at: datetime | None = None
    detail: str = ""


@dataclass(frozen=True)
class BatchProgress:
    """One micro-batch of the streaming job."""

    batch_id: int
    time: datetime
    input_rows: int
    aggregated_rows: int
    quarantined_rows: int
    late_rows: int
    duplicate_rows: int
    input_rows_per_second: float
    processed_rows_per_second: float
    duration_ms: int
    watermark: datetime | None


@dataclass(frozen=True)
class JobStatus:
    """The streaming job's state and its recent progress."""

    name: str
    state: str  # RUNNING, STARTING, STOPPED, FAILED
    started_at: datetime | None = None
    last_batch: BatchProgress | None = None
    recent_batches: tuple[BatchProgress, ...] = ()
    totals: Mapping[str, int] = field(default_factory=dict)
    error: str | None = None
    restarts: int = 0
    maintenance: Mapping[str, MaintenanceRun] = field(default_factory=dict)


@dataclass(frozen=True)
class CrawlerState:
    """A crawler's state and the result of its last run."""

    name: str
    table: str
    state: str  # READY, RUNNING
    last_started: datetime | None = None
    last_finished: datetime | None = None
    last_result: str | None = None  # SUCCEEDED, FAILED
    tables_added: int = 0
    tables_updated: int = 0
    partitions_added: int = 0
    message: str = ""


@dataclass(frozen=True)
class TableFreshness:
    """A lake table: its newest file and whether the catalog knows it."""

    table: str
    newest_file_at: datetime | None
    files: int
    partitions: int
    catalogued: bool
    uncatalogued_partitions: int = 0


@dataclass(frozen=True)
class QueryResult:
    """A named query's answer with where it came from."""

    name: str
    frame: pd.DataFrame
    as_of: datetime | None
    sql: str
    params: tuple[Any, ...]
    query_id: str
    bytes_scanned: int | None
    duration_ms: float
