"""URL parameters of a view: parsed with a notice per bad value (which gets its default), and written back."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from core.views import CUSTOM, LiveView, WallView, default_custom, live_params, parse_live, parse_wall

OPERATORS = ("Movistar", "Orange", "Yoigo")
PROVIDERS = ("fused", "gps", "network")
CUSTOM_DEFAULT = default_custom(date(2026, 12, 6))
WALL_VIEWS = ("signal", "coverage", "status")


def live(**params: list[str]) -> tuple[LiveView, list[str]]:
    return parse_live(params, operators=OPERATORS, providers=PROVIDERS, custom=CUSTOM_DEFAULT)


def test_no_parameters_is_the_default_view_and_a_clean_url() -> None:
    assert live() == (LiveView("1 h"), [])
    assert live_params(LiveView()) == {}
    assert default_custom(date(2026, 12, 6)) == (datetime(2026, 12, 6, tzinfo=UTC), datetime(2026, 12, 7, tzinfo=UTC))


@pytest.mark.parametrize(("token", "label"), [("15m", "15 min"), ("1h", "1 h"), ("6h", "6 h"), ("24h", "24 h"),
                                              ("24H", "24 h"), ("15 min", "15 min"), (" 6h ", "6 h")])
def test_each_preset_range_by_its_token_or_label(token: str, label: str) -> None:
    assert live(range=[token]) == (LiveView(label), [])


def test_a_view_round_trips_through_its_parameters() -> None:
    shared = LiveView(CUSTOM, datetime(2026, 12, 1, 8, 0, tzinfo=UTC), datetime(2026, 12, 1, 20, 30, tzinfo=UTC),
                      ("Yoigo", "Movistar"), ("gps",))
    params = live_params(shared)
    assert params == {"range": ["custom"], "from": ["2026-12-01T08:00Z"], "to": ["2026-12-01T20:30Z"],
                      "operator": ["Yoigo", "Movistar"], "provider": ["gps"]}
    assert live(**params) == (shared, [])
    six_hours = LiveView("6 h", operators=("Orange",))
    assert live_params(six_hours) == {"range": ["6h"], "operator": ["Orange"]}
    assert live(**live_params(six_hours)) == (six_hours, [])


def test_custom_times_with_an_offset_or_seconds_are_utc_whole_minutes() -> None:
    view, notices = live(range=["custom"], **{"from": ["2026-12-01T09:00:45+01:00"], "to": ["2026-12-01 12:00"]})
    assert (view.start, view.end, notices) == (datetime(2026, 12, 1, 8, 0, tzinfo=UTC),
                                               datetime(2026, 12, 1, 12, 0, tzinfo=UTC), [])


def test_a_bad_range_is_the_default_with_a_notice() -> None:
    view, notices = live(range=["2d"])
    assert view == LiveView("1 h")
    assert notices == ["The link's range '2d' is not one of 15m, 1h, 6h, 24h, custom: showing 1 h."]


def test_bad_custom_times_get_the_default_custom_range_with_a_notice() -> None:
    view, notices = live(range=["custom"], **{"from": ["yesterday"]})
    assert (view.range, view.start, view.end) == (CUSTOM, *CUSTOM_DEFAULT)
    assert notices == ["The link's from 'yesterday' is not a time like 2026-12-01T08:00Z (UTC)."]

    view, notices = live(range=["custom"], **{"from": ["2026-12-02T10:00Z"], "to": ["2026-12-02T09:00Z"]})
    assert (view.start, view.end) == CUSTOM_DEFAULT
    assert notices == ["The link's to (2026-12-02 09:00) is not after its from (2026-12-02 10:00): showing "
                       "2026-12-06 00:00 to 2026-12-07 00:00 UTC."]


def test_custom_times_without_range_custom_are_noted_not_used() -> None:
    view, notices = live(range=["6h"], to=["2026-12-02T09:00Z"])
    assert view == LiveView("6 h")
    assert notices == ["The link's from and to apply to range=custom only: showing the last 6 h."]


def test_unknown_operators_and_providers_are_left_out_with_a_notice() -> None:
    view, notices = live(operator=["Yoigo", "Acme", "Yoigo", ""], provider=["satellite"])
    assert (view.operators, view.providers) == (("Yoigo",), ())
    assert notices == ["The link's operator 'Acme': none in the last 24 h, left out.",
                       "The link's provider 'satellite': none in the last 24 h, left out."]


def test_the_wall_names_its_views_and_range() -> None:
    assert parse_wall({}, WALL_VIEWS) == (WallView(WALL_VIEWS, "1 h"), [])
    assert parse_wall({"views": ["coverage,signal"], "range": ["6h"]}, WALL_VIEWS) == (
        WallView(("coverage", "signal"), "6 h"), [])
    assert parse_wall({"views": ["status", "Signal"]}, WALL_VIEWS)[0].views == ("status", "signal")  # repeated key


def test_a_wall_with_bad_views_or_range_gets_the_defaults_and_notices() -> None:
    wall, notices = parse_wall({"views": ["kpis,map"], "range": ["custom"]}, WALL_VIEWS)
    assert wall == WallView(WALL_VIEWS, "1 h")
    assert notices == ["The link's range 'custom' is not one of 15m, 1h, 6h, 24h: showing 1 h.",
                       "The link's views 'kpis', 'map': unknown, the wall's are signal, coverage, status."]
    wall, notices = parse_wall({"views": ["map,coverage"]}, WALL_VIEWS)
    assert wall.views == ("coverage",) and len(notices) == 1
