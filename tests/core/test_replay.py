"""Replay: CSV checks with line numbers, what reaches a real local stream, limit, loop, rate, stop, time modes."""

from __future__ import annotations

import csv
import io
import json
import random
import re
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from core.backends.local_stream import LocalStream
from core.batching import encode
from core.errors import InputError
from core.records import NUMERIC_FIELDS, SOURCE_FIELDS, parse_clock, parse_number, parse_timestamp
from core.replay import (
    Rejection,
    ReplayOptions,
    ReplayProgress,
    iso_utc,
    iter_rows,
    replay,
    validate_csv,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_CSV = PROJECT_ROOT / "data" / "mobile_logs.csv"
HEADER = ",".join(SOURCE_FIELDS)
ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def make_row(i: int, **overrides: str) -> list[str]:
    """Return one well-formed CSV row (as field strings) with a unique postal code."""
    row = {
        "hour": f"10:{i // 60 % 60:02d}:{i % 60:02d}", "lat": "40.470261", "long": "-3.692826", "signal": "12",
        "network": "Orange", "operator": "Vodafone DE", "status": "0", "description": "STATE_IN_SERVICE",
        "speed": "0.62", "satellites": "", "precission": "1046.1", "provider": "network",
        "activity": "ON_FOOT", "postal_code": f"{28000 + i}.0",
    }
    row.update(overrides)
    return [row[name] for name in SOURCE_FIELDS]


def csv_line(row: list[str]) -> str:
    """Return a row as one CSV record, quoted where needed, without the line end."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(row)
    return buffer.getvalue()[:-1]


def write_csv(tmp_path: Path, rows: list[list[str]], name: str = "logs.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join([HEADER, *map(csv_line, rows)]) + "\n", encoding="utf-8")
    return path


def new_stream(tmp_path: Path) -> LocalStream:
    return LocalStream(tmp_path / "stream", "test")


def read_stream(stream: LocalStream) -> list[dict[str, Any]]:
    """Return every record on the local stream, decoded from the envelopes' `data`."""
    records = []
    for file in sorted(stream.folder.glob("*.jsonl")):
        for line in file.read_text(encoding="utf-8").splitlines():
            envelope = json.loads(line)
            assert set(envelope) == {"seq", "arrival", "data"}
            records.append(json.loads(envelope["data"]))
    return records


def source_fields(record: dict[str, Any]) -> list[str]:
    return [record[name] for name in SOURCE_FIELDS]


# --- the file itself -------------------------------------------------------------------------------

def _reordered() -> list[str]:
    names = list(SOURCE_FIELDS)
    names[1], names[2] = names[2], names[1]
    return names


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        ([n for n in SOURCE_FIELDS if n != "signal"], "missing signal"),
        ([*SOURCE_FIELDS, "extra"], "unexpected extra"),
        (_reordered(), "columns out of order"),
    ],
    ids=["missing", "extra", "reordered"],
)
def test_wrong_header_is_an_input_error_naming_the_problem(tmp_path: Path, header: list[str], problem: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(",".join(header) + "\n" + csv_line(make_row(1)) + "\n", encoding="utf-8")
    for check in (lambda: validate_csv(path), lambda: replay(path, new_stream(tmp_path))):
        with pytest.raises(InputError) as caught:
            check()
        message = str(caught.value)
        assert "wrong header" in message
        assert problem in message
        assert "\n" not in message
    assert not (tmp_path / "stream").exists()  # nothing was sent


def test_header_with_a_bom_and_padding_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    header = ", ".join(SOURCE_FIELDS)
    path.write_bytes(("\ufeff" + header + "\r\n" + csv_line(make_row(1)) + "\r\n").encode("utf-8"))
    report = validate_csv(path)
    assert (report.valid, report.rejected) == (1, 0)


def test_empty_file_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        validate_csv(path)
    with pytest.raises(InputError, match="empty"):
        replay(path, new_stream(tmp_path))


def test_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        validate_csv(tmp_path / "nope.csv")
    with pytest.raises(InputError, match="no such file"):
        replay(tmp_path / "nope.csv", new_stream(tmp_path))


def test_folder_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="folder"):
        validate_csv(tmp_path)
    with pytest.raises(InputError, match="folder"):
        replay(tmp_path, new_stream(tmp_path))


