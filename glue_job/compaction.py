"""Compaction of the local lake: a dt/hr partition's committed batch files merged into one file.

The job writes one small file per micro-batch per partition per table (4,320 a day per table with
the 20 s trigger); DuckDB pays for every file it opens. A partition's committed batch files are
merged into `compacted-<max_batch_id>.snappy.parquet` once its hour is closed (ended more than a
watermark ago), and while it is open once it holds `OPEN_PARTITION_BATCHES` committed batch files
after its compacted file, so readers never open more than that many small files per partition.

On merge, rows of an aggregation table with equal keys (window and the table's group keys, see
core.lake_layout.Merge) are summed into one row: sums and counts added, min of mins, max of maxes,
`batch_id` the highest merged id ("merged up to"). Readers re-aggregate partial rows with the same
functions, so any query over any time range and filter gives what it gave over the batch files
(floating-point sums up to summation order, which DuckDB's parallel aggregation does not fix either).
Quarantine rows are raw records: concatenated, never merged.

A coverage_grid partition also gets `rollup-<id>.snappy.parquet`, its compacted rows summed over
spans of the hour (core.lake_layout.Rollup), written before the compacted file of the same id, so a
reader that lists both lists a rollup of exactly it; and after each run, the day pieces (sums of
several hours' rollups, core.lake_layout.day_piece_names) that are missing are written and those
that no longer match their hours' rollups are deleted.

Safety, with the readers' rule (core.lake_layout.live_file_names: read the newest compacted file
and the batch files after it):
- only batches up to the last *committed* one are merged: a batch being retried after a crash
  rewrites its own file, which may have a higher id only, so it is never inside a compacted file;
- each output is written under a hidden temporary name and renamed: readers see all of it or none
  of it. From the compacted file's rename on, readers skip the files it covers; only then are they
  (and rollups of other ids) deleted. A crash at any step leaves a lake that reads each row once,
  and the next run deletes what is left;
- data that arrives after a merge lands as a new batch file next to the compacted one, is read, and
  is merged by a later run.

Local lake only. The AWS entry (glue_job/job.py) must not compact: Athena reads every file of a
partition, it does not know this rule, and would count covered files twice.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from core.lake_layout import (
    BATCH,
    COMPACTED,
    DAY_HEAD,
    DAY_TAIL,
    ROLLUPS,
    TABLES,
    Rollup,
    TableSpec,
    compacted_file_name,
    current_rollup_name,
    day_piece_names,
    is_day_piece,
    live_file_names,
    parse_data_file_name,
    partition_hour,
    rollup_batch_id,
    rollup_file_name,
)
from glue_job.sink import LakeFiles

logger = logging.getLogger(__name__)

# Outputs are written in row groups of about this size, so DuckDB gets row groups worth a thread each.
# Quarantine inputs are streamed one record batch at a time (raw payloads: memory stays bounded); an
# aggregation table's partition is read whole and summed MERGE_BLOCK_MINUTES of windows at a time: a
# closed hour of coverage_grid at 1k records/s (1.4 M partial rows, 104 MB) peaks at ~230 MB of Arrow.
ROW_GROUP_ROWS = 128 * 1024
MERGE_BLOCK_MINUTES = 10
# A hidden temporary file of a compaction older than this was left by a run that died; a live run
# writes its file in seconds.
STALE_TEMPORARY = timedelta(hours=1)
TEMPORARY_PREFIXES = (f".{COMPACTED}-", ".rollup-", f".{DAY_HEAD}-", f".{DAY_TAIL}-")
# An open partition is merged once it holds this many committed batch files after its compacted file
# (5 minutes at the 20 s trigger). Each merge rewrites the hour's compacted rows so far. Replaying an
# hour at 1k records/s with the job's cadence (bench/console.py, `open_partition_merges`) cost, in CPU
# seconds per hour while open: 12.4 at 10, 8.6 at 15, 3.9 at 30, 2.2 at 60, 0.5 when only closed
# hours are merged; the slowest run 1.3 s (1.9 at 10), about what merging a whole closed hour costs.
# Readers pay for the batch files left, up to this many minus one: 14 added ~10 ms to coverage_cells
# and kpis, 29 (at 30) ~20 ms; at most 0.2% of a core buys half of that back.
OPEN_PARTITION_BATCHES = 15


@dataclass(frozen=True)
class PartitionPlan:
    """What compacting one partition does: files to merge (in order), the file they make, the rollup
    to write (of that file, or of the current compacted file when it has none), files to delete."""

    merge: tuple[str, ...]
    output: str | None
    rollup: str | None
    delete: tuple[str, ...]


def plan_partition(names: Iterable[str], last_committed: int, *, min_batches: int = 1,
                   rollup: bool = False) -> PartitionPlan:
    """Return the plan for one partition's file names, merging only batches up to `last_committed`.

    The newest compacted file (if any) is merged with the committed batch files after it, when there
    are at least `min_batches` of those. The files to delete are exactly those readers skip once the
    output exists (or, with nothing to merge, those they skip already), and every rollup but the one
    of the compacted file readers read; nothing is merged when that would copy a single file.
    """
    names = list(names)
    parsed = [f for f in (parse_data_file_name(n) for n in names) if f is not None]
    compacted = max((f.batch_id for f in parsed if f.kind == COMPACTED), default=None)
    after = -1 if compacted is None else compacted
    newer = sorted(f for f in parsed if f.kind == BATCH and after < f.batch_id <= last_committed)
    merge = ([compacted_file_name(compacted)] if compacted is not None else []) + [f.name for f in newer]
    merging = bool(newer) and len(newer) >= min_batches and len(merge) >= 2
    output = compacted_file_name(newer[-1].batch_id) if merging else None
    live = set(live_file_names([*names, output] if output else names))
    current = newer[-1].batch_id if merging else compacted
    wanted = rollup_file_name(current) if rollup and current is not None else None
    # A merge always writes its own rollup: one of the same id left by a run that died may sum other rows.
    write_rollup = wanted if wanted is not None and (merging or wanted not in names) else None
    delete = tuple([f.name for f in sorted(parsed) if f.name not in live]
                   + sorted(n for n in names if rollup_batch_id(n) is not None and n != wanted))
    return PartitionPlan(tuple(merge) if output else (), output, write_rollup, delete)


def partition_closed(partition: str, now: datetime, watermark: timedelta) -> bool:
    """Return whether a partition's hour ended more than `watermark` before `now`."""
    start = partition_hour(partition)
    return start is not None and start + timedelta(hours=1) <= now - watermark


