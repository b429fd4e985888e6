"""Replay producer data: CSV -> validated records -> batches -> stream.put_records.

Used by `python -m core.cli replay` and by the console's demo page (progress callback, stop flag).
Every CSV line ends up sent, rejected with its line number and reason, or failed with the
stream's error; nothing is dropped silently.
"""

from __future__ import annotations

import csv
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Generator
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from core import records as R
from core.backends.base import MAX_RECORDS_PER_PUT, Stream
from core.errors import InputError

TimeMode = Literal["live", "recorded"]
MAX_REJECTION_DETAILS = 200


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


def _open_csv(path: Path) -> tuple[Any, Any]:
    try:
        handle = path.open(newline="", encoding="utf-8-sig", errors="surrogateescape")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, not a CSV file") from None
    except OSError as error:
        raise InputError(f"{path}: cannot be read ({error.strerror})") from None
    return handle, csv.reader(handle)


def _check_header(path: Path, reader: Any) -> None:
    try:
        header = next(reader, None)
    except csv.Error as error:
        raise InputError(f"{path}: not a CSV file ({error})") from None
    if header is None:
        raise InputError(f"{path}: the file is empty")
    names = [name.strip() for name in header]
    if names != list(R.SOURCE_FIELDS):
        missing = [f for f in R.SOURCE_FIELDS if f not in names]
        extra = [n for n in names if n not in R.SOURCE_FIELDS]
        detail = "; ".join(
            part for part in (
                f"missing {', '.join(missing)}" if missing else "",
                f"unexpected {', '.join(extra)}" if extra else "",
                "columns out of order" if not missing and not extra else "",
            ) if part
        )
        raise InputError(f"{path}: wrong header ({detail}); expected: {','.join(R.SOURCE_FIELDS)}")


def iter_rows(path: Path) -> Generator[tuple[int, dict[str, str]] | Rejection, None, None]:
    """Return an iterator of (line number, fields) per well-formed data row, or a Rejection.

    Opens the file and checks its header at once: raises InputError when the file cannot be read,
    is empty or has the wrong header, before anything is consumed.
    """
    handle, reader = _open_csv(path)
    try:
        _check_header(path, reader)
    except InputError:
        handle.close()
        raise
    return _rows(handle, reader)


def _rows(handle: Any, reader: Any) -> Generator[tuple[int, dict[str, str]] | Rejection, None, None]:
    width = len(R.SOURCE_FIELDS)
    with handle:
        previous_line = reader.line_num
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                previous_line = reader.line_num
                yield Rejection(reader.line_num, f"unreadable CSV ({error})")
                continue
            line = previous_line + 1  # a quoted field may span lines: report where the row starts
            previous_line = reader.line_num
            if not row:
                continue
            if len(row) != width:
                yield Rejection(line, f"expected {width} fields, found {len(row)}")
                continue
            text = "".join(row)
            if not text.isascii():  # only non-ASCII text can hold the surrogates of undecodable bytes
                try:
                    text.encode()
                except UnicodeEncodeError:
                    yield Rejection(line, "not valid UTF-8")
                    continue
            yield line, dict(zip(R.SOURCE_FIELDS, row, strict=True))


# Blank or a plain decimal without exponent in every numeric field: nothing nulled. One match per row
# instead of six parse_number calls; at most 300 integer digits, so float() cannot overflow to inf.
_FAST_NUMBER = r"(?:[+-]?[0-9]{1,300}(?:\.[0-9]*)?)?"
_ALL_NUMBERS_OR_BLANK = re.compile(",".join([_FAST_NUMBER] * len(R.NUMERIC_FIELDS))).fullmatch


def _nulled_fields(fields: dict[str, str]) -> list[str]:
    if _ALL_NUMBERS_OR_BLANK(",".join([fields[f] for f in R.NUMERIC_FIELDS])):
        return []
    return [f for f in R.NUMERIC_FIELDS if fields[f].strip() and R.parse_number(fields[f]) is None]


def _recorded_event_time(hour: str, on: date) -> datetime | None:
    full = R.parse_timestamp(hour)
    if full is not None:
        return full
    clock = R.parse_clock(hour)
    if clock is None:
        return None
    return datetime(on.year, on.month, on.day, tzinfo=UTC) + clock