def test_options_refuse_a_zero_rate_and_a_negative_limit() -> None:
    with pytest.raises(InputError):
        ReplayOptions(rate=0)
    with pytest.raises(InputError):
        ReplayOptions(limit=-1)
    with pytest.raises(InputError):
        ReplayOptions(time_mode="replayed")  # type: ignore[arg-type]


# --- a messy file: line numbers and reasons ---------------------------------------------------------

ROW_A = make_row(1)
ROW_B = make_row(2, description="STATE_IN\nSERVICE")  # quoted, spans lines 3-4
ROW_C = make_row(3, signal="abc")
ROW_D = make_row(4, operator=" MOVISTAR ", network="  yoigo", postal_code="28047.0")
MESSY_EXPECTED_REJECTIONS = [
    Rejection(5, "expected 14 fields, found 13"),
    Rejection(6, "expected 14 fields, found 15"),
]


def write_messy_csv(tmp_path: Path) -> Path:
    lines = [
        HEADER,                                     # 1
        csv_line(ROW_A),                            # 2
        csv_line(ROW_B),                            # 3-4
        ",".join(make_row(5)[:13]),                 # 5: 13 fields
        ",".join([*make_row(6), "surplus"]),        # 6: 15 fields
        "",                                         # 7: blank, skipped
        csv_line(ROW_C),                            # 8: non-numeric signal, sent
        csv_line(ROW_D),                            # 9
    ]
    path = tmp_path / "messy.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert path.read_text().count("\n") == 9
    return path


def test_validate_csv_reports_line_numbers_and_reasons(tmp_path: Path) -> None:
    report = validate_csv(write_messy_csv(tmp_path))
    assert report.rejections == MESSY_EXPECTED_REJECTIONS
    assert (report.rows, report.valid, report.rejected) == (6, 4, 2)
    assert report.nulled == {"signal": 1}


def test_replay_sends_every_valid_row_once_with_its_fields_unchanged(tmp_path: Path) -> None:
    stream = new_stream(tmp_path)
    before = datetime.now(UTC) - timedelta(seconds=1)
    state = replay(write_messy_csv(tmp_path), stream, replay_id="r-test")
    after = datetime.now(UTC) + timedelta(seconds=1)

    assert (state.sent, state.rejected, state.failed) == (4, 2, 0)
    assert state.rejections == MESSY_EXPECTED_REJECTIONS
    assert state.nulled == {"signal": 1}
    assert state.done and not state.stopped
    records = read_stream(stream)
    assert sorted(map(source_fields, records)) == sorted([ROW_A, ROW_B, ROW_C, ROW_D])
    assert len({r["record_id"] for r in records}) == 4
    for record in records:
        assert set(record) == set(SOURCE_FIELDS) | {"record_id", "replay_id", "event_time"}
        assert record["replay_id"] == "r-test"
        assert record["record_id"]
        assert ISO_UTC.match(record["event_time"]), record["event_time"]
        sent_at = datetime.fromisoformat(record["event_time"].replace("Z", "+00:00"))
        assert before <= sent_at <= after  # live mode: event time is the send time


