"""A view is its URL: the live page's range and filters and the wall's views and range come from the query
parameters and go back into them (AppTest's query_params are the URL the browser shows)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest
from streamlit.runtime.state.query_params import QueryParams
from streamlit.testing.v1 import AppTest

from tests.harness import open_page, page_text
from tests.pages.seed import seed

LIVE = "pages/live_aggregations.py"


def table_with(at: AppTest, column: str):  # type: ignore[no-untyped-def]
    return next(d.value for d in at.dataframe if column in d.value.columns)


def shown(at: AppTest) -> tuple[str, list[str], list[str]]:
    """Return the range, operators and providers the live page's widgets show."""
    return (at.segmented_control(key="range").value, at.multiselect(key="operators").value,
            at.multiselect(key="providers").value)


@pytest.fixture
def url_writes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record each URL the scripts send the browser (each one is a history entry there)."""
    sent: list[str] = []
    original = QueryParams._send_query_param_msg

    def recording(self: QueryParams) -> None:
        sent.append(str(self))
        original(self)

    monkeypatch.setattr(QueryParams, "_send_query_param_msg", recording)
    return sent


def test_a_shared_url_opens_the_same_range_and_filters(clean_environ: Path, url_writes: list[str]) -> None:
    seed(clean_environ)
    at = open_page(LIVE, range="6h", operator=["Yoigo", "Movistar"], provider="gps")
    assert not at.exception
    assert shown(at) == ("6 h", ["Yoigo", "Movistar"], ["gps"])
    assert table_with(at, "records")["records"].sum() == 14  # the 3 h window is in: 6 h it is
    assert at.query_params == {"range": "6h", "operator": ["Yoigo", "Movistar"], "provider": "gps"}
    assert url_writes == []  # opening a link writes nothing: no history entry on top of it


def test_a_shared_custom_range_opens_with_its_start_and_end(clean_environ: Path) -> None:
    now = seed(clean_environ)
    start = (now - timedelta(hours=1)).replace(second=0, microsecond=0)
    at = open_page(LIVE, range="custom", **{"from": start.strftime("%Y-%m-%dT%H:%MZ"),
                                            "to": (now + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%MZ")})
    assert not at.exception
    assert at.segmented_control(key="range").value == "Custom"
    assert (at.date_input(key="custom_from_day").value, at.time_input(key="custom_from_time").value) == (
        start.date(), time(start.hour, start.minute))
    assert table_with(at, "records")["records"].sum() == 6  # the windows 2 and 30 minutes ago


def test_changing_the_view_writes_the_url_once_per_change(clean_environ: Path, url_writes: list[str]) -> None:
    seed(clean_environ)
    at = open_page(LIVE)
    assert at.query_params == {} and url_writes == []  # the default view: a clean URL
    at.segmented_control(key="range").set_value("24 h").run()
    assert at.query_params == {"range": "24h"}
    at.multiselect(key="operators").set_value(["Yoigo"]).run()
    assert at.query_params == {"range": "24h", "operator": "Yoigo"}
    at.run()  # a rerun that changes nothing writes nothing
    assert len(url_writes) == 2

    at.segmented_control(key="range").set_value("Custom").run()
    today = datetime.now(UTC).date()
    assert at.query_params == {"range": "custom", "from": f"{today:%Y-%m-%d}T00:00Z",
                               "to": f"{today + timedelta(days=1):%Y-%m-%d}T00:00Z", "operator": "Yoigo"}
    at.date_input(key="custom_from_day").set_value(date(2026, 11, 30)).run()
    assert at.query_params["from"] == "2026-11-30T00:00Z"


def test_back_shows_the_previous_view_without_a_new_url(clean_environ: Path, url_writes: list[str]) -> None:
    seed(clean_environ)
    at = open_page(LIVE, range="6h")
    at.segmented_control(key="range").set_value("15 min").run()
    at.multiselect(key="providers").set_value(["network"]).run()
    assert at.query_params == {"range": "15m", "provider": "network"}
    written = len(url_writes)

    # Back: the browser reruns the page with the previous entry's URL, and the page follows it.
    at.query_params = {"range": "15m"}
    at.run()
    assert shown(at) == ("15 min", [], [])
    at.query_params = {"range": "6h"}
    at.run()
    assert shown(at) == ("6 h", [], [])
    assert table_with(at, "records")["records"].sum() == 14
    # Forward again.
    at.query_params = {"range": "15m", "provider": "network"}
    at.run()
    assert shown(at) == ("15 min", [], ["network"])
    assert len(url_writes) == written  # following the URL writes nothing: the history stays as it was


def test_bad_values_in_a_link_get_a_notice_and_the_default(clean_environ: Path) -> None:
    seed(clean_environ)
    at = open_page(LIVE, range="2d", operator=["Yoigo", "Acme"])
    assert not at.exception and not at.error
    assert shown(at) == ("1 h", ["Yoigo"], [])
    text = page_text(at)
    assert "The link's range '2d' is not one of 15m, 1h, 6h, 24h, custom: showing 1 h." in text
    assert "The link's operator 'Acme': none in the last 24 h, left out." in text

    at.segmented_control(key="range").set_value("6 h").run()
    assert at.query_params == {"range": "6h", "operator": "Yoigo"}  # the link made good
    assert "The link's" not in page_text(at)


def test_a_wall_url_names_its_views_and_range(clean_environ: Path) -> None:
    seed(clean_environ)
    at = open_page(kiosk="1", views="coverage", range="6h")
    assert not at.exception
    titles = [m.value for m in at.markdown if m.value.startswith("### ")]
    assert titles == ["### Coverage · last 6 h", "### GPS precision and satellites · last 6 h"]
    assert "next view in" not in page_text(at)  # one view: nothing to rotate to


def test_a_wall_url_with_bad_views_gets_all_views_and_a_notice(clean_environ: Path) -> None:
    seed(clean_environ)
    at = open_page(kiosk="1", views="kpis,map", range="custom")
    assert not at.exception
    text = page_text(at)
    assert "The link's views 'kpis', 'map': unknown, the wall's are signal, coverage, status." in text
    assert "The link's range 'custom' is not one of 15m, 1h, 6h, 24h: showing 1 h." in text
    assert "Signal · data as of" in text and "next view in" in text
    titles = [m.value for m in at.markdown if m.value.startswith("### ")]
    assert titles == ["### Signal per minute · last 1 h", "### Average signal by operator · last 1 h"]
