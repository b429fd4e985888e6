"""Replay producer data: CSV -> validated records -> batches -> stream.put_records.

Used by `python -m core.cli replay` and by the console's demo page (progress callback, stop flag).
Every CSV line ends up sent, rejected with its line number and reason, or failed with the stream's
error; nothing is dropped silently. pyarrow's CSV reader reads the plain lines, Python's csv module the
few others, as it always read them all: a quoted field may hold line breaks, but a quote that does not
close properly costs only the line it opened on, and the lines after it are read on their own.
"""

from __future__ import annotations

import codecs
import csv
import heapq
import itertools
import math
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Generator, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from core import records as R
from core.backends.base import Stream
from core.domain import MAX_RECORDS_PER_PUT
from core.errors import InputError

TimeMode = Literal["live", "recorded"]
MAX_REJECTION_DETAILS = 200
# The fields of a sent record in the order replay has always sent them: the source row, then ours.
SENT_FIELDS: tuple[str, ...] = (*R.SOURCE_FIELDS, "record_id", "replay_id", "event_time")
UNTERMINATED = ("unterminated quote: a quoted field opened on this line is not closed properly "
                "(the lines after it are read on their own)")
_WIDTH = len(R.SOURCE_FIELDS)
_FIELD_LIMIT = csv.field_size_limit()  # a line longer than a field may be is the csv module's to refuse
_RUN = 64  # plain lines in a row worth a pyarrow reader; the csv module reads shorter runs
_BLOCK = 1 << 22  # bytes scanned at a time
_NO_LINES = np.zeros(0, np.int64)
_SCHEMA = pa.schema([(name, pa.string()) for name in R.SOURCE_FIELDS])
_READ = pacsv.ReadOptions(column_names=R.SOURCE_FIELDS)
_PARSE = pacsv.ParseOptions(invalid_row_handler=lambda row: "skip")  # the lines tell the widths already
_CONVERT = pacsv.ConvertOptions(column_types=_SCHEMA)
# Blank or a plain decimal (of at most 300 characters: float() stays finite) is never nulled; the other
# numeric cells are few, and R.parse_number decides them one by one.
_PLAIN_NUMBER = r"^([+-]?[0-9]+(\.[0-9]*)?)?$"
_UNDECODED = re.compile("[\udc80-\udcff]")  # what surrogateescape makes of a byte that is not UTF-8


@dataclass(frozen=True)
class Rejection:
    """A CSV line that was not sent, and why."""

    line: int
    reason: str


@dataclass
class ValidationReport:
    """The result of checking a CSV before sending it."""

    path: str
    rows: int = 0
    valid: int = 0
    rejected: int = 0
    rejections: list[Rejection] = field(default_factory=list)
    nulled: dict[str, int] = field(default_factory=dict)

    def add_rejection(self, rejection: Rejection) -> None:
        """Count a rejected line, keeping the first details."""
        self.rejected += 1
        if len(self.rejections) < MAX_REJECTION_DETAILS:
            self.rejections.append(rejection)


@dataclass(frozen=True)
class ReplayOptions:
    """How to replay: rate in records/s (None = as fast as possible), limit, loop and time mode."""

    rate: float | None = None
    limit: int | None = None
    loop: bool = False
    time_mode: TimeMode = "live"
    recorded_date: date | None = None  # recorded mode; default: yesterday (UTC)

    def __post_init__(self) -> None:
        if self.rate is not None and self.rate <= 0:
            raise InputError(f"rate must be greater than 0, got {self.rate}")
        if self.limit is not None and self.limit < 0:
            raise InputError(f"limit must not be negative, got {self.limit}")
        if self.time_mode not in ("live", "recorded"):
            raise InputError(f"time mode must be live or recorded, got {self.time_mode!r}")


