"""Seeded local data for the console tests: lake files for every table, catalogued."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from core.backends.local import build_local_backend
from core.config import Settings
from core.lake_layout import COVERAGE_GRID, GPS_PRECISION_BY_PROVIDER, QUARANTINE, STATUS_COUNT
from tests.lake_fixtures import SIGNAL, write_rows


def _minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0, tzinfo=None)


def seed_window(lake: Path, start: datetime, batch_id: int, scale: int) -> None:
    """Write one batch of every table for the 1-minute window starting at `start` (naive UTC)."""
    end = start + timedelta(minutes=1)
    base = {"window_start": start, "window_end": end}
    write_rows(lake, SIGNAL, batch_id, [
        {**base, "operator": "Movistar", "network": "Movistar", "signal_sum": 20.0 * scale,
         "signal_count": scale, "signal_min": 10.0, "signal_max": 30.0, "record_count": scale},
        {**base, "operator": "Yoigo", "network": "Yoigo", "signal_sum": 10.0 * scale,
         "signal_count": scale, "signal_min": 5.0, "signal_max": 15.0, "record_count": scale},
    ])
    write_rows(lake, GPS_PRECISION_BY_PROVIDER, batch_id, [
        {**base, "provider": "gps", "precision_sum": 12.0 * scale, "precision_count": scale,
         "satellites_sum": 8.0 * scale, "satellites_count": scale},
        {**base, "provider": "network", "precision_sum": 900.0 * scale, "precision_count": scale,
         "satellites_sum": 0.0, "satellites_count": 0},
    ])
    write_rows(lake, STATUS_COUNT, batch_id, [
        {**base, "postal_code": "28013", "status": "0", "description": "STATE_IN_SERVICE", "record_count": scale},
        {**base, "postal_code": "8001", "status": "1", "description": "STATE_OUT_OF_SERVICE", "record_count": scale},
    ])
    write_rows(lake, COVERAGE_GRID, batch_id, [
        {**base, "lat_cell": 40.41, "lon_cell": -3.71, "operator": "Movistar", "signal_sum": 20.0 * scale,
         "signal_count": scale, "record_count": scale},
        {**base, "lat_cell": 41.38, "lon_cell": 2.17, "operator": "Yoigo", "signal_sum": 10.0 * scale,
         "signal_count": scale, "record_count": scale},
    ])
    write_rows(lake, QUARANTINE, batch_id, [
        {"arrival_time": start, "stream_seq": f"s{batch_id}", "reason": "malformed JSON", "raw_payload": "{"},
    ])


def seed(home: Path, now: datetime | None = None) -> datetime:
    """Seed windows 2 min, 30 min and 3 h before now (scales 1, 2, 4), crawl every table; return now."""
    now = now or datetime.now(UTC)
    lake = home / "lake"
    seed_window(lake, _minute(now - timedelta(minutes=2)), 1, 1)
    seed_window(lake, _minute(now - timedelta(minutes=30)), 2, 2)
    seed_window(lake, _minute(now - timedelta(hours=3)), 3, 4)
    backend = build_local_backend(Settings.from_env({"SIGNAL_HOME": str(home)}))
    for crawler in backend.crawlers.list():
        backend.crawlers.run(crawler.name)
    return now
