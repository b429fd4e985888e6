"""A day of streaming-job output committed into a fresh lake through the job's own sink, for the console
benchmarks.

What the job would have committed at a steady input rate with the default trigger: per micro-batch,
that batch's partial aggregates of every aggregation table (one 20 s slice of one 1-minute window;
coverage_grid's of one 1-hour window) and its quarantined records, committed with
glue_job.sink.commit_batch (one Delta append per table, with the batch's app transaction), and after
each batch glue_job.maintenance.LakeMaintenance.maybe_run(), as glue_job/local.py runs it, on a
simulated clock that is the batch's commit time (the end of its trigger interval). So the open hour
is rewritten every 15 files and closed hours end up as one file. Commit times in the logs are the real
ones of the generation; each log entry's file time is its commit's simulated time (LogClock), so delta-rs
trims the logs at checkpoints to `delta.logRetentionDuration` of simulated time, as a running job's are
by real time (every commit and every reader lists the log: its length is paid on each).

A day takes about 5 minutes with two workers on a quiet 2-core machine (8 under load): nearly all of it
the sink's Delta commits (about 17 ms each, five per batch) and the maintenance's rewrites.

Records are never materialised one by one in Python: each batch draws its records' categories and
values as numpy arrays and groups them with bincount. Generation is seeded (per hour of data): the
same seed and range give the same rows whatever the number of workers. With several workers the
tables are split between processes, each writing its tables into a lake of its own (its other tables
stay empty, so its maintenance has nothing to do there), and the table folders are moved into the
lake at the end (a Delta table's log holds paths relative to its folder); no two processes ever
write the same table.

    python -m bench.lake_data --home /tmp/signal_home [--hours 24] [--workers N]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core.backends.local import build_local_backend
from core.backends.local_catalog import LocalCrawlers
from core.config import Settings
from core.delta_lake import open_table, partition_files
from core.lake_layout import (
    COVERAGE_GRID,
    DELTA_LOG,
    GPS_PRECISION_BY_PROVIDER,
    QUARANTINE,
    SIGNAL_STRENGTH_BY_OPERATOR,
    STATUS_COUNT,
    TABLES,
    TABLES_BY_NAME,
    WINDOW_SECONDS,
    table_uri,
)
from glue_job.maintenance import LakeMaintenance
from glue_job.sink import LakeTables, commit_batch

# (operator, network): the big four carry most traffic; virtual operators ride on a host network.
OPERATOR_NETWORKS: tuple[tuple[str, str], ...] = (
    ("Movistar", "Movistar"), ("Vodafone", "Vodafone"), ("Orange", "Orange"), ("Yoigo", "Yoigo"),
    ("MasMovil", "Yoigo"), ("Simyo", "Orange"), ("Pepephone", "Yoigo"), ("Jazztel", "Orange"),
    ("Lowi", "Vodafone"), ("DIGI", "Movistar"), ("Tuenti", "Movistar"), ("O2", "Movistar"),
    ("Euskaltel", "Euskaltel"), ("R", "R"), ("unknown", "unknown"),
)
PROVIDERS: tuple[str, ...] = ("gps", "fused", "network")
PROVIDER_WEIGHTS = (0.55, 0.30, 0.15)
PROVIDER_PRECISION_M = (8.0, 25.0, 900.0)  # typical precision (m): gps fixes are tight, cell-based ones wide
PROVIDER_SATELLITES = (9.0, 5.0, 0.0)
STATUSES: tuple[tuple[str, str], ...] = (
    ("0", "STATE_IN_SERVICE"), ("1", "STATE_OUT_OF_SERVICE"), ("2", "STATE_EMERGENCY_ONLY"), ("3", "STATE_POWER_OFF"),
)
STATUS_WEIGHTS = (0.90, 0.05, 0.03, 0.02)
QUARANTINE_REASONS = ("malformed JSON", "no usable event time", "event time ahead of arrival")
APP_ID = "bench-lake-data"  # the app transaction id of every generated commit (a real job's is a uuid)


@dataclass(frozen=True)
class Load:
    """The input the lake stands for: record rate, trigger and the variety of the records."""

    records_per_second: int = 1000
    trigger_seconds: int = 20
    operators: int = len(OPERATOR_NETWORKS)
    postal_codes: int = 200
    cells: int = 2000
    grid_degrees: float = 0.01
    quarantine_per_batch: int = 20  # 0.1 % of the records cannot be parsed
    signal_missing: float = 0.02  # records without a usable signal value: in record_count, not signal_count

    @property
    def records_per_batch(self) -> int:
        """Return the records one micro-batch aggregates."""
        return self.records_per_second * self.trigger_seconds

    @property
    def batches_per_hour(self) -> int:
        """Return the micro-batches of one hour."""
        return 3600 // self.trigger_seconds


class Categorical:
    """Draw category indices with given weights through a lookup table.

    Generator.choice(p=...) validates and searches the weights on every call (about 1 ms per 20k
    draws); a 65,536-entry table of the inverse CDF is ten times faster, and 1/65,536 is finer than
    anything the benchmarks look at.
    """

    SIZE = 1 << 16

    def __init__(self, weights: Sequence[float] | np.ndarray) -> None:
        p = np.asarray(weights, dtype=np.float64)
        cdf = np.cumsum(p / p.sum())
        self.size = len(p)
        self.table = np.minimum(np.searchsorted(cdf, (np.arange(self.SIZE) + 0.5) / self.SIZE, side="right"),
                                self.size - 1).astype(np.int64)

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Return n category indices."""
        return self.table[rng.integers(0, self.SIZE, n, dtype=np.uint16, endpoint=False)]