@dataclass
class ReplayProgress:
    """Where a replay stands; also its final summary."""

    replay_id: str
    path: str
    sent: int = 0
    rejected: int = 0
    failed: int = 0
    rows_read: int = 0
    passes: int = 0
    total_rows: int | None = None  # data rows of one pass, for the ETA
    elapsed_seconds: float = 0.0
    done: bool = False
    stopped: bool = False
    rejections: list[Rejection] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    nulled: dict[str, int] = field(default_factory=dict)

    @property
    def records_per_second(self) -> float:
        """Return the achieved send rate."""
        return self.sent / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0

    @property
    def eta_seconds(self) -> float | None:
        """Return the estimated seconds to the end of the file (None once past it, when looping)."""
        if self.total_rows is None or self.rows_read == 0 or self.rows_read > self.total_rows:
            return None
        return (self.total_rows - self.rows_read) * self.elapsed_seconds / self.rows_read

    def to_dict(self) -> dict[str, Any]:
        """Return the summary as plain data (for --json and the console)."""
        data = asdict(self)
        data["records_per_second"] = round(self.records_per_second, 1)
        data["rejections"] = [asdict(r) for r in self.rejections]
        return data


class _Chunk(NamedTuple):
    """Data rows in file order: the valid ones with their line numbers, and the lines rejected among them."""

    rows: pa.RecordBatch
    lines: np.ndarray
    rejections: list[Rejection]


class _Lines:
    """A CSV's lines, ending at \\r\\n, \\r or \\n as the csv module ends them."""

    def __init__(self, data: pa.Buffer) -> None:
        self.data = data
        raw = np.frombuffer(data, np.uint8)
        utf8 = _is_utf8(data)
        # A block at a time: the scan's arrays stay small however large the file.
        ends = np.concatenate([_NO_LINES, *(_line_ends(raw, at) for at in range(0, raw.size, _BLOCK))])
        self.bounds = np.concatenate([[0], ends[ends < raw.size], [raw.size]])
        self.count = len(self.bounds) - 1
        cuts = [*np.unique(np.searchsorted(self.bounds, np.arange(0, raw.size, _BLOCK), "right") - 1), self.count]
        blank, fields, slow = [np.zeros(0, bool)], [np.zeros(0, np.int32)], [_NO_LINES]
        for first, end in itertools.pairwise(cuts):
            part, starts = raw[self.bounds[first]:self.bounds[end]], self.bounds[first:end] - self.bounds[first]
            blank.append(np.isin(part[starts], (ord("\n"), ord("\r"))))
            fields.append(np.add.reduceat((part == ord(",")).view(np.uint8), starts, dtype=np.int32) + 1)
            # Lines pyarrow does not read as the csv module does: with a quote, a NUL byte (pyarrow 25 misses a
            # comma next to one: apache/arrow GH-50481), a byte that is not UTF-8 (its invalid-row handler
            # fails on those), a BOM at the start (it drops it), or longer than a field may be.
            odd = part == ord('"')
            odd |= part == 0
            if not utf8:
                odd |= part >= 0x80
            long = np.diff(self.bounds[first:end + 1]) > _FIELD_LIMIT
            slow.append(first + np.union1d(np.searchsorted(starts, np.flatnonzero(odd), "right") - 1,
                                           np.flatnonzero(long | (part[starts] == 0xEF))))
        self.blank, self.fields, self.slow = np.concatenate(blank), np.concatenate(fields), np.concatenate(slow)

    def text(self, index: int) -> str:
        """Return a line with its line break, as the csv module reads it."""
        line = memoryview(self.data)[self.bounds[index]:self.bounds[index + 1]]
        return str(line, "utf-8-sig" if index == 0 else "utf-8", "surrogateescape")


def _line_ends(raw: np.ndarray, at: int) -> np.ndarray:
    """Return where lines end in the block of bytes from `at`: after each \\n, and each \\r no \\n follows."""
    block = raw[at:at + _BLOCK + 1]  # a byte more: the \n after a \r at the end
    breaks, lf = block == ord("\r"), block == ord("\n")
    breaks[:-1] &= ~lf[1:]
    breaks |= lf
    return np.flatnonzero(breaks[:_BLOCK]) + at + 1


def _is_utf8(data: pa.Buffer) -> bool:
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        for at in range(0, data.size, _BLOCK):
            decoder.decode(memoryview(data)[at:at + _BLOCK])
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def open_input(path: Path, mode: str = "r", **options: Any) -> Any:
    """Open a CSV a user named; a missing, folder or unreadable path is an InputError that says which."""
    try:
        return path.open(mode, **options)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, not a CSV file") from None
    except OSError as error:
        raise InputError(f"{path}: cannot be read ({error.strerror})") from None


