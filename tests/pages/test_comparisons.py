"""Numbers with their comparison: the headline tiles and "Average signal by operator" against the period before
and the same period a day earlier, over seeded rows; a period without rows says "no data", never 0 %."""

from __future__ import annotations

import base64
import math
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import plotly.io as pio
import pytest
from streamlit.testing.v1 import AppTest

from core.lake_layout import QUARANTINE
from tests.harness import open_page
from tests.lake_fixtures import SIGNAL, signal_rows, write_rows
from tests.pages.seed import seed, seed_window

DAY = timedelta(days=1)


def minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0, tzinfo=None)


def seed_earlier_periods(home: Path, now: datetime) -> None:
    """Rows for the 5 minutes before the tiles' window and for the same 5 minutes a day earlier (see seed())."""
    lake = home / "lake"
    before = minute(now - timedelta(minutes=7))
    seed_window(lake, before, 4, 3)  # 6 records; Movistar 60 / 3, Yoigo 30 / 3; 1 quarantined
    write_rows(lake, SIGNAL, 5, signal_rows(before, "Movistar", 0.0, 3))  # Movistar: 60 / 6 then; 3 records more
    write_rows(lake, QUARANTINE, 6, [{"arrival_time": before, "stream_seq": "s6", "reason": "empty payload",
                                      "raw_payload": ""}])
    yesterday = minute(now - DAY - timedelta(minutes=2))
    seed_window(lake, yesterday, 7, 4)  # 8 records; Movistar 80 / 4, Yoigo 40 / 4; 1 quarantined
    write_rows(lake, SIGNAL, 8, signal_rows(yesterday, "Orange", 50.0, 5))  # 5 records more


def tiles(at: AppTest) -> dict[str, tuple[str, str, str]]:
    """Return each tile's label -> (value, change against the previous window, its description)."""
    return {m.label: (m.value, m.proto.delta, m.proto.delta_description) for m in at.metric}


def numbers(values: Any) -> list[float]:
    """Return a trace's numbers from its JSON: a list, or plotly's typed array (base64 of a numpy dtype)."""
    if isinstance(values, dict):
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"]).tolist()
    return [float("nan") if v is None else v for v in values]


def day_captions(at: AppTest) -> list[str]:
    return [c.value for c in at.caption if "yesterday" in c.value]


def test_the_tiles_show_their_change_against_the_window_before_and_a_day_earlier(clean_environ: Path) -> None:
    now = seed(clean_environ)
    seed_earlier_periods(clean_environ, now)
    # The reference, from the rows written: (value now, the 5 minutes before, the same 5 minutes yesterday).
    records = (1 + 1, 3 + 3 + 3, 4 + 4 + 5)  # each signal row's record_count
    signal = ((20 + 10) / 2, (60 + 30 + 0) / (3 + 3 + 3), (80 + 40 + 50) / (4 + 4 + 5))
    operators = (2, 2, 3)
    quarantined = (1, 2, 1)

    at = open_page()
    assert not at.exception

    def percent(now: float, then: float) -> str:
        return f"{(now - then) / then * 100:+.0f} %"

    def difference(now: float, then: float, digits: int = 0) -> str:
        return "0" if round(now - then, digits) == 0 else f"{now - then:+.{digits}f}"

    previous = "vs previous 5 min"
    assert tiles(at) == {
        "Records, last 5 min": ("2", percent(records[0], records[1]), previous),
        "Average signal (raw 0-31)": ("15.0", difference(signal[0], signal[1], 1), previous),
        "Operators seen": ("2", difference(operators[0], operators[1]), previous),
        "Quarantined": ("1", difference(quarantined[0], quarantined[1]), previous),
    }
    assert tiles(at)["Records, last 5 min"][1] == "-78 %"  # the reference itself, spelled out once: 2 vs 9
    assert day_captions(at) == [
        f":red[▼ {percent(records[0], records[2])}] vs same 5 min yesterday",
        f":green[▲ {difference(signal[0], signal[2], 1)}] vs same 5 min yesterday",
        f":gray[▼ {difference(operators[0], operators[2])}] vs same 5 min yesterday",
        "0 vs same 5 min yesterday",
    ]

    wall = open_page(kiosk="1")
    assert tiles(wall) == tiles(at) and day_captions(wall) == day_captions(at)


def test_a_period_without_rows_says_no_data_never_zero_percent(clean_environ: Path) -> None:
    seed(clean_environ)  # nothing in the 5 minutes before the tiles' window, nothing a day earlier
    at = open_page()
    assert not at.exception
    assert {(delta, description) for _, delta, description in tiles(at).values()} == {
        ("no data", "for the previous 5 min")}
    assert day_captions(at) == ["no data for the same 5 min yesterday"] * 4
    assert tiles(at)["Records, last 5 min"][0] == "2"


def test_signal_by_operator_shows_each_operators_change(clean_environ: Path) -> None:
    now = seed(clean_environ)
    seed_earlier_periods(clean_environ, now)
    at = open_page("pages/live_aggregations.py")
    assert not at.exception
    figure = next(pio.from_json(chart.proto.spec) for chart in at.get("plotly_chart")
                  if "vs previous 1 h" in chart.proto.spec)
    bars, previous, day_before = figure.data
    # The last hour holds the windows 2, 7 and 30 minutes ago; the hour before it none; a day earlier the one
    # 24 h 2 min ago. Orange only has rows a day earlier: a marker without a bar.
    movistar = ((20 + 60 + 0 + 40) / (1 + 3 + 3 + 2), 80 / 4)
    yoigo = ((10 + 30 + 20) / (1 + 3 + 2), 40 / 4)
    assert list(bars.x) == list(previous.x) == list(day_before.x) == ["Movistar", "Yoigo", "Orange"]
    assert numbers(bars.y)[:2] == pytest.approx([movistar[0], yoigo[0]])
    # Then the range's lowest and highest reading: seed()'s 10-30 and 5-15, and signal_rows' 1-30.
    assert [list(row) for row in bars.customdata] == [
        ["9", "no data", f"{movistar[0] - movistar[1]:+.1f}", "1", "30"],
        ["6", "no data", "0", "5", "15"],  # 10.0 both days
        ["none", "no data", "no data", "none", "none"],
    ]
    assert all(math.isnan(y) for y in numbers(previous.y))  # no marker at all for the hour before, never one at 0
    assert numbers(day_before.y) == pytest.approx([movistar[1], yoigo[1], 50 / 5])
    assert any("Markers: ▬ each operator's average over the previous 1 h" in c.value for c in at.caption)


def test_records_of_rows_without_a_record_count_show_a_dash_not_an_undercount(clean_environ: Path) -> None:
    now = seed(clean_environ)
    # Signal rows in the tiles' window as a release before record_count wrote them (read as NULL since the
    # column was added): how many records they stand for is unknown, so the tile must not show the other rows' 2.
    legacy = signal_rows(minute(now - timedelta(minutes=1)), "Orange", 40.0, 2)
    write_rows(clean_environ / "lake", SIGNAL, 9, [{**row, "record_count": None} for row in legacy])
    at = open_page()
    assert not at.exception
    shown = tiles(at)
    assert shown["Records, last 5 min"][:2] == ("–", "no data")
    assert shown["Average signal (raw 0-31)"][0] == f"{(20 + 10 + 40) / (1 + 1 + 2):.1f}"
    assert shown["Operators seen"][0] == "3"
