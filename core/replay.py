"""Replay producer data: CSV -> validated records -> batches -> stream.put_records.

Used by `python -m core.cli replay` and by the console's demo page (progress callback, stop flag).
Every CSV line ends up sent, rejected with its line number and reason, or failed with the
stream's error; nothing is dropped silently. A quoted field may hold line breaks, but a quote that
does not close properly costs only the line it opened on: the lines it took are read again on their own.
"""

from __future__ import annotations

import csv
import itertools
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TextIO

from core import records as R
from core.backends.base import Stream
from core.batching import EncodedRecords, RecordTemplate, escape_json_text
from core.domain import MAX_RECORDS_PER_PUT
from core.errors import InputError

TimeMode = Literal["live", "recorded"]
MAX_REJECTION_DETAILS = 200
# The fields of a sent record in the order replay has always sent them: the source row, then ours.
SENT_FIELDS: tuple[str, ...] = (*R.SOURCE_FIELDS, "record_id", "replay_id", "event_time")
_SENT_RECORD = RecordTemplate(SENT_FIELDS)
# A data row as read: (line number, cells, clean); clean rows passed _CLEAN_ROW.
_Row = tuple[int, list[str], bool]


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


class _Lines:
    """The lines of an open CSV for the csv reader: one line can be handed back to be read first, and the
    lines the reader pulls from `source` are kept in `taken`, to be read again when its row is refused."""

    __slots__ = ("_handed_back", "handle", "source", "taken")

    def __init__(self, handle: TextIO) -> None:
        self.handle = handle
        self.source: Iterator[str] = handle
        self.taken: list[str] = []
        self._handed_back: str | None = None

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        text = self._handed_back
        if text is None:
            text = next(self.source)
            self.taken.append(text)
            return text
        self._handed_back = None
        return text

    def hand_back(self, text: str) -> None:
        """Make `text` the next line the reader reads."""
        self._handed_back = text


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


def _open_csv(path: Path) -> tuple[_Lines, Any]:
    # newline="": lines end at \r, \n or \r\n, as the csv module ends rows.
    handle = open_input(path, newline="", encoding="utf-8-sig", errors="surrogateescape")
    lines = _Lines(handle)
    return lines, csv.reader(lines)


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
    return _with_field_names(_open_rows(path))


def _open_rows(path: Path) -> Generator[_Row | Rejection, None, None]:
    lines, reader = _open_csv(path)
    try:
        _check_header(path, reader)
    except InputError:
        lines.handle.close()
        raise
    return _rows(lines, reader)


def _with_field_names(rows: Generator[_Row | Rejection, None, None]
                      ) -> Generator[tuple[int, dict[str, str]] | Rejection, None, None]:
    try:
        for item in rows:
            yield item if isinstance(item, Rejection) else (item[0], dict(zip(R.SOURCE_FIELDS, item[1], strict=True)))
    finally:
        rows.close()  # closing this generator closes the file too


# Blank or a plain decimal without exponent: never nulled. At most 300 integer digits, so float()
# cannot overflow to inf. Possessive (++, ?+): a number matches one way only, so giving characters
# back could not help, and not keeping the places to give them back at makes the match twice as fast.
_FAST_NUMBER = r"(?:[+-]?+[0-9]{1,300}+(?:\.[0-9]*+)?+)?+"
# Text without a comma, a quote, a backslash, a control character or a surrogate (the stand-in for
# an undecodable byte): valid UTF-8 that JSON-escaping leaves as it is.
_PLAIN_TEXT = r'[^,"\\\x00-\x1f\ud800-\udfff]*'
# Matched against a CSV line without its line break: a match means a line without quotes, so the
# csv module would split it at its commas, into exactly one cell per field, every numeric one blank
# or a plain decimal (nothing nulled), none to escape and all valid UTF-8. One match per row instead
# of the csv parser and the width, encoding, number and escaping checks of each cell; any other
# line goes to the csv module and gets those checks one by one.
_CLEAN_ROW = re.compile(
    ",".join(_FAST_NUMBER if name in R.NUMERIC_FIELDS else _PLAIN_TEXT for name in R.SOURCE_FIELDS)
).fullmatch
_NUMERIC_COLUMNS = tuple((name, R.SOURCE_FIELDS.index(name)) for name in R.NUMERIC_FIELDS)


def _rows(lines: _Lines, reader: Any) -> Generator[_Row | Rejection, None, None]:
    width = len(R.SOURCE_FIELDS)
    unterminated = "unterminated quote: a quoted field opened on this line is not closed properly " \
                   "(the lines after it are read on their own)"
    # The csv module refuses a field longer than this: a line shorter than it cannot hold one.
    field_limit = csv.field_size_limit()
    line = reader.line_num  # the last line read, by the reader or here
    taken = lines.taken  # the lines the reader reads after the one handed back: empty for a one-line row
    with lines.handle as handle:
        source: Iterator[str] = handle
        again: Iterator[str] = iter(())  # lines to read again, before the rest of the file
        while True:
            for text in source:
                # A line ends with one line break at most (newline=""): strip it, as the reader does.
                row_text = text.rstrip("\r\n")
                if len(row_text) < field_limit and _CLEAN_ROW(row_text):
                    # Without a quote the reader would split the line at its commas: do that, faster.
                    line += 1
                    yield line, row_text.split(","), True
                    continue
                lines.hand_back(text)  # anything else is the csv module's to read, quoted lines and all
                taken.clear()
                read_before = reader.line_num
                error: csv.Error | None = None
                try:
                    row = next(reader)
                except StopIteration:
                    return
                except csv.Error as caught:
                    error, row = caught, []
                first_line = line + 1  # a quoted field may span lines: report where the row starts
                if taken and (error is not None or (len(row) != width and not _quotes_close([text, *taken]))):
                    # A quote opened on this line took the next lines into its field, and does not close
                    # before the end of the file, the field size limit, or where a quote can close. Only
                    # this line is refused: the lines it took are read again, on their own.
                    line = first_line
                    yield Rejection(line, unterminated)
                    # One level of lines to read again (not a chain per refused line): those it took,
                    # then those still waiting from an earlier refusal.
                    again = iter([*taken, *again])
                    source = lines.source = itertools.chain(again, handle)
                    break
                line += reader.line_num - read_before
                if error is not None:
                    yield Rejection(line, f"unreadable CSV ({error})")
                    continue
                if not row:
                    continue
                if len(row) != width:
                    yield Rejection(first_line, f"expected {width} fields, found {len(row)}")
                    continue
                joined = ",".join(row)
                if not joined.isascii():  # only non-ASCII text can hold the surrogates of undecodable bytes
                    try:
                        joined.encode()
                    except UnicodeEncodeError:
                        yield Rejection(first_line, "not valid UTF-8")
                        continue
                yield first_line, row, False
            else:
                return


