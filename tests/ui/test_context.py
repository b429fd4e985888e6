"""The console's shared caches: bounded last good results, bounded ranges, equal ranges sharing one query."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest
import streamlit as st

from core.domain import QueryResult
from core.errors import QueryError
from ui import context

NOW = datetime(2026, 3, 10, 12, 0, 7, tzinfo=UTC)


class FakeLake:
    """Answers every query with one row, or fails while `failing`; records the ranges it was asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, datetime | None, datetime | None]] = []
        self.failing = False

    def query(self, name: str, params: Mapping[str, Any] | None = None) -> QueryResult:
        params = params or {}
        self.calls.append((name, params.get("since"), params.get("until")))
        if self.failing:
            raise QueryError(f"query {name} failed")
        return QueryResult(name, pd.DataFrame({"n": [len(self.calls)]}), None, "SELECT 1", (), f"q{len(self.calls)}",
                           None, 1.0)


@pytest.fixture
def lake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLake]:
    st.cache_data.clear()
    st.cache_resource.clear()
    fake = FakeLake()
    monkeypatch.setattr(context, "backend", lambda: SimpleNamespace(lake=fake))
    yield fake
    st.cache_data.clear()
    st.cache_resource.clear()


# --- the last good results ------------------------------------------------------------------------

def test_last_good_results_are_bounded_for_any_number_of_custom_ranges(lake: FakeLake) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    slots = []
    for day in range(5 * context.LAST_GOOD_ENTRIES):  # a new custom range each time, as analysts pick them
        since = start + timedelta(hours=day)
        slot = f"custom-{since.isoformat()}"
        slots.append(slot)
        assert context.query("signal_by_operator", since, since + timedelta(hours=1), slot=slot).result is not None

    kept = context._last_good().keys()
    assert len(kept) == context.LAST_GOOD_ENTRIES
    assert kept == [("signal_by_operator", slot) for slot in slots[-context.LAST_GOOD_ENTRIES:]]


def test_a_failed_refresh_keeps_the_last_good_result_of_a_recently_used_panel(lake: FakeLake) -> None:
    hour = timedelta(hours=1)
    first = context.query("gps_by_provider", NOW - hour, NOW, slot="1 h")
    for i in range(context.LAST_GOOD_ENTRIES - 1):  # fill the rest, then use the first panel again
        context.query("signal_by_operator", NOW - hour, NOW, slot=f"custom-{i}")
    context._last_good().get(("gps_by_provider", "1 h"))
    context.query("signal_by_operator", NOW - hour, NOW, slot="one more")  # drops the least recently used

    lake.failing = True
    st.cache_data.clear()
    kept = context.query("gps_by_provider", NOW - hour, NOW, slot="1 h")
    dropped = context.query("signal_by_operator", NOW - hour, NOW, slot="custom-0")

    assert kept.result is first.result and kept.error == "query gps_by_provider failed"
    assert dropped.result is None and dropped.error == "query signal_by_operator failed"


# --- the range ------------------------------------------------------------------------------------

def test_a_range_up_to_the_limit_is_left_as_it_is() -> None:
    since, until = NOW - context.MAX_RANGE, NOW.replace(microsecond=0)
    assert context.clip_range(since, until, NOW) == (since, until, None)
    assert context.clip_range(None, until, NOW) == (None, until, None)


def test_a_longer_range_keeps_its_latest_days_up_to_now_with_a_notice() -> None:
    since, until = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 6, 1, tzinfo=UTC)  # now is inside it
    start, end, notice = context.clip_range(since, until, NOW)

    assert start is not None and end == context._until(NOW)  # the data ends now: no empty stretch of future
    assert end - start == context.MAX_RANGE
    assert notice is not None
    assert "limited to 31 days" in notice and "151 days" in notice
    assert f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC" in notice


def test_a_longer_range_in_the_past_keeps_its_end() -> None:
    since, until = datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 6, 1, tzinfo=UTC)
    start, end, notice = context.clip_range(since, until, NOW)
    assert (start, end) == (until - context.MAX_RANGE, until)
    assert notice


def test_the_backend_is_never_asked_for_more_than_the_limit(lake: FakeLake) -> None:
    since, until = datetime.now(UTC) - timedelta(days=400), datetime.now(UTC)

    panel = context.query("signal_by_operator", since, until, slot="custom")

    [(_, asked_since, asked_until)] = lake.calls
    assert asked_since is not None and asked_until is not None
    assert asked_until - asked_since == context.MAX_RANGE
    assert panel.notice is not None and "limited to 31 days" in panel.notice
    assert panel.result is not None


# --- equal ranges, one query ----------------------------------------------------------------------

def test_the_same_instants_written_differently_share_one_query(lake: FakeLake) -> None:
    since, until = datetime(2026, 3, 10, 10, 0, tzinfo=UTC), datetime(2026, 3, 10, 11, 0, tzinfo=UTC)
    madrid = timezone(timedelta(hours=1))
    for a, b in [(since, until), (since.astimezone(madrid), until.astimezone(madrid)),
                 (since.replace(tzinfo=None), until.replace(tzinfo=None)),
                 (since + timedelta(microseconds=300), until - timedelta(microseconds=300))]:
        context.query("signal_by_operator", a, b, slot="custom")

    assert lake.calls == [("signal_by_operator", since, until)]
