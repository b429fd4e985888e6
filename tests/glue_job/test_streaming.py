"""The real streaming query, local file stream -> lake, through glue_job.local.run(available_now=True).

Each run starts and stops a SparkSession (~10 s), so the scenarios are few and dense. The conftest
runs this module after the others: run() stops whatever session getOrCreate() handed it.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from deltalake import DeltaTable

from core import records as R
from core.backends.local_stream import LocalStream
from core.batching import Entry
from core.config import Settings
from core.lake_layout import QUARANTINE, SIGNAL_STRENGTH_BY_OPERATOR, TableSpec
from glue_job import local
from glue_job.status import STATUS_PATH


def settings_for(home: Path, **extra: str) -> Settings:
    return Settings.from_env({"SIGNAL_HOME": str(home), **extra})


def stream_of(home: Path) -> LocalStream:
    return LocalStream(home / "stream" / "mobile_coverage_logs", "mobile_coverage_logs")


def put_raw(stream: LocalStream, *payloads: str) -> None:
    """Put raw payloads (not JSON-encoded records) on the stream, as a broken producer would."""
    results = stream._write_batch([Entry(record={}, data=p.encode(), partition_key="raw") for p in payloads])
    assert results == [None] * len(payloads)


def record(record_id: str, event_time: datetime, signal_value: int, operator: str = "movistar") -> dict[str, str]:
    return {
        "record_id": record_id, "event_time": event_time.strftime("%Y-%m-%dT%H:%M:%SZ"), "operator": operator,
        "network": operator, "signal": str(signal_value), "lat": "40.41678", "long": "-3.70379", "status": "0",
        "description": "STATE_IN_SERVICE", "provider": "gps", "precission": "4.0", "satellites": "8",
        "postal_code": "28013.0", "hour": event_time.strftime("%H:%M:%S"),
    }


def put(stream: LocalStream, *records: Mapping[str, Any]) -> None:
    result = stream.put_records(list(records))
    assert result.sent == len(records) and not result.failed


def run_job(settings: Settings) -> None:
    """Run the job over the backlog; put back the signal handlers that run() installs."""
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        assert local.run(settings, available_now=True, cores="1") == 0
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)


def status(settings: Settings) -> dict[str, Any]:
    return json.loads((local.lake_folder(settings) / STATUS_PATH).read_text())


def lake_rows(settings: Settings, spec: TableSpec) -> list[dict[str, Any]]:
    folder = local.lake_folder(settings) / spec.prefix
    if not (folder / "_delta_log").exists():
        return []
    # As any Delta reader sees the table; timestamps as naive UTC, as the assertions write them.
    rows = DeltaTable(str(folder)).to_pyarrow_table().to_pylist()
    return [{k: v.astimezone(UTC).replace(tzinfo=None) if isinstance(v, datetime) else v for k, v in row.items()}
            for row in rows]


def signal_by_window(settings: Settings) -> dict[datetime, tuple[float, int]]:
    """Return (signal_sum, signal_count) per window start, summed over batches and operators."""
    totals: dict[datetime, tuple[float, int]] = {}
    for row in lake_rows(settings, SIGNAL_STRENGTH_BY_OPERATOR):
        total, count = totals.get(row["window_start"], (0.0, 0))
        totals[row["window_start"]] = (total + row["signal_sum"], count + row["signal_count"])
    return totals


def assert_rows_accounted_for(totals: Mapping[str, int]) -> None:
    assert totals["input_rows"] == (
        totals["aggregated_rows"] + totals["quarantined_rows"] + totals["late_rows"] + totals["duplicate_rows"]
    ), totals


def naive(moment: datetime) -> datetime:
    """Return a UTC instant as the naive UTC datetime the lake's timestamp('ms') columns hold."""
    return moment.astimezone(UTC).replace(tzinfo=None)


def recent_minute(minutes_ago: int) -> datetime:
    return datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=minutes_ago)


def test_duplicates_count_once_and_malformed_json_is_quarantined(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    stream = stream_of(tmp_path)
    t = recent_minute(2)
    twice = record("dup-1", t + timedelta(seconds=5), -80)
    malformed = '{"record_id": "broken-1", "event_time": "' + t.isoformat() + '", "signal": '
    not_an_object = "not json at all"

    put(stream, twice, twice, record("once-1", t + timedelta(seconds=10), -90))
    put_raw(stream, malformed, not_an_object)
    run_job(settings)
    put(stream, twice, record("once-2", t + timedelta(seconds=20), -70))  # the duplicate again, in a later run
    run_job(settings)

    assert signal_by_window(settings) == {naive(t): (-80.0 - 90.0 - 70.0, 3)}
    quarantine = lake_rows(settings, QUARANTINE)
    assert sorted((row["raw_payload"], row["reason"]) for row in quarantine) == sorted([
        (malformed, R.REASON_MALFORMED_JSON), (not_an_object, R.REASON_NOT_AN_OBJECT),
    ])
    assert all(row["stream_seq"] for row in quarantine)
    document = status(settings)
    assert document["state"] == "STOPPED" and document["error"] is None
    totals = document["totals"]
    assert totals["input_rows"] == 7
    assert totals["duplicate_rows"] == 2
    assert totals["quarantined_rows"] == 2
    assert totals["aggregated_rows"] == 3
    assert totals["late_rows"] == 0
    assert_rows_accounted_for(totals)


def test_a_record_later_than_the_watermark_is_dropped_and_counted(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    stream = stream_of(tmp_path)
    t = recent_minute(2)

    put(stream, record("first-1", t, -80), record("first-2", t + timedelta(seconds=30), -82))
    run_job(settings)  # the watermark (t - 10 min) is stored in the checkpoint
    late_at = t - timedelta(minutes=11)
    put(stream, record("late-1", late_at, -60), record("next-1", t + timedelta(minutes=1), -70))
    run_job(settings)

    windows = signal_by_window(settings)
    assert naive(late_at) not in windows
    assert windows == {naive(t): (-162.0, 2), naive(t + timedelta(minutes=1)): (-70.0, 1)}
    totals = status(settings)["totals"]
    assert totals["late_rows"] == 1
    assert totals["input_rows"] == 4
    assert totals["aggregated_rows"] == 3
    assert totals["duplicate_rows"] == 0
    assert_rows_accounted_for(totals)


def test_a_tolerated_fast_clock_does_not_drop_later_records(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, SIGNAL_MAX_FILES_PER_BATCH="1")  # one stream file per micro-batch
    stream = stream_of(tmp_path)
    now = datetime.now(UTC)
    malformed = '{"record_id": "broken-2", "signal": '

    put(stream, record("ahead-1", now + timedelta(minutes=1, seconds=50), -60))  # within FUTURE_TOLERANCE
    # The file source takes files in modification-time order: one put (one file) after the other.
    time.sleep(0.05)
    put(stream, record("on-time-1", now, -70))
    time.sleep(0.05)
    put(stream, record("on-time-2", now, -80))
    time.sleep(0.05)
    put_raw(stream, malformed)
    assert len(list(stream.folder.glob("*.jsonl"))) == 4
    run_job(settings)

    totals = status(settings)["totals"]
    if totals["batches"] != 4 or totals["input_rows"] != 4:
        pytest.fail(f"expected 4 one-file batches of one row, got {totals}")
    assert [row["raw_payload"] for row in lake_rows(settings, QUARANTINE)] == [malformed]
    assert sum(count for _, count in signal_by_window(settings).values()) == 3
    assert totals["late_rows"] == 0
