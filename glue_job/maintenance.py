"""Compaction and vacuum of the lake's Delta tables, run by the job between micro-batches (both backends).

The job appends one small file per table, partition and batch (4,320 a day per table at the 20 s
trigger). Between batches, at most once per `interval`, it rewrites partitions:
- an aggregation table's partition is replaced, in one Delta commit (overwrite with a dt/hr
  predicate), by its rows merged: rows with equal keys (window included, core.lake_layout.Merge)
  summed into one, min of mins, max of maxes, batch_id the highest merged. Readers re-aggregate
  partial rows with the same functions, so every query answers the same, and a closed hour holds
  one file with one row per key instead of one per key and batch;
- quarantine (raw records, never summed) is compacted with Delta OPTIMIZE.
A partition is rewritten once its hour is closed (ended more than a watermark ago) and it holds more
than one file, and while open once it holds OPEN_PARTITION_FILES files. Every rewrite is a Delta
commit: a reader's snapshot holds either the old files or the new one, never both.

VACUUM deletes the files rewrites replaced once the table's retention has passed (core.lake_layout.
table_properties: an hour by default, far longer than any query), at most once per `vacuum_interval`, using the
log's tombstones rather than listing the table. The job is the lake's one writer, so rewrites never
race an append: they run in the batch function, between two batches.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, write_deltalake

from core.delta_lake import partition_files
from core.lake_layout import PARTITION_KEYS, TABLES, MaintenanceRun, Merge, TableSpec
from glue_job.sink import WRITER_PROPERTIES, LakeTables

logger = logging.getLogger(__name__)

# An open partition is rewritten once it holds this many files (5 minutes at the 20 s trigger): readers
# open at most this many small files per open hour, and each rewrite reads the hour's rows so far.
OPEN_PARTITION_FILES = 15
# At most this many partitions per table per run: a run after a long stop costs no more than one in
# steady state, and the backlog is worked off run by run.
PARTITIONS_PER_RUN = 2
MAINTENANCE_INTERVAL = timedelta(minutes=1)
VACUUM_INTERVAL = timedelta(minutes=10)
_PARTITION = re.compile(r"dt=(\d{4}-\d{2}-\d{2})/hr=(\d{2})")


def merge_rows(rows: pa.Table, merge: Merge, schema: pa.Schema) -> pa.Table:
    """Return the rows with equal keys (and partition) combined into one exact row, in `schema`."""
    keys = [*merge.keys, *PARTITION_KEYS]
    aggregations = ([(c, "sum") for c in merge.sums] + [(c, "min") for c in merge.mins]
                    + [(c, "max") for c in merge.maxes] + [("batch_id", "max")])
    grouped = rows.group_by(keys, use_threads=False).aggregate(aggregations)
    renamed = grouped.rename_columns([n.rsplit("_", 1)[0] if n not in keys else n for n in grouped.column_names])
    return renamed.select(schema.names).cast(schema)


def partition_predicate(partition: str) -> tuple[str, str, str]:
    """Return (dt, hr, SQL predicate) of a `dt=.../hr=...` partition name, which must be one of ours."""
    match = _PARTITION.fullmatch(partition)
    if match is None:  # the values are put in a predicate's text: only ever our own dt/hr shapes
        raise ValueError(f"not a dt/hr partition: {partition!r}")
    dt, hr = match.groups()
    return dt, hr, f"dt = '{dt}' AND hr = '{hr}'"


def partition_hour(partition: str) -> datetime:
    """Return the start (UTC) of a partition's hour."""
    dt, hr, _ = partition_predicate(partition)
    return datetime.strptime(f"{dt} {hr}", "%Y-%m-%d %H").replace(tzinfo=UTC)


def partitions_to_rewrite(files: dict[str, int], now: datetime, watermark: timedelta) -> list[str]:
    """Return the partitions a run rewrites, oldest first: closed ones with more than one file, open
    ones with OPEN_PARTITION_FILES or more; at most PARTITIONS_PER_RUN."""
    due = []
    for partition, count in sorted(files.items()):
        closed = partition_hour(partition) + timedelta(hours=1) + watermark <= now
        if (closed and count > 1) or count >= OPEN_PARTITION_FILES:
            due.append(partition)
    return due[:PARTITIONS_PER_RUN]