def _read(path: Path) -> Iterator[_Chunk]:
    """Return the CSV's data rows; raise InputError at once when it is unreadable, empty or wrongly headed."""
    with open_input(path, "rb"):  # the errors of any CSV a user names
        lines = _Lines(pa.memory_map(str(path)).read_buffer())
    if not lines.text(0):
        raise InputError(f"{path}: the file is empty")
    try:
        names = [name.strip() for name in next(csv.reader([lines.text(0)]))]
    except csv.Error as error:
        raise InputError(f"{path}: not a CSV file ({error})") from None
    if names != list(R.SOURCE_FIELDS):
        missing = ", ".join(name for name in R.SOURCE_FIELDS if name not in names)
        extra = ", ".join(name for name in names if name not in R.SOURCE_FIELDS)
        detail = "; ".join([f"missing {missing}"] * bool(missing) + [f"unexpected {extra}"] * bool(extra))
        raise InputError(f"{path}: wrong header ({detail or 'columns out of order'}); "
                         f"expected: {','.join(R.SOURCE_FIELDS)}")
    return _chunks(lines)


def _chunks(lines: _Lines) -> Iterator[_Chunk]:
    index = 1  # the next line to read; the header is line 1, at index 0
    found: list[tuple[int, list[str]] | Rejection] = []  # read by the csv module, not yet in a chunk
    while index < lines.count:
        slow = np.searchsorted(lines.slow, index)
        end = int(lines.slow[slow]) if slow < len(lines.slow) else lines.count
        if found and (end - index >= _RUN or len(found) >= 16 * _RUN):
            yield _gathered(found)
            found = []
        if end - index >= _RUN:
            yield from _read_plain(lines, index, end)
            index = end
            continue
        item, index = _read_one(lines, index)
        if item is not None:
            found.append(item)
    if found:
        yield _gathered(found)


def _gathered(found: list[tuple[int, list[str]] | Rejection]) -> _Chunk:
    rows = [item for item in found if not isinstance(item, Rejection)]
    columns = list(zip(*(cells for _, cells in rows), strict=True)) or [()] * _WIDTH
    return _Chunk(pa.record_batch([pa.array(column, pa.string()) for column in columns], schema=_SCHEMA),
                  np.array([line for line, _ in rows], np.int64),
                  [item for item in found if isinstance(item, Rejection)])


def _read_plain(lines: _Lines, first: int, end: int) -> Iterator[_Chunk]:
    """Yield pyarrow's reading of lines [first, end), which it reads as the csv module does."""
    filled, fields = ~lines.blank[first:end], lines.fields[first:end]
    valid = first + 1 + np.flatnonzero(filled & (fields == _WIDTH))
    wrong = [Rejection(int(line), f"expected {_WIDTH} fields, found {lines.fields[line - 1]}")
             for line in first + 1 + np.flatnonzero(filled & (fields != _WIDTH))]
    data = lines.data[lines.bounds[first]:lines.bounds[end]]
    read = 0
    for batch in pacsv.open_csv(pa.BufferReader(data), _READ, _PARSE, _CONVERT):
        if not batch.num_rows:
            continue
        numbers, read = valid[read:read + batch.num_rows], read + batch.num_rows
        before = [rejection for rejection in wrong if rejection.line < numbers[-1]]
        yield _Chunk(batch, numbers, before)
        wrong = wrong[len(before):]
    if read != len(valid):
        raise InputError(f"lines {first + 1}-{end}: pyarrow read {read} rows, not {len(valid)}")
    if wrong:
        yield _gathered(list(wrong))


def _read_one(lines: _Lines, index: int) -> tuple[tuple[int, list[str]] | Rejection | None, int]:
    """Return the row the csv module reads from line `index` + 1 on (None: a blank line), and the next index."""
    reader = csv.reader(map(lines.text, range(index, lines.count)))
    error: csv.Error | None = None
    try:
        row = next(reader)
    except csv.Error as caught:
        row, error = [], caught
    taken = reader.line_num
    # A row that spans lines and cannot be read, or is of the wrong width with a quote that does not close
    # properly, was opened by an unterminated quote: its first line alone is rejected.
    if taken > 1 and (error or (len(row) != _WIDTH and not _closes(map(lines.text, range(index, index + taken))))):
        return Rejection(index + 1, UNTERMINATED), index + 1
    if error:
        return Rejection(index + taken, f"unreadable CSV ({error})"), index + taken
    if not row:
        return None, index + taken
    if len(row) != _WIDTH:
        return Rejection(index + 1, f"expected {_WIDTH} fields, found {len(row)}"), index + taken
    if _UNDECODED.search("".join(row)):
        return Rejection(index + 1, "not valid UTF-8"), index + taken
    return (index + 1, row), index + taken


