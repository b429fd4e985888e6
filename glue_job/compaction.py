"""Compaction of the local lake: a closed dt/hr partition's batch files merged into one file.

The job writes one small file per micro-batch per partition per table (4,320 a day per table with
the 20 s trigger); DuckDB pays for every file it opens. Once an hour cannot get much more data,
its committed batch files are merged into `compacted-<max_batch_id>.snappy.parquet` (rows
concatenated, schema and batch ids unchanged: readers re-aggregate the partial sums anyway).

Safety, with the readers' rule (core.lake_layout.live_file_names: read the newest compacted file
and the batch files after it):
- only batches up to the last *committed* one are merged: a batch being retried after a crash
  rewrites its own file, which may have a higher id only, so it is never inside a compacted file;
- the compacted file is written under a hidden temporary name and renamed: readers see all of it
  or none of it. From the rename on, readers skip the files it covers; only then are they deleted.
  A crash at any step leaves a lake that reads each row once, and the next run deletes what is left;
- "closed" (the hour ended more than a watermark ago) only saves rewrites: data that still arrives
  lands as a new batch file next to the compacted one, is read, and is merged by a later run.

Local lake only. The AWS entry (glue_job/job.py) must not compact: Athena reads every file of a
partition, it does not know this rule, and would count covered files twice.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from core.lake_layout import (
    BATCH,
    COMPACTED,
    TABLES,
    TableSpec,
    compacted_file_name,
    live_file_names,
    parse_data_file_name,
)
from glue_job.sink import LakeFiles

logger = logging.getLogger(__name__)

# Inputs are read one record batch at a time and written in row groups of about this size, so memory
# stays bounded whatever the hour holds, and DuckDB still gets row groups worth a thread each.
ROW_GROUP_ROWS = 128 * 1024
# A hidden temporary file of a compaction older than this was left by a run that died; a live run
# writes its file in seconds.
STALE_TEMPORARY = timedelta(hours=1)
TEMPORARY_PREFIX = f".{COMPACTED}-"


@dataclass(frozen=True)
class PartitionPlan:
    """What compacting one partition does: files to merge (in order), the file they make, files to delete."""

    merge: tuple[str, ...]
    output: str | None
    delete: tuple[str, ...]


def plan_partition(names: Iterable[str], last_committed: int) -> PartitionPlan:
    """Return the plan for one partition's file names, merging only batches up to `last_committed`.

    The newest compacted file (if any) is merged with the committed batch files after it. The files
    to delete are exactly those readers skip once the output exists (or, with nothing to merge, those
    they skip already); nothing is merged when that would copy a single file.
    """
    names = list(names)
    parsed = [f for f in (parse_data_file_name(n) for n in names) if f is not None]
    compacted = max((f.batch_id for f in parsed if f.kind == COMPACTED), default=None)
    after = -1 if compacted is None else compacted
    newer = sorted(f for f in parsed if f.kind == BATCH and after < f.batch_id <= last_committed)
    merge = ([compacted_file_name(compacted)] if compacted is not None else []) + [f.name for f in newer]
    output = compacted_file_name(newer[-1].batch_id) if newer and len(merge) >= 2 else None
    live = set(live_file_names([*names, output] if output else names))
    delete = tuple(f.name for f in sorted(parsed) if f.name not in live)
    return PartitionPlan(tuple(merge) if output else (), output, delete)


def partition_hour(partition: str) -> datetime | None:
    """Return the start of a `dt=YYYY-MM-DD/hr=HH` partition's hour (UTC), or None for another name."""
    try:
        dt, hr = partition.split("/")
        if not (dt.startswith("dt=") and hr.startswith("hr=")):
            return None
        return datetime.strptime(f"{dt[3:]} {hr[3:]}", "%Y-%m-%d %H").replace(tzinfo=UTC)
    except ValueError:
        return None


def partition_closed(partition: str, now: datetime, watermark: timedelta) -> bool:
    """Return whether a partition's hour ended more than `watermark` before `now`."""
    start = partition_hour(partition)
    return start is not None and start + timedelta(hours=1) <= now - watermark


@dataclass
class CompactionResult:
    """What one compaction run found and did, over every table."""

    partitions_seen: int = 0  # closed ones; files_before/after count live files of every partition
    partitions_compacted: int = 0
    files_before: int = 0
    files_after: int = 0
    files_merged: int = 0
    files_deleted: int = 0
    rows_written: int = 0
    seconds: float = 0.0
    failed: list[str] = field(default_factory=list)


def _entries(lake: LakeFiles, folder: str) -> list[pafs.FileInfo]:
    return lake.fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))


def _base_name(info: pafs.FileInfo) -> str:
    return info.path.rstrip("/").rsplit("/", 1)[-1]


def table_partitions(lake: LakeFiles, spec: TableSpec) -> list[str]:
    """Return the table's `dt=.../hr=...` partition folders (relative to the table), oldest first."""
    found: list[str] = []
    for dt in sorted(_entries(lake, lake.path(spec.prefix)), key=_base_name):
        if dt.type == pafs.FileType.Directory and _base_name(dt).startswith("dt="):
            found += [f"{_base_name(dt)}/{_base_name(hr)}" for hr in sorted(_entries(lake, dt.path), key=_base_name)
                      if hr.type == pafs.FileType.Directory and _base_name(hr).startswith("hr=")]
    return found