def rewrite_partition(table: DeltaTable, spec: TableSpec, partition: str) -> tuple[int, int]:
    """Rewrite one partition in one commit (merged rows, or OPTIMIZE for raw tables); return the files
    removed and added."""
    dt, hr, predicate = partition_predicate(partition)
    if spec.merge is None:
        metrics = table.optimize.compact(partition_filters=[("dt", "=", dt), ("hr", "=", hr)],
                                         writer_properties=WRITER_PROPERTIES)
        return int(metrics.get("numFilesRemoved", 0)), int(metrics.get("numFilesAdded", 0))
    before = len(table.file_uris(file_pruning_predicate=[("dt", "=", dt), ("hr", "=", hr)]))
    rows = table.to_pyarrow_table(filters=[("dt", "=", dt), ("hr", "=", hr)])
    merged = merge_rows(rows, spec.merge, spec.delta_schema)
    write_deltalake(table, merged, mode="overwrite", predicate=predicate, partition_by=list(PARTITION_KEYS),
                    writer_properties=WRITER_PROPERTIES,
                    commit_properties=CommitProperties(custom_metadata={"signal_stream": "merge"}))
    after = len(table.file_uris(file_pruning_predicate=[("dt", "=", dt), ("hr", "=", hr)]))
    return before, after


class LakeMaintenance:
    """Runs compaction and vacuum between batches, each at most once per its interval."""

    def __init__(self, tables: LakeTables, watermark_minutes: int, *, clock: Callable[[], datetime] | None = None,
                 interval: timedelta = MAINTENANCE_INTERVAL, vacuum_interval: timedelta = VACUUM_INTERVAL) -> None:
        self.tables = tables
        self.watermark = timedelta(minutes=watermark_minutes)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.interval = interval
        self.vacuum_interval = vacuum_interval
        self.last_compaction: datetime | None = None
        self.last_vacuum: datetime | None = None

    def maybe_run(self) -> list[MaintenanceRun]:
        """Run what is due; return what ran. A failure is logged and reported, never raised: the next
        run tries again, and the batches keep committing."""
        now = self.clock()
        runs = []
        if self.last_compaction is None or now - self.last_compaction >= self.interval:
            self.last_compaction = now
            runs.append(self._guarded("compaction", now, self.compact))
        if self.last_vacuum is None or now - self.last_vacuum >= self.vacuum_interval:
            self.last_vacuum = now
            runs.append(self._guarded("vacuum", now, self.vacuum))
        return runs

    def _guarded(self, kind: str, now: datetime, run: Callable[[datetime], MaintenanceRun]) -> MaintenanceRun:
        started = time.perf_counter()
        try:
            return run(now)
        except Exception as error:
            logger.exception("%s failed", kind)
            return MaintenanceRun(kind, now, time.perf_counter() - started, error=f"{type(error).__name__}: {error}")

    def compact(self, now: datetime) -> MaintenanceRun:
        """Rewrite the partitions that are due, in every table."""
        started = time.perf_counter()
        partitions = removed = added = 0
        for spec in TABLES:
            table = self.tables.table(spec)
            for partition in partitions_to_rewrite(partition_files(table), now, self.watermark):
                gone, new = rewrite_partition(table, spec, partition)
                partitions, removed, added = partitions + 1, removed + gone, added + new
        return MaintenanceRun("compaction", now, time.perf_counter() - started, partitions, removed, added)

    def vacuum(self, now: datetime) -> MaintenanceRun:
        """Delete replaced files older than each table's retention."""
        started = time.perf_counter()
        deleted = 0
        for spec in TABLES:
            deleted += len(self.tables.table(spec).vacuum(dry_run=False))
        return MaintenanceRun("vacuum", now, time.perf_counter() - started, files_deleted=deleted)
