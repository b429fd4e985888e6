"""A day of streaming-job output written straight into a fresh lake, for the console benchmarks.

The files are the ones the job's sink would have written at a steady input rate with the default
trigger: per table and per micro-batch, one `batch-<id>.snappy.parquet` in the dt/hr partition of
the batch's window, holding the partial aggregates of that batch's records (one 20 s slice of one
1-minute window). Records are never materialised one by one in Python: each batch draws its
records' categories and values as numpy arrays and groups them with bincount, so a day (21,600
files) takes tens of seconds. Generation is seeded and split by hour over processes; the same seed
gives the same files whatever the number of workers. bench/console.py then compacts the lake the way
the local job does (glue_job/compaction.py), so the readers see what they would see in a running job.

    python -m bench.lake_data --home /tmp/signal_home [--hours 24]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from core.backends.local import build_local_backend
from core.backends.local_catalog import LocalCrawlers
from core.config import Settings
from core.lake_layout import (
    COVERAGE_GRID,
    GPS_PRECISION_BY_PROVIDER,
    QUARANTINE,
    SIGNAL_STRENGTH_BY_OPERATOR,
    STATUS_COUNT,
    WINDOW_SECONDS,
    TableSpec,
    batch_file_name,
    partition_path,
)

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
        """Return the micro-batches (files per table) of one hour."""
        return 3600 // self.trigger_seconds


@dataclass
class Written:
    """What was written: files, bytes and rows per table, and how long it took."""

    files: dict[str, int] = field(default_factory=dict)
    bytes: dict[str, int] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    seconds: float = 0.0
    crawl_seconds: float = 0.0
    first_window: str = ""
    last_window: str = ""

    def add(self, other: Written) -> None:
        """Add another chunk's counts to these."""
        for mine, theirs in ((self.files, other.files), (self.bytes, other.bytes), (self.rows, other.rows)):
            for key, value in theirs.items():
                mine[key] = mine.get(key, 0) + value
        self.batches += other.batches

    @property
    def total_files(self) -> int:
        """Return the files written over all tables."""
        return sum(self.files.values())

    @property
    def total_mib(self) -> float:
        """Return the bytes written over all tables, in MiB."""
        return round(sum(self.bytes.values()) / 2**20, 1)


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


def _times(millis: int, rows: int) -> pa.Array:
    return pa.array(np.full(rows, millis, dtype="datetime64[ms]"), pa.timestamp("ms"))


def _present(counts: np.ndarray) -> np.ndarray:
    return np.flatnonzero(counts)