def test_undecodable_and_oversized_lines_are_rejected_and_reading_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "odd.csv"
    lines = [
        HEADER.encode(),
        csv_line(make_row(1)).encode(),
        csv_line(make_row(2, operator="Or\u00e9nge")).encode("latin-1"),  # line 3: not UTF-8
        csv_line(make_row(3, description="X" * 200_000)).encode(),          # line 4: over the csv field limit
        csv_line(make_row(4)).encode(),
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    report = validate_csv(path)
    assert [r.line for r in report.rejections] == [3, 4]
    assert report.rejections[0].reason == "not valid UTF-8"
    assert report.rejections[1].reason.startswith("unreadable CSV")
    assert report.valid == 2


def test_an_unterminated_quote_rejects_only_its_own_line(tmp_path: Path) -> None:
    # 101 lines: the header, then 100 rows, the 10th (line 11) opening a quote that never closes.
    lines = [HEADER, *(",".join(make_row(i)) for i in range(100))]
    lines[11] = ",".join(make_row(10, operator='"Vodafone'))
    path = tmp_path / "unterminated.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    report = validate_csv(path)
    assert (report.rows, report.valid, report.rejected) == (100, 99, 1)
    assert report.rejections == [Rejection(12, UNTERMINATED)]

    stream = new_stream(tmp_path)
    state = replay(path, stream, replay_id="r-quote")
    assert (state.sent, state.rejected, state.rejections) == (99, 1, [Rejection(12, UNTERMINATED)])
    sent = read_stream(stream)
    assert sorted(r["record_id"] for r in sent) == sorted(f"r-quote:1:{n}" for n in range(2, 102) if n != 12)
    assert sorted(map(source_fields, sent)) == sorted(make_row(i) for i in range(100) if i != 10)


def test_an_unterminated_quote_closed_by_a_later_quoted_field_still_rejects_one_line(tmp_path: Path) -> None:
    lines = [
        HEADER,                                                    # 1
        ",".join(make_row(1)),                                     # 2
        ",".join(make_row(2, description='"STATE')),               # 3: opens a quote
        ",".join(make_row(3)),                                     # 4
        csv_line(make_row(4, description="IN, SERVICE")),         # 5: its quote would close line 3's
        csv_line(make_row(5, description="two\nlines")),           # 6-7: a quoted line break, closed
        ",".join(make_row(6, operator='"Yoigo')),                  # 8: opens a quote up to the end
        ",".join(make_row(7)),                                     # 9
        ",".join(make_row(8)),                                     # 10, no line break at the end
    ]
    path = tmp_path / "quotes.csv"
    path.write_text("\n".join(lines), encoding="utf-8")

    items = [item if isinstance(item, Rejection) else (item[0], list(item[1].values())) for item in iter_rows(path)]
    assert items == [
        (2, make_row(1)), Rejection(3, UNTERMINATED), (4, make_row(3)),
        (5, make_row(4, description="IN, SERVICE")), (6, make_row(5, description="two\nlines")),
        Rejection(8, UNTERMINATED), (9, make_row(7)), (10, make_row(8)),
    ]


def test_an_unterminated_quote_over_the_field_size_limit_rejects_one_line(tmp_path: Path) -> None:
    # 5,000 rows after the quote: more text than the csv module's field limit (128 KiB).
    lines = [HEADER, ",".join(make_row(0, description='"STATE')), *(",".join(make_row(i)) for i in range(1, 5001))]
    path = tmp_path / "long.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert len(path.read_text()) > 4 * csv.field_size_limit()

    report = validate_csv(path)
    assert (report.rows, report.valid, report.rejections) == (5001, 5000, [Rejection(2, UNTERMINATED)])


def test_a_closed_multiline_quote_in_a_row_of_the_wrong_width_is_one_rejection(tmp_path: Path) -> None:
    lines = [HEADER, csv_line(make_row(1, description="STATE\nIN_SERVICE")[:13]), ",".join(make_row(2))]
    path = tmp_path / "narrow.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    report = validate_csv(path)
    assert (report.rows, report.valid, report.rejections) == (2, 1, [Rejection(2, "expected 14 fields, found 13")])


# --- limit, loop, rate, stop, progress -------------------------------------------------------------

def test_limit_sends_exactly_n(tmp_path: Path) -> None:
    stream = new_stream(tmp_path)
    state = replay(write_csv(tmp_path, [make_row(i) for i in range(30)]), stream, ReplayOptions(limit=7))
    assert state.sent == 7
    records = read_stream(stream)
    assert sorted(map(source_fields, records)) == sorted(make_row(i) for i in range(7))


def test_limit_zero_sends_nothing(tmp_path: Path) -> None:
    stream = new_stream(tmp_path)
    state = replay(write_csv(tmp_path, [make_row(i) for i in range(5)]), stream, ReplayOptions(limit=0))
    assert state.sent == 0
    assert read_stream(stream) == []


def test_loop_with_limit_sends_n_across_passes_with_distinct_ids(tmp_path: Path) -> None:
    stream = new_stream(tmp_path)
    rows = [make_row(i) for i in range(10)]
    state = replay(write_csv(tmp_path, rows), stream, ReplayOptions(limit=25, loop=True))
    assert state.sent == 25
    assert state.passes == 3
    records = read_stream(stream)
    assert len(records) == 25
    assert len({r["record_id"] for r in records}) == 25
    per_row = [sum(source_fields(r) == row for r in records) for row in rows]
    assert per_row == [3] * 5 + [2] * 5


def test_rate_paces_full_batches(tmp_path: Path) -> None:
    path = write_csv(tmp_path, [make_row(i) for i in range(600)])
    started = time.monotonic()
    state = replay(path, new_stream(tmp_path), ReplayOptions(rate=1000, limit=500))
    elapsed = time.monotonic() - started
    assert state.sent == 500
    assert elapsed >= 0.4  # 500 records at 1000/s


def test_rate_paces_a_replay_shorter_than_one_batch(tmp_path: Path) -> None:
    path = write_csv(tmp_path, [make_row(i) for i in range(150)])
    started = time.monotonic()
    state = replay(path, new_stream(tmp_path), ReplayOptions(rate=200, limit=100))
    elapsed = time.monotonic() - started
    assert state.sent == 100
    assert elapsed >= 0.4  # 100 records at 200/s


def test_rate_holds_when_looping_a_small_file(tmp_path: Path) -> None:
    path = write_csv(tmp_path, [make_row(i) for i in range(10)])
    stop = threading.Event()
    timer = threading.Timer(0.3, stop.set)
    timer.start()
    try:
        state = replay(path, new_stream(tmp_path), ReplayOptions(rate=20, loop=True), stop=stop)
    finally:
        timer.cancel()
    assert state.sent <= 40  # 20/s for 0.3 s, plus one batch of slack


def test_stop_event_stops_a_looping_replay(tmp_path: Path) -> None:
    path = write_csv(tmp_path, [make_row(i) for i in range(50)])
    stop = threading.Event()
    timer = threading.Timer(0.3, stop.set)
    timer.start()
    started = time.monotonic()
    try:
        state = replay(path, new_stream(tmp_path), ReplayOptions(rate=10, loop=True), stop=stop)
    finally:
        timer.cancel()
    elapsed = time.monotonic() - started
    assert state.stopped and state.done
    assert 0 < state.sent < 50  # one pass would take 5 s at 10/s
    assert elapsed < 3


def test_progress_is_called_with_growing_sent(tmp_path: Path) -> None:
    path = write_csv(tmp_path, [make_row(i) for i in range(1200)])
    seen: list[tuple[int, bool]] = []

    def progress(state: ReplayProgress) -> None:
        seen.append((state.sent, state.done))

    final = replay(path, new_stream(tmp_path), progress=progress)
    sent = [s for s, _ in seen]
    assert sent == sorted(sent)
    assert {500, 1000, 1200} <= set(sent)
    assert seen[-1] == (1200, True)
    assert not any(done for _, done in seen[:-1])
    assert final.sent == 1200


def test_eta_is_zero_when_the_pass_is_finished(tmp_path: Path) -> None:
    state = replay(write_csv(tmp_path, [make_row(i) for i in range(20)]), new_stream(tmp_path))
    assert state.done and state.rows_read == state.total_rows == 20
    assert state.eta_seconds in (None, 0.0)


# --- time modes ------------------------------------------------------------------------------------

TIME_ROWS = [
    make_row(1, hour="10:15:30"),
    make_row(2, hour="2026-02-27 08:00:00"),
    make_row(3, hour="garbage"),  # line 4
    make_row(4, hour="7:05:09"),
]


def test_recorded_mode_puts_hour_on_the_recorded_date(tmp_path: Path) -> None:
    stream = new_stream(tmp_path)
    options = ReplayOptions(time_mode="recorded", recorded_date=date(2026, 3, 1))
    state = replay(write_csv(tmp_path, TIME_ROWS), stream, options)
    assert (state.sent, state.rejected) == (3, 1)
    assert [r.line for r in state.rejections] == [4]
    assert "'garbage'" in state.rejections[0].reason
    event_times = {r["hour"]: r["event_time"] for r in read_stream(stream)}
    assert event_times == {
        "10:15:30": "2026-03-01T10:15:30.000Z",
        "2026-02-27 08:00:00": "2026-02-27T08:00:00.000Z",
        "7:05:09": "2026-03-01T07:05:09.000Z",
    }


def test_validate_csv_in_recorded_mode_rejects_a_garbage_hour(tmp_path: Path) -> None:
    path = write_csv(tmp_path, TIME_ROWS)
    recorded = validate_csv(path, time_mode="recorded")
    assert [r.line for r in recorded.rejections] == [4]
    assert recorded.valid == 3
    assert validate_csv(path).valid == 4


def test_live_mode_sends_a_row_with_a_garbage_hour(tmp_path: Path) -> None:
    stream = new_stream(tmp_path)
    state = replay(write_csv(tmp_path, TIME_ROWS), stream)
    assert (state.sent, state.rejected) == (4, 0)
    assert sorted(r["hour"] for r in read_stream(stream)) == sorted(row[0] for row in TIME_ROWS)


# --- the bundled sample ----------------------------------------------------------------------------

def test_bundled_sample_replays_completely(tmp_path: Path) -> None:
    with SAMPLE_CSV.open(newline="", encoding="utf-8-sig") as handle:
        data_rows = sum(1 for row in csv.reader(handle) if row) - 1
    assert data_rows > 0
    stream = new_stream(tmp_path)
    state = replay(SAMPLE_CSV, stream)
    assert (state.sent, state.rejected, state.failed) == (data_rows, 0, 0)
    assert len(read_stream(stream)) == data_rows
    assert validate_csv(SAMPLE_CSV).valid == data_rows


# --- the rows the csv module reads, the bytes the JSON encoder writes ------------------------------

# Cells that need care somewhere: non-ASCII, quotes, backslashes, control characters, line breaks,
# commas, format syntax, blanks, and numbers the general path reads differently from plain decimals.
MESSY_CELLS = [
    "", " ", "12", "-3.692826", "+.5", "5.", "0.62", "1e7", "  12 ", "nan", "inf", "-inf", "n/a", "-", "1" * 301,
    "Telefónica ñ 日本 😀", 'say "hi"', '"', "back\\slash", "\\", "tab\there", "nul\x00x", "\x01\x1f", "\x7f",
    "new\nline", "cr\rinside", "crlf\r\n", "\u2028\x85", "a,b", ",", "%s %d %%", "{0} {{}}", "STATE_IN_SERVICE",
    "28047.0", "10:15:30", "2026-02-27 08:00:00", "garbage", "\ufeff",
]
# Lines as they come, written by hand: not every file was written by a csv writer.
ODD_LINES = [
    "", ",,,", " " + ",".join(make_row(90)), 'a,b"c,' + ",".join(make_row(91)[3:]),
    ",".join(make_row(92)) + ",", ",".join(make_row(93, description="X" * 131_071)),
    ",".join(make_row(94, description="Y" * 131_072)), ",".join(make_row(95, description="Z" * 200_000)),
    ",".join(make_row(96)) + "\r" + ",".join(make_row(97)), ",".join(make_row(98, operator="nul\x00")),
    ",".join(make_row(89, operator='"Vodafone')), ",".join(make_row(88, postal_code='"28047.0')),
]


def messy_lines(count: int, seed: int) -> list[str]:
    """Return CSV lines (without the last line break) of random messy rows and odd hand-written lines."""
    chooser = random.Random(seed)
    lines = []
    for i in range(count):
        if chooser.random() < 0.1:
            lines.append(chooser.choice(ODD_LINES))
            continue
        row = make_row(i)
        for _ in range(chooser.randint(0, 3)):
            row[chooser.randrange(len(row))] = chooser.choice(MESSY_CELLS)
        if chooser.random() < 0.05:
            row = row[:chooser.randint(1, 13)] if chooser.random() < 0.5 else [*row, "surplus"]
        lines.append(csv_line(row))
    return lines


def write_messy_file(tmp_path: Path, seed: int, rows: int = 400) -> Path:
    lines = [HEADER, *messy_lines(rows, seed)]
    ends = random.Random(seed).choices(["\n", "\r\n", "\r"], weights=[8, 2, 1], k=len(lines))
    data = "".join(line + end for line, end in zip(lines, ends, strict=True)).encode("utf-8")
    data = data.replace("Telefónica".encode(), "Telef\xf3nica".encode("latin-1"), 3)  # a few undecodable lines
    path = tmp_path / f"messy-{seed}.csv"
    path.write_bytes(data + b'unterminated,"quote\n' + ",".join(make_row(99)).encode())
    return path


UNTERMINATED = "unterminated quote: a quoted field opened on this line is not closed properly " \
               "(the lines after it are read on their own)"


def quotes_close(lines: list[str]) -> bool:
    try:
        list(csv.reader(lines, strict=True))
    except csv.Error:
        return False
    return True


def reference_rows(path: Path) -> list[tuple[int, list[str]] | Rejection]:
    """Return the rows as the csv module alone reads them, with the reasons and line numbers replay reports.

    One rule on top of the csv module's: a row that spans lines (a quoted field holds a line break) and
    cannot be read, or is no row of 14 fields and has a quote a strict reader refuses, was opened by an
    unterminated quote: its first line is refused alone and reading starts again on the next line.
    """
    with path.open(newline="", encoding="utf-8-sig", errors="surrogateescape") as handle:
        lines = handle.readlines()
    items: list[tuple[int, list[str]] | Rejection] = []
    start = 1  # index of the first line not read yet (the header is line 1, index 0)
    while start < len(lines):
        reader = csv.reader(iter(lines[start:]))
        error: csv.Error | None = None
        try:
            row = next(reader)
        except StopIteration:
            return items
        except csv.Error as caught:
            row, error = [], caught
        line = start + 1
        taken = lines[start:start + reader.line_num]
        if len(taken) > 1 and (error is not None or (len(row) != len(SOURCE_FIELDS) and not quotes_close(taken))):
            items.append(Rejection(line, UNTERMINATED))
            start += 1
            continue
        start += reader.line_num
        if error is not None:
            items.append(Rejection(start, f"unreadable CSV ({error})"))
            continue
        if not row:
            continue
        if len(row) != len(SOURCE_FIELDS):
            items.append(Rejection(line, f"expected {len(SOURCE_FIELDS)} fields, found {len(row)}"))
            continue
        try:
            "".join(row).encode()
        except UnicodeEncodeError:
            items.append(Rejection(line, "not valid UTF-8"))
            continue
        items.append((line, row))
    return items


def reference_nulled(rows: list[list[str]]) -> dict[str, int]:
    nulled: dict[str, int] = {}
    for row in rows:
        for name, cell in zip(SOURCE_FIELDS, row, strict=True):
            if name in NUMERIC_FIELDS and cell.strip() and parse_number(cell) is None:
                nulled[name] = nulled.get(name, 0) + 1
    return nulled


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rows_and_reasons_are_the_csv_modules(tmp_path: Path, seed: int) -> None:
    path = write_messy_file(tmp_path, seed)
    expected = reference_rows(path)
    assert len(expected) > 350 and sum(isinstance(item, Rejection) for item in expected) > 10
    read = [item if isinstance(item, Rejection) else (item[0], list(item[1].values())) for item in iter_rows(path)]
    assert read == expected
    report = validate_csv(path)
    assert report.rejections == [item for item in expected if isinstance(item, Rejection)]
    assert report.nulled == reference_nulled([item[1] for item in expected if not isinstance(item, Rejection)])


def write_plain_file(tmp_path: Path, seed: int, rows: int = 6000) -> Path:
    """Write lines without quotes, blank, short and wide ones among them, with every line ending: over 1 MiB of
    long values in one run first, then a line with a NUL byte (pyarrow 25 misreads one after its first MiB,
    apache/arrow GH-50481), and from there on now and then a line the csv module reads: quoted, unterminated,
    with NUL bytes, overlong, or starting with a BOM right after one of those."""
    chooser = random.Random(seed)
    plain_odd = ["", " ", ",".join(make_row(1)[:5]), ",".join([*make_row(2), "surplus"]), ",,,,,,,,,,,,,"]
    other = [
        csv_line(make_row(3, hour="a\nb")), ",".join(make_row(4, operator='"Vodafone')),
        ",".join(make_row(5, operator="nul\x00x")) + ',"a,b"', ",".join(make_row(6, operator="nul\x00")),
        ",".join(make_row(7, description="X" * 131_072)), ",".join(make_row(8, description="Z" * 131_073)),
        csv_line(make_row(9, status="0,1")) + "\n\ufeff" + ",".join(make_row(10)[1:]) + ",x",
    ]
    lines = [HEADER]
    for i in range(rows):
        roll = chooser.random()
        if i == rows // 2:
            lines.append(other[3])
        elif roll < 0.03 or (roll > 0.995 and i > rows // 2):
            lines.append(chooser.choice(plain_odd if roll < 0.03 else other))
        else:
            description = "D" * chooser.randint(200, 600) if i < rows // 2 else "STATE_IN_SERVICE"
            operator = chooser.choice(["Vodafone", "Telefónica 日本 😀"])
            lines.append(",".join(make_row(i, description=description, operator=operator)))
    ends = chooser.choices(["\n", "\r\n", "\r"], weights=[8, 2, 1], k=len(lines))
    path = tmp_path / f"plain-{seed}.csv"
    path.write_bytes("".join(line + end for line, end in zip(lines, ends, strict=True)).encode())
    return path


@pytest.mark.parametrize("seed", [7, 8])
def test_plain_lines_and_the_others_read_as_the_csv_module_reads_them(tmp_path: Path, seed: int) -> None:
    path = write_plain_file(tmp_path, seed)
    assert path.stat().st_size > 2 << 20  # pyarrow reads it in blocks of 1 MiB
    expected = reference_rows(path)
    assert sum(isinstance(item, Rejection) for item in expected) > 50
    read = [item if isinstance(item, Rejection) else (item[0], list(item[1].values())) for item in iter_rows(path)]
    assert read == expected
    report = validate_csv(path)
    assert report.rejections == [item for item in expected if isinstance(item, Rejection)][:200]
    assert report.valid == sum(not isinstance(item, Rejection) for item in expected)


@pytest.mark.parametrize(
    ("options", "replay_id"),
    [(ReplayOptions(), "r-plain"), (ReplayOptions(), 'r"%s{0}\\\u00e9\n'),
     (ReplayOptions(time_mode="recorded", recorded_date=date(2026, 3, 1)), "r-recorded")],
    ids=["live", "odd-replay-id", "recorded"],
)
def test_stream_bytes_are_the_json_encoders(tmp_path: Path, options: ReplayOptions, replay_id: str) -> None:
    path = write_messy_file(tmp_path, seed=4, rows=1200)
    stream = new_stream(tmp_path)
    state = replay(path, stream, options, replay_id=replay_id)

    rows = [item for item in reference_rows(path) if not isinstance(item, Rejection)]
    if options.time_mode == "recorded":
        rows = [(line, row) for line, row in rows if _recorded(row[0], options) is not None]
    assert state.sent == len(rows) and state.failed == 0
    assert state.nulled == reference_nulled([row for _, row in rows])
    lines = [line for file in sorted(stream.folder.glob("*.jsonl")) for line in
             file.read_bytes().decode().split("\n")[:-1]]
    assert len(lines) == len(rows)
    for text, (line, row) in zip(lines, rows, strict=True):
        envelope = json.loads(text)
        record = json.loads(envelope["data"])
        # The general path: a dict per row, json.dumps of the envelope, the shared encoder for the data.
        expected = {**dict(zip(SOURCE_FIELDS, row, strict=True)), "record_id": f"{replay_id}:1:{line}",
                    "replay_id": replay_id, "event_time": record["event_time"]}
        if options.time_mode == "recorded":
            assert record["event_time"] == iso_utc(_recorded(row[0], options))
        assert envelope["data"].encode() == encode(expected).data
        assert text == json.dumps({"seq": envelope["seq"], "arrival": envelope["arrival"], "data": envelope["data"]},
                                  ensure_ascii=False, separators=(",", ":"))


def _recorded(hour: str, options: ReplayOptions) -> datetime | None:
    assert options.recorded_date is not None
    full = parse_timestamp(hour)
    clock = parse_clock(hour)
    if full is not None:
        return full
    return None if clock is None else datetime.combine(options.recorded_date, datetime.min.time(), UTC) + clock