@dataclass
class CompactionResult:
    """What one compaction run found and did, over every table."""

    partitions_seen: int = 0
    partitions_compacted: int = 0
    open_partitions_compacted: int = 0
    rollups_written: int = 0
    day_pieces_written: int = 0
    files_before: int = 0
    files_after: int = 0
    files_merged: int = 0
    files_deleted: int = 0
    rows_written: int = 0
    seconds: float = 0.0
    slowest_merge: tuple[float, str] = (0.0, "")  # seconds, table/partition
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


def _cast(batch: pa.RecordBatch, spec: TableSpec) -> pa.Table:
    # Same columns, same types, same order as the table's schema; anything else fails here.
    return pa.Table.from_batches([batch]).select(spec.schema.names).cast(spec.schema)


def _write(lake: LakeFiles, folder: str, name: str, tables: Iterable[pa.Table], schema: pa.Schema,
           mtime_ns: int | None) -> int:
    """Write the tables as one file (LakeFiles.write_atomically); return the rows written."""
    target = f"{folder}/{name}"
    rows = 0

    def write(path: str) -> None:
        nonlocal rows
        with pq.ParquetWriter(path, schema, filesystem=lake.fs, compression="snappy") as writer:
            for table in tables:
                writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
                rows += table.num_rows

    lake.write_atomically(target, write)
    if lake.local and mtime_ns is not None:
        # The data's as-of time (the newest file's mtime, read by the console) is the newest input's.
        os.utime(target, ns=(mtime_ns, mtime_ns))
    return rows


def _concatenated(lake: LakeFiles, spec: TableSpec, folder: str, names: Iterable[str]) -> Iterable[pa.Table]:
    """Yield the files' rows in order, in tables of about ROW_GROUP_ROWS rows (memory stays bounded)."""
    pending: list[pa.Table] = []
    pending_rows = 0
    for name in names:
        with lake.fs.open_input_file(f"{folder}/{name}") as source:
            for batch in pq.ParquetFile(source).iter_batches(batch_size=ROW_GROUP_ROWS):
                part = _cast(batch, spec)
                pending.append(part)
                pending_rows += part.num_rows
                if pending_rows >= ROW_GROUP_ROWS:
                    yield pa.concat_tables(pending)
                    pending, pending_rows = [], 0
    if pending:
        yield pa.concat_tables(pending)