def _quotes_close(lines: list[str]) -> bool:
    """Return True when every quoted field in these lines closes properly (a strict csv reader reads them)."""
    try:
        for _ in csv.reader(lines, strict=True):
            pass
    except csv.Error:
        return False
    return True


def _nulled_fields(cells: Sequence[str]) -> list[str]:
    """Return the numeric fields of a row that are neither blank nor a number (sent as they are, read as null)."""
    return [name for name, index in _NUMERIC_COLUMNS if cells[index].strip() and R.parse_number(cells[index]) is None]


def _recorded_event_time(hour: str, on: date) -> datetime | None:
    full = R.parse_timestamp(hour)
    if full is not None:
        return full
    clock = R.parse_clock(hour)
    if clock is None:
        return None
    return datetime(on.year, on.month, on.day, tzinfo=UTC) + clock


def _hour_rejection(line: int, hour: str) -> Rejection:
    return Rejection(line, f"hour {hour!r} is neither HH:MM:SS nor YYYY-MM-DD HH:MM:SS")


def validate_csv(path: Path, time_mode: TimeMode = "live") -> ValidationReport:
    """Return what a replay of this CSV would send and reject, without sending anything."""
    report = ValidationReport(path=str(path))
    nulled: Counter[str] = Counter()
    on = _default_recorded_date()
    for item in _open_rows(path):
        report.rows += 1
        if isinstance(item, Rejection):
            report.add_rejection(item)
            continue
        line, cells, clean = item
        if time_mode == "recorded" and _recorded_event_time(cells[0], on) is None:
            report.add_rejection(_hour_rejection(line, cells[0]))
            continue
        report.valid += 1
        if not clean:
            nulled.update(_nulled_fields(cells))
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
    rows = _open_rows(path)  # checks the file now: a bad file fails before anything is sent
    state.total_rows = count_data_lines(path)
    on = options.recorded_date or _default_recorded_date()
    batch_size = MAX_RECORDS_PER_PUT if options.rate is None else max(1, min(MAX_RECORDS_PER_PUT, int(options.rate)))
    nulled: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    replay_id_json = escape_json_text(state.replay_id)
    started = time.monotonic()

    def send(batch: list[tuple[list[str], int, str]]) -> None:
        # The records are rendered from the rows' escaped cells: the bytes encode() would give for
        # dicts of SENT_FIELDS, without building the dicts.
        stamp = iso_utc(datetime.now(UTC)) if options.time_mode == "live" else ""
        id_prefix = f"{state.replay_id}:{state.passes}:"  # a batch never spans two passes
        id_prefix_json = escape_json_text(id_prefix)
        values: list[str] = []
        record_ids: list[str] = []
        for cells, line, event_time in batch:
            number = str(line)
            values += cells
            values += (id_prefix_json + number, replay_id_json, event_time or stamp)
            record_ids.append(id_prefix + number)
        records = EncodedRecords(_SENT_RECORD.encode_many(values, len(batch)), record_ids)
        result = stream.put_records(records)
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
    limit = options.limit
    # Per row: the escaped cells, the line and the recorded event time ("" in live mode: stamped when sent).
    batch: list[tuple[list[str], int, str]] = []
    limit_reached = limit == 0
    try:
        while not stop.is_set() and not limit_reached:
            state.passes += 1
            first_pass = state.passes == 1
            items = rows if first_pass else _open_rows(path)
            sent_this_pass = 0
            for item in items:
                if stop.is_set():
                    break
                if limit is not None and state.sent + state.failed + len(batch) >= limit:
                    limit_reached = True
                    break
                state.rows_read += 1
                event_time = ""
                if recorded and not isinstance(item, Rejection):
                    moment = _recorded_event_time(item[1][0], on)
                    if moment is None:
                        item = _hour_rejection(item[0], item[1][0])
                    else:
                        event_time = iso_utc(moment)
                if isinstance(item, Rejection):
                    state.rejected += 1
                    if first_pass and len(state.rejections) < MAX_REJECTION_DETAILS:
                        state.rejections.append(item)
                    continue
                line, cells, clean = item
                if not clean:  # clean rows have nothing nulled and nothing to escape
                    if first_pass and (nulled_fields := _nulled_fields(cells)):
                        nulled.update(nulled_fields)
                    cells = [escape_json_text(cell) for cell in cells]
                batch.append((cells, line, event_time))
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
