"""Replay: CSV checks with line numbers, what reaches a real local stream, limit, loop, rate, stop, time modes."""

from __future__ import annotations

import csv
import io
import json
import re
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from core.backends.local_stream import LocalStream
from core.errors import InputError
from core.records import SOURCE_FIELDS
from core.replay import Rejection, ReplayOptions, ReplayProgress, replay, validate_csv

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