def _merge(lake: LakeFiles, spec: TableSpec, folder: str, plan: PartitionPlan, mtimes: dict[str, int]) -> int:
    """Write the plan's output from its inputs (temporary file, then rename); return the rows written."""
    assert plan.output is not None
    target = f"{folder}/{plan.output}"
    temporary = f"{folder}/.{plan.output}.{uuid.uuid4().hex[:8]}.tmp"
    rows = 0
    try:
        with pq.ParquetWriter(temporary, spec.schema, filesystem=lake.fs, compression="snappy") as writer:
            pending: list[pa.Table] = []
            pending_rows = 0
            for name in plan.merge:
                with lake.fs.open_input_file(f"{folder}/{name}") as source:
                    for batch in pq.ParquetFile(source).iter_batches(batch_size=ROW_GROUP_ROWS):
                        # Same columns, same types, same order as the table's schema; anything else fails here.
                        part = pa.Table.from_batches([batch]).select(spec.schema.names).cast(spec.schema)
                        pending.append(part)
                        pending_rows += part.num_rows
                        if pending_rows >= ROW_GROUP_ROWS:
                            writer.write_table(pa.concat_tables(pending), row_group_size=ROW_GROUP_ROWS)
                            rows, pending, pending_rows = rows + pending_rows, [], 0
            if pending:
                writer.write_table(pa.concat_tables(pending), row_group_size=ROW_GROUP_ROWS)
                rows += pending_rows
        lake.fs.move(temporary, target)
    except BaseException:
        if lake.fs.get_file_info(temporary).type == pafs.FileType.File:
            lake.fs.delete_file(temporary)
        raise
    if lake.local:
        # The data's as-of time (the newest file's mtime, read by the console) is the newest input's.
        newest = max(mtimes[name] for name in plan.merge)
        os.utime(target, ns=(newest, newest))
    return rows


def compact_partition(lake: LakeFiles, spec: TableSpec, partition: str, last_committed: int,
                      result: CompactionResult) -> None:
    """Compact one partition folder of a table (merge, rename, then delete what is covered)."""
    folder = lake.path(f"{spec.prefix}/{partition}")
    entries = [e for e in _entries(lake, folder) if e.type == pafs.FileType.File]
    names = [_base_name(e) for e in entries]
    mtimes = {_base_name(e): e.mtime_ns or 0 for e in entries}
    plan = plan_partition(names, last_committed)
    result.files_before += len(live_file_names(names))
    if plan.output is not None:
        result.rows_written += _merge(lake, spec, folder, plan, mtimes)
        result.partitions_compacted += 1
        result.files_merged += len(plan.merge)
    for name in plan.delete:
        lake.fs.delete_file(f"{folder}/{name}")
        result.files_deleted += 1
    stale = time.time_ns() - int(STALE_TEMPORARY.total_seconds() * 1e9)  # a file's age is wall-clock time
    for name, mtime in mtimes.items():
        if name.startswith(TEMPORARY_PREFIX) and name.endswith(".tmp") and mtime < stale:
            lake.fs.delete_file(f"{folder}/{name}")  # left by a compaction that died before its rename
    result.files_after += len(live_file_names([*names, plan.output] if plan.output else names))


def compact_lake(lake: LakeFiles, *, last_committed: int, now: datetime, watermark: timedelta,
                 tables: Iterable[TableSpec] = TABLES) -> CompactionResult:
    """Compact every closed partition of the tables; return what was done.

    A partition that fails (a file that cannot be read, a concurrent run that deleted an input) is
    skipped and named in the result: the lake still reads correctly, and the next run retries it.
    """
    started = time.perf_counter()
    result = CompactionResult()
    for spec in tables:
        for partition in table_partitions(lake, spec):
            if not partition_closed(partition, now, watermark):
                names = (_base_name(e) for e in _entries(lake, lake.path(f"{spec.prefix}/{partition}")))
                live = len(live_file_names(names))
                result.files_before, result.files_after = result.files_before + live, result.files_after + live
                continue
            result.partitions_seen += 1
            try:
                compact_partition(lake, spec, partition, last_committed, result)
            except (OSError, pa.ArrowException) as error:
                result.failed.append(f"{spec.prefix}/{partition}: {type(error).__name__}: {error}")
    result.seconds = time.perf_counter() - started
    return result


class Compactor:
    """The job's compaction: closed partitions, at most once per `interval`, never failing the batch."""

    def __init__(self, lake: LakeFiles, watermark_minutes: int, *, interval: timedelta = timedelta(minutes=1),
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.lake = lake
        self.watermark = timedelta(minutes=watermark_minutes)
        self.interval = interval
        self.clock = clock
        self.last_run: datetime | None = None

    def maybe_run(self, last_committed: int) -> CompactionResult | None:
        """Compact when the interval has passed since the last run; return the result, or None."""
        now = self.clock()
        if last_committed < 0 or (self.last_run is not None and now - self.last_run < self.interval):
            return None
        self.last_run = now
        result = compact_lake(self.lake, last_committed=last_committed, now=now, watermark=self.watermark)
        for failure in result.failed:
            logger.warning("compaction skipped %s", failure)
        if result.partitions_compacted or result.files_deleted:
            logger.info("compacted %d partitions: %d -> %d live files in %.1f s", result.partitions_compacted,
                        result.files_before, result.files_after, result.seconds)
        return result