def _closes(lines: Iterator[str]) -> bool:
    """Return True when every quoted field in the lines closes properly (a strict csv reader reads them)."""
    try:
        for _ in csv.reader(lines, strict=True):
            pass
    except csv.Error:
        return False
    return True


def _line_of(item: tuple[Any, ...] | Rejection) -> int:
    return item.line if isinstance(item, Rejection) else item[0]


def iter_rows(path: Path) -> Generator[tuple[int, dict[str, str]] | Rejection, None, None]:
    """Return an iterator of (line number, fields) per well-formed data row, or a Rejection, in file order.

    Opens the file and checks its header at once: raises InputError when the file cannot be read,
    is empty or has the wrong header, before anything is consumed.
    """
    return _items(_read(path))


def _items(chunks: Iterator[_Chunk]) -> Generator[tuple[int, dict[str, str]] | Rejection, None, None]:
    for rows, lines, rejections in chunks:
        found: list[tuple[int, dict[str, str]] | Rejection] = [
            (line, dict(zip(R.SOURCE_FIELDS, cells, strict=True)))
            for line, cells in zip(lines.tolist(), zip(*rows.to_pydict().values(), strict=True), strict=True)]
        yield from heapq.merge(found, rejections, key=_line_of)


def _nulled(rows: pa.RecordBatch) -> Counter[str]:
    """Return per numeric field the rows holding neither a blank nor a number there (sent as they are, read as null)."""
    nulled: Counter[str] = Counter()
    for name in R.NUMERIC_FIELDS:
        column = rows.column(name)
        plain = pc.and_(pc.match_substring_regex(column, _PLAIN_NUMBER), pc.less_equal(pc.binary_length(column), 300))
        odd = column.filter(pc.invert(plain)).to_pylist()
        nulled[name] = sum(bool(cell.strip()) and R.parse_number(cell) is None for cell in odd)
    return +nulled  # without the zeros


def _recorded_event_time(hour: str, on: date) -> datetime | None:
    clock = R.parse_clock(hour)
    midnight = datetime(on.year, on.month, on.day, tzinfo=UTC)
    return R.parse_timestamp(hour) or (None if clock is None else midnight + clock)


def _dated(chunk: _Chunk, time_mode: TimeMode, on: date) -> tuple[_Chunk, list[str]]:
    """Return the chunk less the rows whose hour gives no recorded event time, and the rows' event times."""
    if time_mode == "live":  # every row, each stamped when sent
        return chunk, [""] * chunk.rows.num_rows
    hours = chunk.rows.column(0).to_pylist()
    moments = [_recorded_event_time(hour, on) for hour in hours]
    dated = np.array([moment is not None for moment in moments], bool)
    undated = [Rejection(line, f"hour {hour!r} is neither HH:MM:SS nor YYYY-MM-DD HH:MM:SS")
               for line, hour, moment in zip(chunk.lines.tolist(), hours, moments, strict=True) if moment is None]
    rejections = list(heapq.merge(chunk.rejections, undated, key=_line_of))
    return (_Chunk(chunk.rows.filter(dated), chunk.lines[dated], rejections),
            [iso_utc(moment) for moment in moments if moment is not None])


def validate_csv(path: Path, time_mode: TimeMode = "live") -> ValidationReport:
    """Return what a replay of this CSV would send and reject, without sending anything."""
    report = ValidationReport(path=str(path))
    nulled: Counter[str] = Counter()
    on = _default_recorded_date()
    for chunk in _read(path):
        rows, _, rejections = _dated(chunk, time_mode, on)[0]
        report.rows += rows.num_rows + len(rejections)
        report.valid += rows.num_rows
        for rejection in rejections:
            report.add_rejection(rejection)
        nulled.update(_nulled(rows))
    report.nulled = dict(nulled)
    return report


def count_data_lines(path: Path) -> int:
    """Return an estimate of the data rows of a CSV (its lines less the header), read fast."""
    raw = np.frombuffer(pa.memory_map(str(path)).read_buffer(), np.uint8)
    return max(int(np.count_nonzero(raw == ord("\n"))) + bool(raw.size and raw[-1] != ord("\n")) - 1, 0)