@dataclass(frozen=True)
class Vocabulary:
    """The categories records draw from, with their weights (skewed, as real traffic is)."""

    operators: Categorical
    operator_signal: np.ndarray
    postal_codes: pa.Array
    postal: Categorical
    cell_lat: np.ndarray
    cell_lon: np.ndarray
    cells: Categorical
    providers: Categorical
    statuses: Categorical


def _zipf(n: int, exponent: float = 1.0) -> np.ndarray:
    return 1.0 / np.arange(1, n + 1) ** exponent


def vocabulary(load: Load, seed: int) -> Vocabulary:
    """Return the seeded categories: operators, postal codes and coverage cells around two cities."""
    rng = np.random.default_rng([seed, 0])
    codes = np.concatenate([28001 + np.arange(load.postal_codes // 2), 8001 + np.arange(load.postal_codes
                                                                                          - load.postal_codes // 2)])
    # Cells: two urban clusters (Madrid, Barcelona) of distinct 0.01 degree cells, busiest first.
    centres = np.array([[40.41, -3.70], [41.38, 2.17]])
    cells: set[tuple[int, int]] = set()
    while len(cells) < load.cells:
        centre = centres[rng.integers(0, 2)]
        lat, lon = rng.normal(centre, 0.12)
        cells.add((int(np.floor(lat / load.grid_degrees)), int(np.floor(lon / load.grid_degrees))))
    grid = np.array(sorted(cells))
    order = rng.permutation(len(grid))
    return Vocabulary(
        operators=Categorical(_zipf(load.operators, 1.2)),
        operator_signal=rng.uniform(12.0, 22.0, load.operators),
        postal_codes=pa.array([f"{c:05d}" for c in codes]),
        postal=Categorical(_zipf(load.postal_codes, 0.9)),
        cell_lat=np.round(grid[order, 0] * load.grid_degrees, 6),
        cell_lon=np.round(grid[order, 1] * load.grid_degrees, 6),
        cells=Categorical(_zipf(load.cells, 0.8)),
        providers=Categorical(PROVIDER_WEIGHTS),
        statuses=Categorical(STATUS_WEIGHTS),
    )


def _strings(values: Sequence[str]) -> pa.Array:
    return pa.array(list(values), pa.string())


OPERATOR_NAMES = _strings([o for o, _ in OPERATOR_NETWORKS])
NETWORK_NAMES = _strings([n for _, n in OPERATOR_NETWORKS])
PROVIDER_NAMES = _strings(PROVIDERS)
STATUS_CODES = _strings([s for s, _ in STATUSES])
STATUS_DESCRIPTIONS = _strings([d for _, d in STATUSES])
REASONS = _strings(QUARANTINE_REASONS)


def _present(counts: np.ndarray) -> np.ndarray:
    return np.flatnonzero(counts)


def _rows(table: str, window_seconds: int, moment: float, columns: dict[str, pa.Array | np.ndarray]) -> pa.Table:
    """Return one table's rows of a batch as the Spark side collects them: the `table` column, window
    bounds as epoch milliseconds (int64, as sink._collect hands them over), the columns, dt and hr."""
    rows = len(next(iter(columns.values())))
    start = int(moment) // window_seconds * window_seconds
    partition = datetime.fromtimestamp(start, UTC)
    return pa.table({
        "table": pa.array([table] * rows, pa.string()),
        "window_start": pa.array(np.full(rows, start * 1000, dtype=np.int64)),
        "window_end": pa.array(np.full(rows, (start + window_seconds) * 1000, dtype=np.int64)),
        **{name: values if isinstance(values, pa.Array) else pa.array(values) for name, values in columns.items()},
        "dt": pa.array([partition.strftime("%Y-%m-%d")] * rows, pa.string()),
        "hr": pa.array([partition.strftime("%H")] * rows, pa.string()),
    })


def batch_aggregates(load: Load, words: Vocabulary, rng: np.random.Generator, batch_id: int,
                     batch_start: datetime) -> tuple[pa.Table, pa.Table]:
    """Return one micro-batch's partial aggregates of every aggregation table (one Arrow table, column
    `table` naming each row's table, as glue_job.sink.collect_aggregates returns them) and its
    quarantined records, grouped with bincount."""
    n = load.records_per_batch
    # A trigger's 20 s lie inside one 1-minute window and one 1-hour coverage window (triggers are
    # aligned to the epoch, as Spark's are, and records are sent live: event time = arrival).
    moment = batch_start.timestamp()
    operator = words.operators.draw(rng, n)
    signal = np.clip(np.rint(words.operator_signal[operator] + 6.0 * rng.standard_normal(n)), 0, 31)
    has_signal = rng.random(n) >= load.signal_missing
    signal_value = np.where(has_signal, signal, 0.0)
    parts: list[pa.Table] = []

    # signal_strength_by_operator: one row per operator with records (the network follows from the
    # operator); an operator whose records have no signal has null signal figures, as Spark's sum gives.
    records = np.bincount(operator, minlength=load.operators).astype(np.int64)
    counts = np.bincount(operator, weights=has_signal, minlength=load.operators).astype(np.int64)
    sums = np.bincount(operator, weights=signal_value, minlength=load.operators)
    lows = np.full(load.operators, np.inf)
    highs = np.full(load.operators, -np.inf)
    np.minimum.at(lows, operator[has_signal], signal[has_signal])
    np.maximum.at(highs, operator[has_signal], signal[has_signal])
    keep = _present(records)
    no_signal = counts[keep] == 0
    parts.append(_rows(SIGNAL_STRENGTH_BY_OPERATOR.name, WINDOW_SECONDS, moment, {
        "operator": OPERATOR_NAMES.take(keep), "network": NETWORK_NAMES.take(keep),
        "signal_sum": pa.array(sums[keep], mask=no_signal), "signal_count": counts[keep],
        "signal_min": pa.array(lows[keep], mask=no_signal), "signal_max": pa.array(highs[keep], mask=no_signal),
        "record_count": records[keep],
    }))

    # gps_precision_by_provider: network fixes report no satellites (null, so not counted).
    provider = words.providers.draw(rng, n)
    # Lognormal precision and roughly Poisson satellites, from standard normals (Generator.poisson
    # with per-record means costs more than the rest of the batch).
    precision = np.take(PROVIDER_PRECISION_M, provider) * np.exp(0.5 * rng.standard_normal(n))
    mean_satellites = np.take(PROVIDER_SATELLITES, provider)
    satellites = np.maximum(np.rint(mean_satellites + np.sqrt(mean_satellites) * rng.standard_normal(n)), 0.0)
    has_satellites = provider != PROVIDERS.index("network")
    p_counts = np.bincount(provider, minlength=len(PROVIDERS)).astype(np.int64)
    keep = _present(p_counts)
    parts.append(_rows(GPS_PRECISION_BY_PROVIDER.name, WINDOW_SECONDS, moment, {
        "provider": PROVIDER_NAMES.take(keep),
        "precision_sum": np.bincount(provider, weights=precision, minlength=len(PROVIDERS))[keep],
        "precision_count": p_counts[keep],
        "satellites_sum": np.bincount(provider, weights=satellites * has_satellites, minlength=len(PROVIDERS))[keep],
        "satellites_count": np.bincount(provider, weights=has_satellites,
                                        minlength=len(PROVIDERS)).astype(np.int64)[keep],
    }))

    # status_count: postal code x status.
    code = words.postal.draw(rng, n)
    status = words.statuses.draw(rng, n)
    s_counts = np.bincount(code * len(STATUSES) + status, minlength=load.postal_codes * len(STATUSES))
    keep = _present(s_counts)
    parts.append(_rows(STATUS_COUNT.name, WINDOW_SECONDS, moment, {
        "postal_code": words.postal_codes.take(keep // len(STATUSES)),
        "status": STATUS_CODES.take(keep % len(STATUSES)),
        "description": STATUS_DESCRIPTIONS.take(keep % len(STATUSES)),
        "record_count": s_counts[keep].astype(np.int64),
    }))

    # coverage_grid: cell x operator per 1-hour window; the operator is the record's, so cells and
    # operators correlate as usual.
    cell = words.cells.draw(rng, n)
    key = cell * load.operators + operator
    size = load.cells * load.operators
    c_records = np.bincount(key, minlength=size)
    keep = _present(c_records)
    parts.append(_rows(COVERAGE_GRID.name, COVERAGE_GRID.window_seconds, moment, {
        "lat_cell": words.cell_lat[keep // load.operators], "lon_cell": words.cell_lon[keep // load.operators],
        "operator": OPERATOR_NAMES.take(keep % load.operators),
        "signal_sum": np.bincount(key, weights=signal_value, minlength=size)[keep],
        "signal_count": np.bincount(key, weights=has_signal, minlength=size).astype(np.int64)[keep],
        "record_count": c_records[keep].astype(np.int64),
    }))
    aggregates = pa.concat_tables(parts, promote_options="default")  # other tables' columns are null

    # quarantine: raw records, partitioned by arrival time (within this batch's 20 s).
    q = load.quarantine_per_batch
    arrival_ms = int(moment * 1000) + np.sort(rng.integers(0, load.trigger_seconds * 1000, q))
    quarantine = pa.table({
        "arrival_time": pa.array(arrival_ms.astype(np.int64)),
        "stream_seq": _strings([f"{batch_id}-{i}" for i in range(q)]),
        "reason": REASONS.take(rng.integers(0, len(QUARANTINE_REASONS), q)),
        "raw_payload": _strings(['{"hour": "10:00:00", "lat": 40.4,'] * q),
        "dt": pa.array([batch_start.strftime("%Y-%m-%d")] * q, pa.string()),
        "hr": pa.array([batch_start.strftime("%H")] * q, pa.string()),
    })
    return aggregates, quarantine


@dataclass
class Generated:
    """What one process (or, summed, the whole generation) did and how long each part took."""

    batches: int = 0
    commits: int = 0
    skipped: int = 0
    seconds: dict[str, float] = field(default_factory=dict)  # draw, commit, compaction, vacuum, wall
    maintenance_runs: dict[str, int] = field(default_factory=dict)
    partitions_rewritten: int = 0
    files_removed: int = 0
    files_added: int = 0
    files_vacuumed: int = 0
    maintenance_errors: list[str] = field(default_factory=list)
    commit_ms: list[float] = field(default_factory=list)  # per batch: commit_batch of the process's tables
    maintenance_ms: list[float] = field(default_factory=list)  # per batch: maybe_run
    versions: dict[str, int] = field(default_factory=dict)  # each table's version at the end
    log_entries: list[int] = field(default_factory=list)  # the longest log of the process's tables, every 30 batches
    tables: tuple[str, ...] = ()

    def add(self, other: Generated) -> None:
        """Add another process's counts to these (wall times: the longest)."""
        self.batches = max(self.batches, other.batches)
        self.commits += other.commits
        self.skipped += other.skipped
        for key, value in other.seconds.items():
            mine = self.seconds.get(key, 0.0)
            self.seconds[key] = max(mine, value) if key == "wall" else mine + value
        for key, count in other.maintenance_runs.items():
            self.maintenance_runs[key] = self.maintenance_runs.get(key, 0) + count
        self.partitions_rewritten += other.partitions_rewritten
        self.files_removed += other.files_removed
        self.files_added += other.files_added
        self.files_vacuumed += other.files_vacuumed
        self.maintenance_errors += other.maintenance_errors
        # Per batch: the processes commit the same batch at about the same time, each to its own tables.
        self.commit_ms = ([a + b for a, b in zip(self.commit_ms, other.commit_ms, strict=True)] if self.commit_ms
                          else list(other.commit_ms))
        self.maintenance_ms = ([a + b for a, b in zip(self.maintenance_ms, other.maintenance_ms, strict=True)]
                               if self.maintenance_ms else list(other.maintenance_ms))
        self.versions.update(other.versions)
        self.log_entries = [max(a, b) for a, b in zip(self.log_entries, other.log_entries, strict=True)] \
            if self.log_entries else list(other.log_entries)
        self.tables += other.tables


class LogClock:
    """Give each new Delta log entry of the tables the simulated time of its commit as its file time.

    The tables keep `delta.logRetentionDuration` of log: at each checkpoint delta-rs deletes the log
    entries older than that by their file time. A simulated day passes in minutes, so by real file times
    the log would keep minutes of the simulation's commits (thousands), not the last minutes of a
    running job's (every commit and every reader lists the log, so its length is paid on each). With the
    simulated times the logs are trimmed as a running job's are. Only file times change, never a file.
    """

    def __init__(self, lake_root: str) -> None:
        self.lake_root = lake_root
        self.seen: dict[str, int] = {}

    def start(self, tables: LakeTables, names: Sequence[str], moment: datetime) -> None:
        """Remember where each table's log is now (creating the table if it is new): entries from here on are
        stamped. A new table's creation is stamped `moment`: delta-rs keeps every entry from the oldest one
        inside the retention, so a creation with a real time would keep the whole log."""
        for name in names:
            self.seen[name] = tables.table(TABLES_BY_NAME[name]).version()
            if self.seen[name] == 0:
                self.seen[name] = -1
        self.stamp(tables, names, moment)

    def stamp(self, tables: LakeTables, names: Sequence[str], moment: datetime) -> None:
        """Stamp the log entries (commits and checkpoints) each table made since the last call."""
        seconds = moment.timestamp()
        for name in names:
            spec = TABLES_BY_NAME[name]
            version = tables.table(spec).version()
            log = Path(table_uri(self.lake_root, spec)) / DELTA_LOG
            for number in range(self.seen.get(name, -1) + 1, version + 1):
                for path in (log / f"{number:020d}.json", log / f"{number:020d}.checkpoint.parquet"):
                    with contextlib.suppress(FileNotFoundError):  # a checkpoint is written every 100 commits
                        os.utime(path, (seconds, seconds))
            self.seen[name] = version


def log_entries(lake_root: str, name: str) -> int:
    """Return the files in a table's Delta log folder (commits, checkpoints): what each commit lists."""
    return len(os.listdir(Path(table_uri(lake_root, TABLES_BY_NAME[name])) / DELTA_LOG))


def _tick(totals: dict[str, float], key: str, started: float) -> float:
    now = time.perf_counter()
    totals[key] = totals.get(key, 0.0) + now - started
    return now


def write_tables(lake_root: str, owned: Sequence[str], load: Load, seed: int, total: int, first_start: float,
                 settings: dict[str, str], first_batch: int = 0) -> Generated:
    """Commit `total` micro-batches (ids from first_batch, the first starting at first_start) of the `owned`
    tables into lake_root, running the job's maintenance after each on the simulated clock; return what
    was done.

    Every process draws every table's rows from the same per-hour seeds, so a table's rows do not
    depend on which process writes it.
    """
    config = Settings.from_env(settings)
    tables = LakeTables(lake_root, config.retention_seconds)
    clock = [datetime.fromtimestamp(first_start, UTC)]
    maintenance = LakeMaintenance(tables, config.watermark_minutes, clock=lambda: clock[0],
                                  interval=timedelta(seconds=config.compact_seconds),
                                  vacuum_interval=timedelta(seconds=config.vacuum_seconds))
    log_clock = LogClock(lake_root)
    log_clock.start(tables, owned, clock[0])
    words = vocabulary(load, seed)
    names = pa.array(list(owned), pa.string())
    with_quarantine = QUARANTINE.name in owned
    done = Generated(tables=tuple(owned))
    began = time.perf_counter()
    rng = np.random.default_rng([seed, 1, first_batch // load.batches_per_hour])
    for batch_id in range(first_batch, first_batch + total):
        if batch_id % load.batches_per_hour == 0:  # per hour of data: the same rows whatever the range split
            rng = np.random.default_rng([seed, 1, batch_id // load.batches_per_hour])
        batch_start = first_start + (batch_id - first_batch) * load.trigger_seconds
        started = time.perf_counter()
        aggregates, quarantine = batch_aggregates(load, words, rng, batch_id, datetime.fromtimestamp(batch_start, UTC))
        aggregates = aggregates.filter(pc.is_in(aggregates.column("table"), value_set=names))
        started = _tick(done.seconds, "draw", started)
        commits, skipped = commit_batch(tables, APP_ID, batch_id, aggregates, quarantine if with_quarantine else None)
        done.commit_ms.append((time.perf_counter() - started) * 1000)
        started = _tick(done.seconds, "commit", started)
        done.commits, done.skipped = done.commits + commits, done.skipped + skipped
        done.batches = batch_id + 1 - first_batch
        # The job commits a batch at the end of its trigger interval, then runs maintenance.
        clock[0] = datetime.fromtimestamp(batch_start + load.trigger_seconds, UTC)
        log_clock.stamp(tables, owned, clock[0])
        started = time.perf_counter()
        for run in maintenance.maybe_run():
            done.seconds[run.kind] = done.seconds.get(run.kind, 0.0) + run.seconds
            done.maintenance_runs[run.kind] = done.maintenance_runs.get(run.kind, 0) + 1
            done.partitions_rewritten += run.partitions
            done.files_removed += run.files_removed
            done.files_added += run.files_added
            done.files_vacuumed += run.files_deleted
            if run.error:
                done.maintenance_errors.append(f"{run.kind} at {run.at.isoformat()}: {run.error}")
        done.maintenance_ms.append((time.perf_counter() - started) * 1000)
        _tick(done.seconds, "maintenance", started)
        log_clock.stamp(tables, owned, clock[0])
        if batch_id % 30 == 0:
            done.log_entries.append(max(log_entries(lake_root, name) for name in owned))
    done.versions = {name: tables.table(TABLES_BY_NAME[name]).version() for name in owned}
    done.seconds["wall"] = time.perf_counter() - began
    return done


# Relative cost of a table's commits and rewrites, to split the tables between workers evenly: a Delta
# commit costs about the same whatever its rows, coverage_grid's rewrites read the most rows.
TABLE_WEIGHTS = {COVERAGE_GRID.name: 1.5}


def split_tables(workers: int) -> list[list[str]]:
    """Return the tables split into `workers` groups of about equal cost (greedy, heaviest first)."""
    groups: list[list[str]] = [[] for _ in range(max(1, min(workers, len(TABLES))))]
    weights = [0.0] * len(groups)
    for name in sorted((t.name for t in TABLES), key=lambda n: -TABLE_WEIGHTS.get(n, 1.0)):
        lightest = weights.index(min(weights))
        groups[lightest].append(name)
        weights[lightest] += TABLE_WEIGHTS.get(name, 1.0)
    return groups


@dataclass
class Written:
    """The generated lake: what was done, and per table its live files, rows and bytes."""

    generated: Generated
    files: dict[str, int] = field(default_factory=dict)
    partitions: dict[str, dict[str, int]] = field(default_factory=dict)  # table -> dt=/hr= -> live files
    rows: dict[str, int] = field(default_factory=dict)
    bytes: dict[str, int] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    crawl_seconds: float = 0.0
    workers: int = 1
    next_batch: int = 0  # the id and start (epoch seconds) of the batch after the generated ones
    next_start: float = 0.0
    first_batch: str = ""
    last_batch: str = ""
    clock_end: str = ""

    @property
    def total_files(self) -> int:
        """Return the live files over all tables."""
        return sum(self.files.values())

    @property
    def total_mib(self) -> float:
        """Return the live bytes over all tables, in MiB."""
        return round(sum(self.bytes.values()) / 2**20, 1)


def describe(lake_root: Path, written: Written) -> None:
    """Fill in each table's live files (per partition), rows, bytes and version from its snapshot."""
    for spec in TABLES:
        table = open_table(str(lake_root), spec)
        if table is None:
            continue
        actions = pa.table(table.get_add_actions(flatten=True))
        written.partitions[spec.name] = partition_files(table)
        written.files[spec.name] = actions.num_rows
        written.rows[spec.name] = int(pc.sum(actions.column("num_records")).as_py() or 0)
        written.bytes[spec.name] = int(pc.sum(actions.column("size_bytes")).as_py() or 0)
        written.versions[spec.name] = table.version()


def generate(home: Path, hours: float = 24.0, *, load: Load | None = None, seed: int = 7,
             now: datetime | None = None, workers: int = 1) -> Written:
    """Commit `hours` of micro-batches ending at `now` into home/lake with the job's sink and maintenance,
    then crawl every table."""
    load = load or Load()
    now = now or datetime.now(UTC)
    step = load.trigger_seconds
    # The last trigger interval that ended before now; batches are numbered from the first of the range.
    last_start = (int(now.timestamp()) // step - 1) * step
    total = int(hours * load.batches_per_hour)
    first_start = float(last_start - (total - 1) * step)
    lake_root = home / "lake"
    lake_root.mkdir(parents=True, exist_ok=True)
    settings = {"SIGNAL_HOME": str(home)}
    groups = split_tables(workers)
    started = time.perf_counter()
    generated = Generated()
    if len(groups) == 1:
        generated.add(write_tables(str(lake_root), groups[0], load, seed, total, first_start, settings))
    else:
        scratch = home / ".lake-workers"
        with ProcessPoolExecutor(max_workers=len(groups)) as pool:
            futures = [pool.submit(write_tables, str(scratch / str(i)), group, load, seed, total, first_start, settings)
                       for i, group in enumerate(groups)]
            for future in futures:
                generated.add(future.result())
        for i, group in enumerate(groups):  # each table's folder, log and files, into the lake
            for name in group:
                target = lake_root / TABLES_BY_NAME[name].prefix
                target.parent.mkdir(parents=True, exist_ok=True)
                (scratch / str(i) / TABLES_BY_NAME[name].prefix).rename(target)
        shutil.rmtree(scratch)
    written = Written(generated, workers=len(groups), seconds=time.perf_counter() - started, next_batch=total,
                      next_start=float(last_start + step))
    written.first_batch = datetime.fromtimestamp(first_start, UTC).isoformat(timespec="seconds")
    written.last_batch = datetime.fromtimestamp(last_start, UTC).isoformat(timespec="seconds")
    written.clock_end = datetime.fromtimestamp(last_start + step, UTC).isoformat(timespec="seconds")
    describe(lake_root, written)

    started = time.perf_counter()
    crawlers = build_local_backend(Settings.from_env(settings)).crawlers
    assert isinstance(crawlers, LocalCrawlers)  # run() (start and wait) is the local crawlers' own
    for crawler in crawlers.list():
        state = crawlers.run(crawler.name)
        if state.last_result != "SUCCEEDED":
            raise RuntimeError(f"{crawler.name}: {state.last_result} {state.message}")
    written.crawl_seconds = time.perf_counter() - started
    return written


def extend(home: Path, written: Written, batches: int, *, load: Load | None = None, seed: int = 7) -> Generated:
    """Commit `batches` more micro-batches after the generated ones, in one process, through the same sink and
    maintenance (a maintenance that starts anew, as after a restart of the job); return what was done,
    each batch's commit_batch and maybe_run timed: what a batch costs once the tables' logs hold the day."""
    return write_tables(str(home / "lake"), [t.name for t in TABLES], load or Load(), seed, batches,
                        written.next_start, {"SIGNAL_HOME": str(home)}, first_batch=written.next_batch)


def summary(written: Written) -> dict[str, Any]:
    """Return what was generated and how long it took, for printing and the reports."""
    g = written.generated
    commit_ms = sorted(g.commit_ms)
    return {
        "batches": g.batches, "commits": g.commits, "skipped_commits": g.skipped, "workers": written.workers,
        "tables_per_worker": [list(group) for group in split_tables(written.workers)],
        "first_batch": written.first_batch, "last_batch": written.last_batch,
        "generate_s": round(written.seconds, 1), "crawl_s": round(written.crawl_seconds, 1),
        "seconds_by_part": {k: round(v, 1) for k, v in sorted(g.seconds.items()) if k != "wall"},
        "commit_batch_ms_median": round(float(np.median(commit_ms)), 1) if commit_ms else None,
        # Does a commit get dearer as the log grows? The first and the last hour's batches.
        "commit_batch_ms_median_first_last_hour": [round(float(np.median(part)), 1) for part in
                                                   (g.commit_ms[:180], g.commit_ms[-180:]) if part],
        "log_entries_per_table": {"median": int(np.median(g.log_entries)), "max": max(g.log_entries)}
        if g.log_entries else None,
        "maintenance_runs": g.maintenance_runs, "partitions_rewritten": g.partitions_rewritten,
        "files_removed_by_rewrites": g.files_removed, "files_added_by_rewrites": g.files_added,
        "files_vacuumed": g.files_vacuumed, "maintenance_errors": g.maintenance_errors[:5],
        "live_files": written.files, "rows": written.rows,
        "mib": {k: round(v / 2**20, 1) for k, v in written.bytes.items()}, "versions": written.versions,
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Generate a lake into --home and print what was written."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True, help="SIGNAL_HOME to write (a fresh folder)")
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="processes, each writing its own tables (default: one per core)")
    args = parser.parse_args(argv)
    written = generate(args.home, args.hours, seed=args.seed, workers=args.workers)
    facts = summary(written)
    print(f"{facts['batches']} batches, {facts['commits']} commits, {written.total_files} live files, "
          f"{written.total_mib} MiB in {facts['generate_s']} s ({written.workers} worker(s)), "
          f"crawled in {facts['crawl_s']} s")
    for key in ("seconds_by_part", "commit_batch_ms_median", "maintenance_runs", "partitions_rewritten",
                "files_vacuumed", "maintenance_errors"):
        print(f"  {key}: {facts[key]}")
    for name in written.files:
        print(f"  {name}: {written.files[name]} live files, {written.rows[name]:,} rows, "
              f"{written.bytes[name] / 2**20:.1f} MiB, version {written.versions[name]}")


if __name__ == "__main__":
    main()