def _read(lake: LakeFiles, spec: TableSpec, folder: str, names: Iterable[str]) -> pa.Table:
    parts = []
    for name in names:
        with lake.fs.open_input_file(f"{folder}/{name}") as source:
            parts += [_cast(batch, spec) for batch in pq.ParquetFile(source).iter_batches(batch_size=ROW_GROUP_ROWS)]
    return pa.concat_tables(parts) if parts else spec.schema.empty_table()


def _has_nan(table: pa.Table, columns: Iterable[str]) -> bool:
    return any(pc.any(pc.is_nan(table[c])).as_py() for c in columns)


def merge_rows(table: pa.Table, spec: TableSpec) -> pa.Table:
    """Return the rows with equal keys summed into one (min of mins, max of maxes, highest batch id).

    Sorted by window_start, so DuckDB skips row groups outside a time range. Grouping on nulls and
    NaN keys is as SQL groups them (null with null, NaN with NaN; -0.0 and 0.0 apart, which is finer).
    Unchanged for a table without a merge rule, or when a min/max column holds NaN: pyarrow skips
    NaN there and SQL does not (the job never writes NaN, its numbers are finite or null).
    """
    merge = spec.merge
    if merge is None or _has_nan(table, (*merge.mins, *merge.maxes)):
        return table
    functions = [*((c, "sum") for c in merge.sums), *((c, "min") for c in merge.mins),
                 *((c, "max") for c in merge.maxes), ("batch_id", "max")]
    # Rows of different windows never share a key: summing block by block of window_start gives the
    # same rows with a fraction of the hash table (a whole hour at once peaked at ~4x its input).
    blocks = pc.floor_temporal(table["window_start"], multiple=MERGE_BLOCK_MINUTES, unit="minute")
    merged = []
    for block in sorted(pc.unique(blocks).to_pylist(), key=lambda b: (b is None, b)):
        chosen = pc.is_null(blocks) if block is None else pc.equal(blocks, pa.scalar(block, blocks.type))
        grouped = table.filter(chosen).group_by(list(merge.keys), use_threads=False).aggregate(functions)
        named = {**{k: grouped[k] for k in merge.keys}, **{c: grouped[f"{c}_{f}"] for c, f in functions}}
        part = pa.table([named[n] for n in spec.schema.names], schema=spec.schema)
        merged.append(part.take(pc.sort_indices(part["window_start"])))
    return pa.concat_tables(merged) if merged else spec.schema.empty_table()


def _sum_by(table: pa.Table, keys: list[str], sums: tuple[str, ...]) -> pa.Table:
    """Return the table's rows with equal keys summed (batch_id: the highest), same column names."""
    functions = [*((c, "sum") for c in sums), ("batch_id", "max")]
    grouped = table.group_by(keys, use_threads=False).aggregate(functions)
    return pa.table([grouped[k] for k in keys] + [grouped[f"{c}_{f}"] for c, f in functions],
                    names=[*keys, *sums, "batch_id"])


def _piece(rows: pa.Table, rollup: Rollup, start: datetime, minutes: int) -> pa.Table:
    """Return rows (keys, sums, batch id) as one span of the rollup schema."""
    n = rows.num_rows
    return pa.table([pa.array([start.replace(tzinfo=None)] * n, pa.timestamp("ms")),
                     pa.array([minutes] * n, pa.int64()), *(rows[c] for c in rollup.schema.names[2:])],
                    schema=rollup.schema)