def _default_recorded_date() -> date:
    return (datetime.now(UTC) - timedelta(days=1)).date()


def new_replay_id() -> str:
    """Return a fresh replay id: sortable by start time, unique across producers."""
    return f"r{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


def iso_utc(moment: datetime) -> str:
    """Return an ISO-8601 UTC timestamp with milliseconds and a Z suffix."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def replay(
    path: Path,
    stream: Stream,
    options: ReplayOptions = ReplayOptions(),
    *,
    progress: Callable[[ReplayProgress], None] | None = None,
    stop: threading.Event | None = None,
    replay_id: str | None = None,
) -> ReplayProgress:
    """Validate and send a CSV's rows to the stream; return the summary.

    Raises InputError before sending anything when the file is unreadable, empty or has the wrong
    header. Broken lines are rejected with their line number and counted; the rest is sent.
    """
    stop = stop or threading.Event()
    state = ReplayProgress(replay_id=replay_id or new_replay_id(), path=str(path))
    chunks = _read(path)  # checks the file now: a bad file fails before anything is sent
    state.total_rows = count_data_lines(path)
    on = options.recorded_date or _default_recorded_date()
    batch_size = MAX_RECORDS_PER_PUT if options.rate is None else max(1, min(MAX_RECORDS_PER_PUT, int(options.rate)))
    nulled: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    batch: list[dict[str, str]] = []
    started = time.monotonic()

    def send() -> None:
        if options.time_mode == "live":  # the event time is the time of sending
            stamp = iso_utc(datetime.now(UTC))
            for record in batch:
                record["event_time"] = stamp
        records = batch.copy()  # the stream's to keep
        batch.clear()
        result = stream.put_records(records)
        state.sent += result.sent
        state.failed += len(result.failed)
        failures.update(f.error_code for f in result.failed)
        report()
        if options.rate is not None:
            due = started + (state.sent + state.failed) / options.rate
            stop.wait(max(0.0, due - time.monotonic()))

    def report() -> None:
        state.elapsed_seconds = time.monotonic() - started
        state.nulled = dict(nulled)
        state.failures = dict(failures)
        if progress:
            progress(state)

    def limit_reached() -> bool:
        return options.limit is not None and state.sent + state.failed + len(batch) >= options.limit

    def take(chunk: _Chunk, first_pass: bool) -> int:
        """Queue a chunk's rows and count its rejections, up to a stop or the limit; return the rows queued."""
        chunk, event_times = _dated(chunk, options.time_mode, on)
        lines = chunk.lines.tolist()
        columns = [column.to_pylist() for column in chunk.rows.columns]
        prefix = f"{state.replay_id}:{state.passes}:"
        taken = 0
        while taken < len(lines) and not stop.is_set() and not limit_reached():
            room = batch_size if options.limit is None else min(batch_size, options.limit - state.sent - state.failed)
            part = slice(taken, taken + room - len(batch))
            ids = [f"{prefix}{line}" for line in lines[part]]
            rows = zip(*(column[part] for column in columns), ids, [state.replay_id] * len(ids), event_times[part],
                       strict=True)
            batch.extend([dict(zip(SENT_FIELDS, row, strict=True)) for row in rows])
            taken += len(ids)
            if len(batch) >= batch_size:
                send()
        # Nothing past a stop or the limit is read: neither rows nor rejections.
        done = stop.is_set() or limit_reached()
        end = lines[taken] if taken < len(lines) else lines[-1] if lines and done else math.inf
        read = [rejection for rejection in chunk.rejections if rejection.line < end]
        state.rows_read += taken + len(read)
        state.rejected += len(read)
        if first_pass:
            state.rejections += read[:MAX_REJECTION_DETAILS - len(state.rejections)]
            nulled.update(_nulled(chunk.rows.slice(0, taken)))
        return taken

    while not stop.is_set() and not limit_reached():
        state.passes += 1
        queued = 0
        for chunk in chunks if state.passes == 1 else _read(path):
            queued += take(chunk, state.passes == 1)
            if stop.is_set() or limit_reached():
                break
        if batch:
            send()
        if not options.loop or queued == 0:
            break
    state.stopped = stop.is_set()
    state.done = True
    report()
    return state