def _row_rejection(line: int, fields: dict[str, str], time_mode: TimeMode, on: date) -> Rejection | None:
    if time_mode == "recorded" and _recorded_event_time(fields["hour"], on) is None:
        return Rejection(line, f"hour {fields['hour']!r} is neither HH:MM:SS nor YYYY-MM-DD HH:MM:SS")
    return None


def validate_csv(path: Path, time_mode: TimeMode = "live") -> ValidationReport:
    """Return what a replay of this CSV would send and reject, without sending anything."""
    report = ValidationReport(path=str(path))
    nulled: Counter[str] = Counter()
    on = _default_recorded_date()
    for item in iter_rows(path):
        report.rows += 1
        if isinstance(item, Rejection):
            report.add_rejection(item)
            continue
        line, fields = item
        rejection = _row_rejection(line, fields, time_mode, on)
        if rejection:
            report.add_rejection(rejection)
            continue
        report.valid += 1
        nulled.update(_nulled_fields(fields))
    report.nulled = dict(nulled)
    return report


def count_data_lines(path: Path) -> int:
    """Return an estimate of the data rows of a CSV (its lines less the header), read fast."""
    lines = 0
    last = b"\n"
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    if last != b"\n":
        lines += 1
    return max(lines - 1, 0)


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
    rows = iter_rows(path)  # checks the file now: a bad file fails before anything is sent
    state.total_rows = count_data_lines(path)
    on = options.recorded_date or _default_recorded_date()
    batch_size = MAX_RECORDS_PER_PUT if options.rate is None else max(1, min(MAX_RECORDS_PER_PUT, int(options.rate)))
    nulled: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    started = time.monotonic()

    def send(batch: list[dict[str, Any]]) -> None:
        if options.time_mode == "live":
            stamp = iso_utc(datetime.now(UTC))
            for record in batch:
                record["event_time"] = stamp
        result = stream.put_records(batch)
        state.sent += result.sent
        state.failed += len(result.failed)
        failures.update(f.error_code for f in result.failed)
        report()
        pace()

    def report() -> None:
        state.elapsed_seconds = time.monotonic() - started
        state.nulled = dict(nulled)
        state.failures = dict(failures)
        if progress:
            progress(state)

    def pace() -> None:
        if options.rate is not None:
            due = started + (state.sent + state.failed) / options.rate
            stop.wait(max(0.0, due - time.monotonic()))

    recorded = options.time_mode == "recorded"
    batch: list[dict[str, Any]] = []
    limit_reached = options.limit == 0
    try:
        while not stop.is_set() and not limit_reached:
            state.passes += 1
            items = rows if state.passes == 1 else iter_rows(path)
            sent_this_pass = 0
            for item in items:
                if stop.is_set():
                    break
                if options.limit is not None and state.sent + state.failed + len(batch) >= options.limit:
                    limit_reached = True
                    break
                state.rows_read += 1
                if recorded and not isinstance(item, Rejection):
                    item = _row_rejection(item[0], item[1], options.time_mode, on) or item
                if isinstance(item, Rejection):
                    state.rejected += 1
                    if state.passes == 1 and len(state.rejections) < MAX_REJECTION_DETAILS:
                        state.rejections.append(item)
                    continue
                line, record = item  # a fresh dict per row: extended in place, not copied
                if state.passes == 1 and (nulled_fields := _nulled_fields(record)):
                    nulled.update(nulled_fields)
                record["record_id"] = f"{state.replay_id}:{state.passes}:{line}"
                record["replay_id"] = state.replay_id
                if recorded:
                    event_time = _recorded_event_time(record["hour"], on)
                    assert event_time is not None  # rows without one were rejected above
                    record["event_time"] = iso_utc(event_time)
                batch.append(record)
                sent_this_pass += 1
                if len(batch) >= batch_size:
                    send(batch)
                    batch = []
            if batch:
                send(batch)
                batch = []
            if not options.loop or sent_this_pass == 0:
                break
    finally:
        rows.close()  # closes the file now, also when stopped before the first pass
    state.stopped = stop.is_set()
    state.done = True
    report()
    return state