def batch_tables(load: Load, words: Vocabulary, rng: np.random.Generator, batch_id: int,
                 batch_start: datetime) -> dict[str, pa.Table]:
    """Return one micro-batch's partial aggregates of every table, grouped with bincount."""
    n = load.records_per_batch
    # A trigger's 20 s lie inside one 1-minute window (triggers are aligned to the epoch, as Spark's are).
    start_ms = int(batch_start.timestamp()) // WINDOW_SECONDS * WINDOW_SECONDS * 1000
    end_ms = start_ms + WINDOW_SECONDS * 1000
    ids = pa.array(np.full(n, batch_id, dtype=np.int64))  # sliced per table below

    operator = words.operators.draw(rng, n)
    signal = np.clip(np.rint(words.operator_signal[operator] + 6.0 * rng.standard_normal(n)), 0, 31)
    has_signal = rng.random(n) >= load.signal_missing
    signal_value = np.where(has_signal, signal, 0.0)
    tables: dict[str, pa.Table] = {}

    # signal_strength_by_operator: one row per operator (the network follows from the operator).
    counts = np.bincount(operator, weights=has_signal, minlength=load.operators).astype(np.int64)
    sums = np.bincount(operator, weights=signal_value, minlength=load.operators)
    lows = np.full(load.operators, np.inf)
    highs = np.full(load.operators, -np.inf)
    np.minimum.at(lows, operator[has_signal], signal[has_signal])
    np.maximum.at(highs, operator[has_signal], signal[has_signal])
    keep = _present(counts)
    k = len(keep)
    tables[SIGNAL_STRENGTH_BY_OPERATOR.name] = pa.table([
        _times(start_ms, k), _times(end_ms, k), OPERATOR_NAMES.take(keep), NETWORK_NAMES.take(keep),
        pa.array(sums[keep]), pa.array(counts[keep]), pa.array(lows[keep]), pa.array(highs[keep]), ids[:k],
    ], schema=SIGNAL_STRENGTH_BY_OPERATOR.schema)

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
    k = len(keep)
    tables[GPS_PRECISION_BY_PROVIDER.name] = pa.table([
        _times(start_ms, k), _times(end_ms, k), PROVIDER_NAMES.take(keep),
        pa.array(np.bincount(provider, weights=precision, minlength=len(PROVIDERS))[keep]),
        pa.array(p_counts[keep]),
        pa.array(np.bincount(provider, weights=satellites * has_satellites, minlength=len(PROVIDERS))[keep]),
        pa.array(np.bincount(provider, weights=has_satellites, minlength=len(PROVIDERS)).astype(np.int64)[keep]),
        ids[:k],
    ], schema=GPS_PRECISION_BY_PROVIDER.schema)

    # status_count: postal code x status.
    code = words.postal.draw(rng, n)
    status = words.statuses.draw(rng, n)
    s_counts = np.bincount(code * len(STATUSES) + status, minlength=load.postal_codes * len(STATUSES))
    keep = _present(s_counts)
    k = len(keep)
    tables[STATUS_COUNT.name] = pa.table([
        _times(start_ms, k), _times(end_ms, k), words.postal_codes.take(keep // len(STATUSES)),
        STATUS_CODES.take(keep % len(STATUSES)), STATUS_DESCRIPTIONS.take(keep % len(STATUSES)),
        pa.array(s_counts[keep].astype(np.int64)), ids[:k],
    ], schema=STATUS_COUNT.schema)

    # coverage_grid: cell x operator; the operator is the record's, so cells and operators correlate as usual.
    cell = words.cells.draw(rng, n)
    key = cell * load.operators + operator
    size = load.cells * load.operators
    c_records = np.bincount(key, minlength=size)
    keep = _present(c_records)
    k = len(keep)
    tables[COVERAGE_GRID.name] = pa.table([
        _times(start_ms, k), _times(end_ms, k), pa.array(words.cell_lat[keep // load.operators]),
        pa.array(words.cell_lon[keep // load.operators]), OPERATOR_NAMES.take(keep % load.operators),
        pa.array(np.bincount(key, weights=signal_value, minlength=size)[keep]),
        pa.array(np.bincount(key, weights=has_signal, minlength=size).astype(np.int64)[keep]),
        pa.array(c_records[keep].astype(np.int64)), ids[:k],
    ], schema=COVERAGE_GRID.schema)

    # quarantine: raw records, partitioned by arrival time (within this batch's 20 s).
    q = load.quarantine_per_batch
    arrival_ms = int(batch_start.timestamp() * 1000) + np.sort(rng.integers(0, load.trigger_seconds * 1000, q))
    tables[QUARANTINE.name] = pa.table([
        pa.array(arrival_ms.astype("datetime64[ms]"), pa.timestamp("ms")),
        _strings([f"{batch_id}-{i}" for i in range(q)]),
        REASONS.take(rng.integers(0, len(QUARANTINE_REASONS), q)),
        _strings(['{"hour": "10:00:00", "lat": 40.4,'] * q), ids[:q],
    ], schema=QUARANTINE.schema)
    return tables


SPECS: dict[str, TableSpec] = {s.name: s for s in (SIGNAL_STRENGTH_BY_OPERATOR, GPS_PRECISION_BY_PROVIDER,
                                                   STATUS_COUNT, COVERAGE_GRID, QUARANTINE)}


def write_chunk(lake_root: str, load: Load, seed: int, chunk: int, first_batch: int, batches: int,
                first_start: float) -> Written:
    """Write `batches` consecutive micro-batches (one process's share); return what was written."""
    words = vocabulary(load, seed)
    rng = np.random.default_rng([seed, 1, chunk])  # per chunk: the same files whatever the worker count
    root = Path(lake_root)
    written = Written()
    made: set[Path] = set()
    for offset in range(batches):
        batch_id = first_batch + offset
        batch_start = datetime.fromtimestamp(first_start + offset * load.trigger_seconds, UTC)
        committed = batch_start.timestamp() + load.trigger_seconds  # when the job would have written the file
        for name, table in batch_tables(load, words, rng, batch_id, batch_start).items():
            spec = SPECS[name]
            folder = root / partition_path(spec, batch_start.strftime("%Y-%m-%d"), batch_start.strftime("%H"))
            if folder not in made:
                folder.mkdir(parents=True, exist_ok=True)
                made.add(folder)
            path = folder / batch_file_name(batch_id)
            pq.write_table(table, path, compression="snappy")
            # Freshness readers (as-of time, crawler) look at mtimes: make them the commit times.
            os.utime(path, (committed, committed))
            written.files[name] = written.files.get(name, 0) + 1
            written.bytes[name] = written.bytes.get(name, 0) + path.stat().st_size
            written.rows[name] = written.rows.get(name, 0) + table.num_rows
        written.batches += 1
    return written


def generate(home: Path, hours: float = 24.0, *, load: Load | None = None, seed: int = 7,
             now: datetime | None = None, workers: int | None = None) -> Written:
    """Write `hours` of micro-batches ending at `now` into home/lake and crawl every table."""
    load = load or Load()
    now = now or datetime.now(UTC)
    step = load.trigger_seconds
    # The last trigger that fired before now; batches are numbered from the first one of the range.
    last_start = (int(now.timestamp()) // step - 1) * step
    total = int(hours * load.batches_per_hour)
    first_start = float(last_start - (total - 1) * step)
    lake_root = home / "lake"
    lake_root.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    per_chunk = load.batches_per_hour
    chunks = [(i, i * per_chunk, min(per_chunk, total - i * per_chunk)) for i in range((total + per_chunk - 1)
                                                                                       // per_chunk)]
    written = Written()
    with ProcessPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        futures = [pool.submit(write_chunk, str(lake_root), load, seed, chunk, first, count,
                               first_start + first * step) for chunk, first, count in chunks]
        for future in futures:
            written.add(future.result())
    written.seconds = time.perf_counter() - started
    written.first_window = datetime.fromtimestamp(first_start, UTC).isoformat(timespec="seconds")
    written.last_window = datetime.fromtimestamp(last_start, UTC).isoformat(timespec="seconds")

    started = time.perf_counter()
    crawlers = build_local_backend(Settings.from_env({"SIGNAL_HOME": str(home)})).crawlers
    assert isinstance(crawlers, LocalCrawlers)  # run() (start and wait) is the local crawlers' own
    for crawler in crawlers.list():
        state = crawlers.run(crawler.name)
        if state.last_result != "SUCCEEDED":
            raise RuntimeError(f"{crawler.name}: {state.last_result} {state.message}")
    written.crawl_seconds = time.perf_counter() - started
    return written


def main(argv: Sequence[str] | None = None) -> None:
    """Generate a lake into --home and print what was written."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True, help="SIGNAL_HOME to write (a fresh folder)")
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    written = generate(args.home, args.hours, seed=args.seed)
    print(f"{written.batches} batches, {written.total_files} files, {written.total_mib} MiB in "
          f"{written.seconds:.1f} s, crawled in {written.crawl_seconds:.1f} s")
    for name in written.files:
        print(f"  {name}: {written.files[name]} files, {written.rows[name]:,} rows, "
              f"{written.bytes[name] / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