def span_rows(table: pa.Table, rollup: Rollup) -> list[pa.Table]:
    """Return the rollup's spans of a table's minute rows, one table per span that holds rows.

    Per hour of window_start: each `block_minutes` block summed once, then heads (the last one is
    the whole hour) and tails accumulated block by block (see core.lake_layout.Rollup).
    """
    block = rollup.block_minutes
    blocks_per_hour = 60 // block
    keys, sums = list(rollup.keys), rollup.sums
    keyed = pa.table([pc.floor_temporal(table["window_start"], unit="hour"),
                      pc.floor_temporal(table["window_start"], multiple=block, unit="minute"),
                      *(table[c] for c in (*keys, *sums, "batch_id"))],
                     names=["hour", "block", *keys, *sums, "batch_id"])
    blocks = _sum_by(keyed, ["hour", "block", *keys], sums)
    spans: list[pa.Table] = []

    def add(rows: pa.Table, start: datetime, minutes: int) -> None:
        if rows.num_rows:
            spans.append(_piece(rows, rollup, start, minutes))

    for hour in pc.unique(blocks["hour"]).to_pylist():
        if hour is None:
            continue  # no window: no time range selects it, minute rows or spans
        in_hour = blocks.filter(pc.equal(blocks["hour"], pa.scalar(hour, blocks["hour"].type)))
        per_block = [in_hour.filter(pc.equal(in_hour["block"], pa.scalar(hour + timedelta(minutes=k * block),
                                                                           in_hour["block"].type))).select(
            [*keys, *sums, "batch_id"]) for k in range(blocks_per_hour)]
        head = per_block[0]
        add(head, hour, block)
        for k in range(1, blocks_per_hour):
            head = _sum_by(pa.concat_tables([head, per_block[k]]), keys, sums)
            add(head, hour, (k + 1) * block)  # k + 1 == blocks_per_hour: the whole hour
        tail = per_block[-1]
        add(tail, hour + timedelta(minutes=(blocks_per_hour - 1) * block), block)
        for k in range(blocks_per_hour - 2, 0, -1):
            tail = _sum_by(pa.concat_tables([tail, per_block[k]]), keys, sums)
            add(tail, hour + timedelta(minutes=k * block), (blocks_per_hour - k) * block)
    return spans


def _merge(lake: LakeFiles, spec: TableSpec, folder: str, plan: PartitionPlan, mtimes: dict[str, int]) -> int:
    """Write the plan's rollup and output from its inputs; return the rows of the output."""
    rollup = ROLLUPS.get(spec.name)
    if plan.output is None:
        of = rollup_batch_id(plan.rollup) if plan.rollup is not None else None
        if plan.rollup is not None and of is not None and rollup is not None:
            # The current compacted file has no rollup (a run died between the two, or it predates rollups).
            source = compacted_file_name(of)
            spans = span_rows(_read(lake, spec, folder, [source]), rollup)
            _write(lake, folder, plan.rollup, spans, rollup.schema, mtimes[source])
        return 0
    newest = max(mtimes[name] for name in plan.merge)
    if spec.merge is None:
        return _write(lake, folder, plan.output, _concatenated(lake, spec, folder, plan.merge), spec.schema, newest)
    merged = merge_rows(_read(lake, spec, folder, plan.merge), spec)
    if plan.rollup is not None and rollup is not None:
        # Before the compacted file: a reader that lists compacted-<id> finds its rollup too.
        _write(lake, folder, plan.rollup, span_rows(merged, rollup), rollup.schema, newest)
    return _write(lake, folder, plan.output, [merged], spec.schema, newest)


def compact_partition(lake: LakeFiles, spec: TableSpec, partition: str, last_committed: int,
                      result: CompactionResult, *, min_batches: int = 1) -> None:
    """Compact one partition folder of a table (merge, rename, then delete what is covered)."""
    folder = lake.path(f"{spec.prefix}/{partition}")
    entries = [e for e in _entries(lake, folder) if e.type == pafs.FileType.File]
    names = [_base_name(e) for e in entries]
    mtimes = {_base_name(e): e.mtime_ns or 0 for e in entries}
    plan = plan_partition(names, last_committed, min_batches=min_batches, rollup=spec.name in ROLLUPS)
    result.files_before += len(live_file_names(names))
    if plan.output is not None or plan.rollup is not None:
        started = time.perf_counter()
        result.rows_written += _merge(lake, spec, folder, plan, mtimes)
        result.rollups_written += plan.rollup is not None
        if plan.output is not None:
            result.partitions_compacted += 1
            result.files_merged += len(plan.merge)
            took = time.perf_counter() - started
            result.slowest_merge = max(result.slowest_merge, (round(took, 3), f"{spec.prefix}/{partition}"))
    for name in plan.delete:
        lake.fs.delete_file(f"{folder}/{name}")
        result.files_deleted += 1
    stale = time.time_ns() - int(STALE_TEMPORARY.total_seconds() * 1e9)  # a file's age is wall-clock time
    for name, mtime in mtimes.items():
        if name.startswith(TEMPORARY_PREFIXES) and name.endswith(".tmp") and mtime < stale:
            lake.fs.delete_file(f"{folder}/{name}")  # left by a compaction that died before its rename
    result.files_after += len(live_file_names([*names, plan.output] if plan.output else names))


def _span_of(lake: LakeFiles, path: str, rollup: Rollup, *, whole_hour: bool) -> pa.Table:
    """Return a rollup file's whole-hour span, or a day piece's one span, as keys, sums and batch id.

    The whole-hour span is one row group of the rollup file, found by its statistics.
    """
    with lake.fs.open_input_file(path) as source:
        rows = pq.read_table(source, filters=[("span_minutes", "=", 60)] if whole_hour else None)
    return rows.select([*rollup.keys, *rollup.sums, "batch_id"])


def roll_up_days(lake: LakeFiles, spec: TableSpec, rollup: Rollup, today: datetime, result: CompactionResult) -> None:
    """Write the day pieces that are missing (core.lake_layout.day_piece_names), then delete stale ones.

    Heads are written for every partition; tails only for days before `today`, whose later hours
    no longer change every few minutes. Each piece adds hours to the nearest current piece, so a run
    after the open hour's merge writes one head.
    """
    folders: dict[datetime, str] = {}
    names: dict[datetime, list[str]] = {}
    for partition in table_partitions(lake, spec):
        hour = partition_hour(partition)
        if hour is not None:
            folders[hour] = lake.path(f"{spec.prefix}/{partition}")
            names[hour] = [_base_name(e) for e in _entries(lake, folders[hour]) if e.type == pafs.FileType.File]
    rollups = {hour: current_rollup_name(found) for hour, found in names.items()}
    expected = day_piece_names(rollups)
    keys, sums = list(rollup.keys), rollup.sums

    def total(base: pa.Table | str | None, hours: list[datetime]) -> pa.Table:
        parts = [] if base is None else [base if isinstance(base, pa.Table)
                                         else _span_of(lake, base, rollup, whole_hour=False)]
        parts += [_span_of(lake, f"{folders[h]}/{rollups[h]}", rollup, whole_hour=True) for h in hours]
        if not parts:
            return rollup.schema.empty_table().select([*keys, *sums, "batch_id"])
        return _sum_by(pa.concat_tables(parts), keys, sums)

    for day in sorted({hour.replace(hour=0) for hour in folders}):
        for head in (True, False):
            if not head and day >= today:
                continue
            order = range(24) if head else range(23, -1, -1)
            base: pa.Table | str | None = None
            pending: list[datetime] = []
            for h in order:
                hour = day + timedelta(hours=h)
                if hour not in folders:
                    continue
                if rollups[hour] is not None:
                    pending.append(hour)
                name = expected[hour][0 if head else 1]
                if name in names[hour]:
                    base, pending = f"{folders[hour]}/{name}", []
                    continue
                base, pending = total(base, pending), []
                start, minutes = (day, 60 * (h + 1)) if head else (hour, 60 * (24 - h))
                _write(lake, folders[hour], name, [_piece(base, rollup, start, minutes)], rollup.schema, None)
                names[hour].append(name)
                result.day_pieces_written += 1
    for hour, found in names.items():
        for name in found:
            if is_day_piece(name) and name not in expected[hour]:
                lake.fs.delete_file(f"{folders[hour]}/{name}")
                result.files_deleted += 1


def compact_lake(lake: LakeFiles, *, last_committed: int, now: datetime, watermark: timedelta,
                 tables: Iterable[TableSpec] = TABLES, open_batches: int = OPEN_PARTITION_BATCHES) -> CompactionResult:
    """Compact the tables' partitions: closed ones, and open ones with `open_batches` batch files to merge.

    A partition that fails (a file that cannot be read, a concurrent run that deleted an input) is
    skipped and named in the result: the lake still reads correctly, and the next run retries it.
    """
    started = time.perf_counter()
    result = CompactionResult()
    for spec in tables:
        for partition in table_partitions(lake, spec):
            closed = partition_closed(partition, now, watermark)
            result.partitions_seen += 1
            compacted_before = result.partitions_compacted
            try:
                compact_partition(lake, spec, partition, last_committed, result,
                                  min_batches=1 if closed else open_batches)
            except (OSError, pa.ArrowException) as error:
                result.failed.append(f"{spec.prefix}/{partition}: {type(error).__name__}: {error}")
            if not closed:
                result.open_partitions_compacted += result.partitions_compacted - compacted_before
        rollup = ROLLUPS.get(spec.name)
        if rollup is not None:
            try:
                roll_up_days(lake, spec, rollup, now.replace(hour=0, minute=0, second=0, microsecond=0), result)
            except (OSError, pa.ArrowException) as error:
                result.failed.append(f"{spec.prefix} day pieces: {type(error).__name__}: {error}")
    result.seconds = time.perf_counter() - started
    return result


class Compactor:
    """The job's compaction (closed partitions, open ones with enough batch files), at most once per `interval`."""

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
