"""Tests for core.charts: the figures' traces, colours, axes and annotations."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
import pytest

from core import charts
from core.domain import BatchProgress

T0 = datetime(2026, 11, 28, 10, 0)


def by_operator() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "operator": ["Orange", "Movistar", "Yoigo"],
            "avg_signal": [12.5, 20.0, 7.25],
            "samples": [40, 100, 3],
            "min_signal": [2, 5, 1],
            "max_signal": [30, 31, 14],
        }
    )


def per_minute(tz: tzinfo | None = UTC) -> pd.DataFrame:
    minutes = [T0.replace(tzinfo=tz) + timedelta(minutes=i) for i in range(4)]
    return pd.DataFrame(
        {
            "minute": minutes * 2,
            "operator": ["Movistar"] * 4 + ["Vodafone"] * 4,
            "avg_signal": [10.0, 11.0, 12.0, 13.0, 20.0, 21.0, 22.0, 23.0],
            "samples": [1, 2, 3, 4, 5, 6, 7, 8],
        }
    )


def gps() -> pd.DataFrame:
    return pd.DataFrame(
        {"provider": ["network", "gps"], "avg_precision": [500.0, 8.5], "avg_satellites": [0.0, 9.5],
         "samples": [10, 90]}
    )


def statuses() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "postal_code": ["28001", "28001", "28002", "28003", "28003"],
            "status": ["0", "1", "0", "0", "3"],
            "description": ["STATE_IN_SERVICE", "STATE_OUT_OF_SERVICE", "STATE_IN_SERVICE",
                            "STATE_IN_SERVICE", "STATE_POWER_OFF"],
            "records": [5, 3, 20, 1, 1],
        }
    )


def raw_cells() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "lat_cell": [40.41, 40.41, 40.42, 40.43],
            "lon_cell": [-3.70, -3.70, -3.70, -3.69],
            "operator": ["Movistar", "Orange", "Orange", "Yoigo"],
            "signal_sum": [300.0, 10.0, 62.0, 0.0],
            "signal_count": [10, 10, 2, 0],
            "records": [12, 11, 2, 4],
        }
    )


def batch(batch_id: int, minute: int, duration_ms: int = 1500) -> BatchProgress:
    return BatchProgress(
        batch_id=batch_id, time=T0.replace(tzinfo=UTC) + timedelta(minutes=minute), input_rows=100,
        aggregated_rows=90, quarantined_rows=5, late_rows=5, duplicate_rows=0,
        input_rows_per_second=50.0 + batch_id, processed_rows_per_second=40.0 + batch_id,
        duration_ms=duration_ms, watermark=None,
    )


def annotation_texts(fig: go.Figure) -> list[str]:
    return [annotation.text for annotation in fig.layout.annotations]


def axis_titles(fig: go.Figure) -> set[str]:
    layout = fig.to_dict()["layout"]
    return {value["title"]["text"] for key, value in layout.items() if key.startswith(("xaxis", "yaxis"))
            and "title" in value}


def empty_of(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.iloc[0:0]


# --- colours -------------------------------------------------------------------------------------


def test_operator_colors_are_fixed_for_known_operators_and_grey_for_unknown() -> None:
    colors = charts.operator_colors(["Movistar", "Vodafone", "Orange", "unknown"])

    assert colors == {"Movistar": "#019df4", "Vodafone": "#e60000", "Orange": "#ff7900", "unknown": "#9e9e9e"}


def test_operator_color_does_not_depend_on_the_other_operators_or_their_order() -> None:
    first = charts.operator_colors(["Yoigo", "Acme Telecom", "Movistar"])
    second = charts.operator_colors(["Movistar", "Zeta Mobile", "Acme Telecom", "Orange", "Yoigo"])

    for name in ("Yoigo", "Acme Telecom", "Movistar"):
        assert first[name] == second[name]


def test_operator_color_ignores_the_spelling_of_a_name() -> None:
    assert charts.operator_color(" MOVISTAR ") == charts.operator_color("Movistar")
    assert charts.operator_color("") == charts.operator_color("unknown")


def test_unknown_names_get_a_stable_palette_colour_from_a_hash() -> None:
    names = [f"Carrier {i}" for i in range(40)]
    colors = charts.operator_colors(names)

    assert set(colors.values()) <= set(charts.PALETTE)
    assert len(set(colors.values())) > 1  # the hash spreads names over the palette
    # sha256 of the canonical lower-case name, fixed here so a change to the hash shows up.
    digest = hashlib.sha256(b"acme telecom").digest()
    assert charts.operator_color("Acme Telecom") == charts.PALETTE[int.from_bytes(digest[:8], "big") % 10]


def test_same_operator_has_the_same_colour_in_the_bar_and_the_line_chart() -> None:
    bar = charts.signal_by_operator_bar(by_operator())
    line = charts.signal_per_minute_line(per_minute().replace({"Vodafone": "Orange"}))

    bar_colors = dict(zip(bar.data[0].x, bar.data[0].marker.color, strict=True))
    line_colors = {trace.name: trace.line.color for trace in line.data}
    assert bar_colors["Movistar"] == line_colors["Movistar"] == charts.operator_color("Movistar")
    assert bar_colors["Orange"] == line_colors["Orange"] == charts.operator_color("Orange")


# --- signal by operator --------------------------------------------------------------------------


def test_signal_bar_is_sorted_by_average_signal_descending() -> None:
    fig = charts.signal_by_operator_bar(by_operator())

    (bars,) = fig.data
    assert list(bars.x) == ["Movistar", "Orange", "Yoigo"]
    assert list(bars.y) == [20.0, 12.5, 7.25]
    assert list(bars.marker.color) == [charts.operator_color(name) for name in ("Movistar", "Orange", "Yoigo")]


def test_signal_bar_hover_shows_samples_min_and_max() -> None:
    (bars,) = charts.signal_by_operator_bar(by_operator()).data

    assert [list(row) for row in bars.customdata] == [[100, 5, 31], [40, 2, 30], [3, 1, 14]]
    for field in ("Samples %{customdata[0]", "Min %{customdata[1]", "max %{customdata[2]"):
        assert field in bars.hovertemplate


def test_records_without_an_operator_are_not_ranked_but_noted_above_the_bars() -> None:
    frame = pd.concat([by_operator(), pd.DataFrame({"operator": ["unknown"], "avg_signal": [5.0], "samples": [47],
                                                    "min_signal": [0], "max_signal": [9]})], ignore_index=True)
    fig = charts.signal_by_operator_bar(frame)

    assert list(fig.data[0].x) == ["Movistar", "Orange", "Yoigo"]  # unknown (5.0) would rank last, it is left out
    (note,) = [a for a in fig.layout.annotations if a.name == "unranked"]
    assert note.text == ("Not ranked: 47 samples with no operator<br>(none reported, or no service), average 5.0")
    assert (note.yref, note.y, note.yanchor) == ("paper", 1, "bottom")
    assert fig.layout.margin.t == charts.NOTE_MARGIN
    assert charts.unranked_note(by_operator()) is None
    assert not [a for a in charts.signal_by_operator_bar(by_operator()).layout.annotations if a.name == "unranked"]


def test_only_records_without_an_operator_give_no_bars_and_the_note_not_no_data() -> None:
    frame = pd.DataFrame({"operator": ["unknown"], "avg_signal": [float("nan")], "samples": [0],
                          "min_signal": [None], "max_signal": [None]})
    fig = charts.signal_by_operator_bar(frame)

    assert not fig.data
    assert annotation_texts(fig) == [
        "Not ranked: 0 samples with no operator<br>(none reported, or no service), no signal reading"]


def test_signal_bar_axis_titles_say_the_signal_is_a_raw_level() -> None:
    fig = charts.signal_by_operator_bar(by_operator())

    assert fig.layout.yaxis.title.text == "Average signal level (raw, 0-31)"
    assert tuple(fig.layout.yaxis.range) == (0, 31)
    assert fig.layout.xaxis.title.text == "Operator"


def by_operator_compared() -> pd.DataFrame:
    """A signal_by_operator_compared frame: Yoigo had no rows the hour before, Vodafone only a day earlier."""
    return pd.DataFrame({
        "operator": ["Movistar", "Yoigo", "Vodafone"],
        "avg_signal": [20.0, 10.0, None], "previous_avg_signal": [17.5, None, None],
        "day_before_avg_signal": [21.25, 9.0, 14.0],
        "samples": [100, 3, None], "previous_samples": [40, None, None], "day_before_samples": [80, 2, 5],
        "min_signal": [4.0, 7.0, None], "max_signal": [31.0, 12.0, None],
    })


def test_a_compared_signal_bar_marks_each_period_and_hovers_both_changes() -> None:
    fig = charts.signal_by_operator_bar(by_operator_compared(), period="1 h")

    bars, previous, day_before = fig.data
    assert list(bars.x) == list(previous.x) == list(day_before.x) == ["Movistar", "Yoigo", "Vodafone"]
    assert [list(row) for row in bars.customdata] == [["100", "+2.5", "-1.2", "4", "31"],
                                                      ["3", "no data", "+1.0", "7", "12"],
                                                      ["none", "no data", "no data", "none", "none"]]
    assert "Min %{customdata[3]} / max %{customdata[4]}" in bars.hovertemplate
    assert "vs previous 1 h: %{customdata[1]}" in bars.hovertemplate
    assert "vs same 1 h a day earlier: %{customdata[2]}" in bars.hovertemplate
    # A period without rows has no marker (NaN is not drawn), never one at 0.
    assert list(previous.y[:1]) == [17.5] and all(math.isnan(y) for y in previous.y[1:])
    assert list(day_before.y) == [21.25, 9.0, 14.0]
    assert (previous.marker.symbol, day_before.marker.symbol) == ("line-ew-open", "diamond-open")
    assert fig.layout.showlegend is False  # the caption under the chart says what the markers are
    assert "previous 1 h" in charts.comparison_caption("1 h")


def test_an_operator_with_no_operator_only_earlier_adds_no_note() -> None:
    frame = pd.concat([by_operator_compared(), pd.DataFrame({
        "operator": ["unknown"], "avg_signal": [None], "previous_avg_signal": [5.0], "day_before_avg_signal": [None],
        "samples": [None], "previous_samples": [7], "day_before_samples": [None]})], ignore_index=True)

    fig = charts.signal_by_operator_bar(frame, period="1 h")
    assert "unknown" not in list(fig.data[0].x)
    assert charts.unranked_note(frame) is None


# --- signal per minute ---------------------------------------------------------------------------


def provisional_minutes(fig: go.Figure) -> dict[str, set[datetime]]:
    marked: dict[str, set[datetime]] = {}
    for trace in fig.data:
        if trace.meta["provisional"]:
            operator = trace.legendgroup
            points = zip(trace.x, trace.customdata, strict=True)
            marked[operator] = {x for x, (_, state) in points if state == "provisional"}
    return marked


def final_minutes(fig: go.Figure) -> dict[str, set[datetime]]:
    return {trace.legendgroup: set(trace.x) for trace in fig.data if not trace.meta["provisional"]}


def test_windows_ending_after_the_watermark_are_provisional() -> None:
    # Windows end at 10:01, 10:02, 10:03, 10:04; with the watermark at 10:02 the last two are open.
    fig = charts.signal_per_minute_line(per_minute(), watermark=T0.replace(tzinfo=UTC) + timedelta(minutes=2))

    late = {T0 + timedelta(minutes=2), T0 + timedelta(minutes=3)}
    on_time = {T0, T0 + timedelta(minutes=1)}
    assert provisional_minutes(fig) == {"Movistar": late, "Vodafone": late}
    assert final_minutes(fig) == {"Movistar": on_time, "Vodafone": on_time}
    dashed = [trace for trace in fig.data if trace.meta["provisional"]]
    assert {trace.line.dash for trace in dashed} == {"dash"}
    assert all(trace.line.dash is None for trace in fig.data if not trace.meta["provisional"])


def test_provisional_line_starts_at_the_last_final_point_without_a_marker() -> None:
    fig = charts.signal_per_minute_line(per_minute(), watermark=T0 + timedelta(minutes=2))

    dashed = next(trace for trace in fig.data if trace.meta["provisional"] and trace.legendgroup == "Movistar")
    assert list(dashed.x) == [T0 + timedelta(minutes=i) for i in (1, 2, 3)]
    assert list(dashed.y) == [11.0, 12.0, 13.0]
    assert list(dashed.marker.size) == [0, 8, 8]


def test_provisional_region_is_shaded_from_the_watermark_to_the_last_window_end() -> None:
    watermark = T0 + timedelta(minutes=2, seconds=30)
    fig = charts.signal_per_minute_line(per_minute(), watermark=watermark)

    (rect,) = [shape for shape in fig.layout.shapes if shape.type == "rect"]
    assert (rect.x0, rect.x1) == (watermark, T0 + timedelta(minutes=4))
    assert charts.PROVISIONAL in annotation_texts(fig)
    assert provisional_minutes(fig)["Movistar"] == {T0 + timedelta(minutes=2), T0 + timedelta(minutes=3)}


def test_nothing_is_provisional_without_a_watermark_or_once_it_passed_every_window() -> None:
    for watermark in (None, T0 + timedelta(minutes=4)):
        fig = charts.signal_per_minute_line(per_minute(), watermark=watermark)

        assert provisional_minutes(fig) == {}
        assert final_minutes(fig)["Movistar"] == {T0 + timedelta(minutes=i) for i in range(4)}
        assert not fig.layout.shapes
        assert charts.PROVISIONAL not in annotation_texts(fig)


def test_every_window_provisional_keeps_the_operator_in_the_legend() -> None:
    fig = charts.signal_per_minute_line(per_minute(), watermark=T0 - timedelta(hours=1))

    assert all(trace.meta["provisional"] and trace.showlegend for trace in fig.data)
    (rect,) = fig.layout.shapes
    assert rect.x0 == T0  # not stretched back to a watermark far before the data


def test_naive_and_aware_minutes_give_the_same_utc_points() -> None:
    from zoneinfo import ZoneInfo

    madrid = per_minute().assign(minute=lambda f: f["minute"].dt.tz_convert(ZoneInfo("Europe/Madrid")))
    watermark = datetime(2026, 11, 28, 11, 2, tzinfo=ZoneInfo("Europe/Madrid"))  # 10:02 UTC
    naive = charts.signal_per_minute_line(per_minute(tz=None), watermark=T0 + timedelta(minutes=2))
    aware = charts.signal_per_minute_line(madrid, watermark=watermark)

    assert [list(trace.x) for trace in naive.data] == [list(trace.x) for trace in aware.data]
    assert all(x.tzinfo is None and x.minute < 4 and x.hour == 10 for trace in aware.data for x in trace.x)


def test_replay_marks_are_dotted_lines_with_numbers_above_the_plot_and_their_labels_on_hover() -> None:
    start = datetime(2026, 11, 28, 10, 1, tzinfo=UTC)
    fig = charts.signal_per_minute_line(per_minute(), annotations=[(start, "replay started"), (T0, "stopped")])

    lines = [shape for shape in fig.layout.shapes if shape.type == "line"]
    assert [(line.x0, line.x1, line.line.dash) for line in lines] == [
        (T0, T0, "dot"), (T0 + timedelta(minutes=1), T0 + timedelta(minutes=1), "dot")]  # oldest first
    marks = [a for a in fig.layout.annotations if a.name and a.name.startswith("mark")]
    assert [(a.text, a.hovertext, a.x) for a in marks] == [
        ("1", "stopped", T0), ("2", "replay started", T0 + timedelta(minutes=1))]
    # Above the plot (y = 1 of the paper, anchored at the bottom), where no line, tick or legend is.
    assert all((a.yref, a.y, a.yanchor) == ("paper", 1, "bottom") for a in marks)
    assert fig.layout.margin.t == charts.MARGIN_TOP + charts.MARK_ROW_PX
    assert charts.marks_caption([(start, "replay started"), (T0, "stopped")]) == (
        "Dotted lines: 1 stopped (10:00:00 UTC) · 2 replay started (10:01:00 UTC)")
    assert charts.marks_caption([]) is None


def test_replay_marks_close_together_take_rows_of_their_own_and_past_three_keep_only_their_line() -> None:
    # Over 4 minutes of data, marks 2 s apart would touch (MARK_GAP is 9.6 s): each takes the next row, up to
    # MARK_ROWS.
    crowd = [(T0 + timedelta(minutes=2, seconds=2 * i), f"replay {i}") for i in range(5)]
    apart = [(T0, "early"), (T0 + timedelta(minutes=4), "late")]
    fig = charts.signal_per_minute_line(per_minute(), annotations=[*crowd, *apart])

    marks = {a.hovertext: a for a in fig.layout.annotations if a.name and a.name.startswith("mark")}
    rows = [(marks[label].yshift - 2) // charts.MARK_ROW_PX for label in ("replay 0", "replay 1", "replay 2")]
    assert rows == [0, 1, 2]
    assert "replay 3" not in marks and "replay 4" not in marks  # no fourth row
    assert len([shape for shape in fig.layout.shapes if shape.type == "line"]) == 7  # every line is drawn
    assert marks["early"].yshift == marks["late"].yshift == 2  # far apart: the first row
    assert fig.layout.margin.t == charts.MARGIN_TOP + charts.MARK_ROWS * charts.MARK_ROW_PX


def test_per_minute_axes_have_titles_with_units() -> None:
    fig = charts.signal_per_minute_line(per_minute())

    assert fig.layout.xaxis.title.text == "Event time (UTC)"
    assert fig.layout.yaxis.title.text == "Average signal level (raw, 0-31)"


# --- GPS and status ------------------------------------------------------------------------------


def test_gps_bars_are_two_subplots_with_precision_in_metres_and_satellites() -> None:
    fig = charts.gps_by_provider_bars(gps())

    precision, satellites = fig.data
    assert (precision.xaxis, satellites.xaxis) == ("x", "x2")
    assert list(precision.x) == ["gps", "network"]  # most samples first
    assert list(precision.y) == [8.5, 500.0]
    assert list(satellites.y) == [9.5, 0.0]
    assert [row[0] for row in precision.customdata] == [90, 10]
    assert fig.layout.yaxis.title.text == "Average precision (m)"
    assert fig.layout.yaxis2.title.text == "Average satellites (count)"


def test_status_bars_stack_descriptions_for_the_top_postal_codes() -> None:
    fig = charts.status_stacked_bar(statuses(), top_n=2)

    assert fig.layout.barmode == "stack"
    stacks = {trace.name: dict(zip(trace.x, trace.y, strict=True)) for trace in fig.data}
    # 28002 (20 records) and 28001 (8) are the top two; 28003 (2) is left out.
    assert stacks == {"STATE_IN_SERVICE": {"28002": 20, "28001": 5}, "STATE_OUT_OF_SERVICE": {"28001": 3}}
    assert list(fig.layout.xaxis.categoryarray) == ["28002", "28001"]
    assert fig.layout.xaxis.type == "category"  # postal codes are labels, not numbers
    assert fig.data[0].marker.color == charts.STATUS_COLORS["STATE_IN_SERVICE"]


def test_status_bars_reject_a_top_n_below_one() -> None:
    with pytest.raises(ValueError, match="top_n"):
        charts.status_stacked_bar(statuses(), top_n=0)


# --- coverage cells and map ----------------------------------------------------------------------


def test_combine_cells_divides_the_sum_of_sums_by_the_sum_of_counts() -> None:
    cells = charts.combine_cells(raw_cells())

    expected = pd.DataFrame(
        {
            "lat_cell": [40.41, 40.42, 40.43],
            "lon_cell": [-3.70, -3.70, -3.69],
            "avg_signal": [310.0 / 20, 31.0, math.nan],  # not (30 + 1) / 2
            "samples": [20, 2, 0],
            "records": [23, 2, 4],
        }
    )
    pd.testing.assert_frame_equal(cells, expected)


def test_combine_cells_keeps_only_the_chosen_operators() -> None:
    cells = charts.combine_cells(raw_cells(), operators=["Orange"])

    assert cells[["lat_cell", "avg_signal", "samples", "records"]].values.tolist() == [
        [40.41, 1.0, 10, 11],
        [40.42, 31.0, 2, 2],
    ]
    assert charts.combine_cells(raw_cells(), operators=[]).empty


def test_combine_cells_of_nothing_is_an_empty_frame_with_the_columns() -> None:
    cells = charts.combine_cells(empty_of(raw_cells()))

    assert cells.empty
    assert list(cells.columns) == ["lat_cell", "lon_cell", "avg_signal", "samples", "records"]
    assert cells["samples"].dtype == "int64"


def test_coverage_map_draws_squares_on_plain_axes_without_map_tiles() -> None:
    fig = charts.coverage_map(charts.combine_cells(raw_cells()), cell_degrees=0.01)

    assert {trace.type for trace in fig.data} == {"scatter"}
    layout = fig.to_dict()["layout"]
    assert not any(key.startswith(("geo", "mapbox", "map")) for key in layout)
    assert fig.layout.yaxis.scaleanchor == "x"
    assert fig.layout.yaxis.scaleratio == pytest.approx(1 / math.cos(math.radians(40.425)), rel=1e-3)
    assert fig.layout.xaxis.title.text == "Longitude (degrees east)"
    assert fig.layout.yaxis.title.text == "Latitude (degrees north)"


def test_coverage_map_colours_each_cell_by_its_signal_level() -> None:
    fig = charts.coverage_map(charts.combine_cells(raw_cells()), cell_degrees=0.01)

    squares = {trace.meta["signal_level"]: trace for trace in fig.data if "signal_level" in trace.meta}
    assert set(squares) == {15, 30, -1}  # 15.5, 31 (top level), no reading
    weak, strong = squares[15], squares[30]
    assert weak.fill == "toself"
    # The first square of the 15.5 cell: its south-west corner and the rest of its outline.
    assert list(weak.x[:5]) == pytest.approx([-3.70, -3.69, -3.69, -3.70, -3.70])
    assert list(weak.y[:5]) == pytest.approx([40.41, 40.41, 40.42, 40.42, 40.41])
    assert strong.fillcolor == charts.level_color(30.5)
    red, green = (_rgb(charts.level_color(v)) for v in (0.5, 30.5))
    assert red[0] > red[1] and green[1] > green[0]
    assert squares[-1].fillcolor == charts.NO_READING_COLOR


def test_coverage_map_hover_has_records_and_samples_and_a_signal_colour_bar() -> None:
    fig = charts.coverage_map(charts.combine_cells(raw_cells()), cell_degrees=0.01)

    (hover,) = [trace for trace in fig.data if trace.meta.get("hover")]
    assert list(hover.x) == pytest.approx([-3.695, -3.695, -3.685])
    assert [row[:2].tolist() for row in hover.customdata] == [[20, 23], [2, 2], [0, 4]]
    assert list(hover.text) == ["15.5", "31.0", "no signal reading"]
    assert "Records %{customdata[1]" in hover.hovertemplate and "Samples %{customdata[0]" in hover.hovertemplate
    assert hover.marker.showscale and (hover.marker.cmin, hover.marker.cmax) == (0, 31)
    assert "raw, 0-31" in hover.marker.colorbar.title.text


def map_cells() -> pd.DataFrame:
    return charts.combine_cells(raw_cells())


def test_coverage_map_on_tiles_draws_each_cell_as_a_square_of_its_real_size() -> None:
    fig = charts.coverage_map(map_cells(), cell_degrees=0.01, tiles="carto")

    read, unread = fig.data
    assert (read.type, unread.type) == ("choroplethmap", "choroplethmap")
    squares = {feature["id"]: feature["geometry"]["coordinates"][0] for feature in read.geojson["features"]}
    assert list(read.locations) == list(squares) == ["0", "1"]
    assert squares["0"] == [[-3.70, 40.41], [-3.69, 40.41], [-3.69, 40.42], [-3.70, 40.42], [-3.70, 40.41]]
    assert squares["1"] == [[-3.70, 40.42], [-3.69, 40.42], [-3.69, 40.43], [-3.70, 40.43], [-3.70, 40.42]]
    assert list(read.z) == [15.5, 31.0]
    assert (read.zmin, read.zmax) == (0, 31)
    # Red at level 0, green at 31, as level_color gives the squares of the lon/lat view.
    low, high = (_rgb(color.replace(",", ", ")) for _, color in (read.colorscale[0], read.colorscale[-1]))
    assert (low, high) == (_rgb(charts.level_color(0)), _rgb(charts.level_color(31)))
    assert read.colorbar.title.text == "Signal level (raw, 0-31)"
    assert [row[:2].tolist() for row in read.customdata] == [[20, 23], [2, 2]]
    assert "Samples %{customdata[0]" in read.hovertemplate and "Records %{customdata[1]" in read.hovertemplate
    # The cell without a signal reading: grey, no colour bar of its own, said so on hover.
    assert list(unread.locations) == ["2"] and "Average signal no signal reading" in unread.hovertemplate
    assert unread.showscale is False and unread.colorscale[0][1] == charts.NO_READING_COLOR
    assert unread.geojson["features"][0]["geometry"]["coordinates"][0][0] == [-3.69, 40.43]


def test_coverage_map_base_maps_light_dark_and_any_tile_server() -> None:
    cells = map_cells()
    assert charts.coverage_map(cells, 0.01, tiles="carto").layout.map.style == "carto-positron"
    assert charts.coverage_map(cells, 0.01, tiles="carto", dark=True).layout.map.style == "carto-darkmatter"
    assert charts.coverage_map(cells, 0.01, tiles="osm").layout.map.style == "open-street-map"
    own = charts.coverage_map(cells, 0.01, tiles="https://tiles.example.com/{z}/{x}/{y}.png").layout.map
    assert own.style == "white-bg"
    raster = own.layers[0]
    assert (raster.sourcetype, list(raster.source), raster.below) == (
        "raster", ["https://tiles.example.com/{z}/{x}/{y}.png"], "traces")
    with pytest.raises(ValueError, match="tiles"):
        charts.coverage_map(cells, 0.01, tiles="google")
    # A refresh keeps the viewer's pan and zoom.
    assert charts.coverage_map(cells, 0.01, tiles="osm").layout.uirevision == "coverage"


def test_coverage_map_cells_too_small_to_see_are_dots_until_their_squares_are_big_enough() -> None:
    fig = charts.coverage_map(map_cells(), cell_degrees=0.01, tiles="osm")

    dots = [layer for layer in fig.layout.map.layers if layer.type == "circle"]
    centres = {tuple(point): layer.color for layer in dots for point in layer.source["geometry"]["coordinates"]}
    assert centres == {(-3.695, 40.415): charts.level_color(14), (-3.695, 40.425): charts.level_color(30),
                       (-3.685, 40.435): charts.NO_READING_COLOR}
    # Hidden from the zoom where a cell is DOT_PX wide: 0.01 degrees there is 360 / 512 / 2**zoom * DOT_PX.
    zoom = charts.dots_max_zoom(0.01)
    assert pytest.approx(360 / 512 / 2**zoom * charts.DOT_PX) == 0.01
    assert [layer.maxzoom for layer in dots] == pytest.approx([zoom] * len(dots))


def test_coverage_map_first_view_holds_every_cell() -> None:
    raw = pd.concat([raw_cells(), raw_cells().assign(lat_cell=41.38, lon_cell=2.17)], ignore_index=True)
    fig = charts.coverage_map(charts.combine_cells(raw), cell_degrees=0.01, tiles="osm")

    view = fig.layout.map
    # The MAP_WIDTH-wide map at that zoom, in degrees of longitude: Madrid's cells and Barcelona's fit in it.
    half_width = charts.MAP_WIDTH / 2 * 360 / (512 * 2**view.zoom)
    assert view.center.lon - half_width < -3.70 and view.center.lon + half_width > 2.18
    assert 40.41 < view.center.lat < 41.39
    assert charts.coverage_map(map_cells(), 0.01, tiles="osm").layout.map.zoom > view.zoom  # one block: closer


def test_coverage_map_on_tiles_says_no_data_for_no_cells() -> None:
    fig = charts.coverage_map(map_cells().iloc[0:0], 0.01, tiles="osm")

    assert not fig.data and annotation_texts(fig) == [charts.NO_DATA]
    fig.to_json()


def test_coverage_map_stays_small_and_fast_for_5000_cells() -> None:
    rng = np.random.default_rng(7)
    raw = pd.DataFrame(
        {
            "lat_cell": rng.integers(4000, 4100, 5000) / 100, "lon_cell": rng.integers(-400, -350, 5000) / 100,
            "operator": "Movistar", "signal_sum": rng.uniform(0, 3100, 5000),
            "signal_count": rng.integers(1, 100, 5000), "records": 100,
        }
    )
    cells = charts.combine_cells(raw)
    fig = charts.coverage_map(cells, cell_degrees=0.01)

    assert len(fig.data) <= 33  # one trace per signal level plus the hover markers, not one per cell
    on_tiles = charts.coverage_map(cells, cell_degrees=0.01, tiles="osm")
    assert len(on_tiles.data) <= 2 and len(on_tiles.layout.map.layers) <= 9  # not a trace or layer per cell
    assert len(on_tiles.to_json()) < 250 * len(cells)  # about what each square's corners and numbers take


# --- batches -------------------------------------------------------------------------------------


def test_batches_chart_has_rates_as_lines_and_durations_as_bars_on_a_second_axis() -> None:
    fig = charts.batches_chart([batch(2, 2, duration_ms=2500), batch(1, 1)])

    bars, incoming, processed = fig.data
    assert bars.type == "bar" and bars.yaxis == "y2"
    assert list(bars.y) == [1.5, 2.5]
    assert list(bars.x) == [T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)]  # sorted, naive UTC
    assert (incoming.name, list(incoming.y)) == ("Input rows/s", [51.0, 52.0])
    assert (processed.name, list(processed.y)) == ("Processed rows/s", [41.0, 42.0])
    assert incoming.yaxis == processed.yaxis == "y"
    assert fig.layout.yaxis.title.text == "Rows per second"
    assert fig.layout.yaxis2.title.text == "Batch duration (s)"
    assert fig.layout.xaxis.title.text == "Batch time (UTC)"


# --- every builder -------------------------------------------------------------------------------

BUILDERS: dict[str, Callable[..., go.Figure]] = {
    "signal_by_operator": lambda frame, **kw: charts.signal_by_operator_bar(frame, **kw),
    "signal_per_minute": lambda frame, **kw: charts.signal_per_minute_line(frame, watermark=T0, **kw),
    "gps_by_provider": lambda frame, **kw: charts.gps_by_provider_bars(frame, **kw),
    "status_by_postal_code": lambda frame, **kw: charts.status_stacked_bar(frame, **kw),
    "coverage": lambda frame, **kw: charts.coverage_map(charts.combine_cells(frame), 0.01, **kw),
    "batches": lambda frame, **kw: charts.batches_chart(frame, **kw),
}
SAMPLES: dict[str, Callable[[], pd.DataFrame]] = {
    "signal_by_operator": by_operator,
    "signal_per_minute": per_minute,
    "gps_by_provider": gps,
    "status_by_postal_code": statuses,
    "coverage": raw_cells,
}


@pytest.mark.parametrize("name", list(BUILDERS))
def test_every_builder_says_no_data_for_an_empty_input(name: str) -> None:
    empty = [] if name == "batches" else empty_of(SAMPLES[name]())

    fig = BUILDERS[name](empty)

    assert "No data in this time range" in annotation_texts(fig)
    assert not fig.data
    assert axis_titles(fig)  # the axes still say what would be shown
    fig.to_json()  # and it serialises


@pytest.mark.parametrize("name", list(BUILDERS))
def test_every_builder_styles_light_and_dark(name: str) -> None:
    data = [batch(1, 1)] if name == "batches" else SAMPLES[name]()

    light, dark = BUILDERS[name](data), BUILDERS[name](data, dark=True)

    assert light.layout.template == pio.templates["plotly_white"]
    assert dark.layout.template == pio.templates["plotly_dark"]
    assert dark.layout.font.size == 18 and light.layout.font.size is None
    for fig in (light, dark):
        assert fig.layout.paper_bgcolor == "rgba(0,0,0,0)"
        assert fig.layout.margin.l == fig.layout.margin.r == fig.layout.margin.b == 10
        assert "No data in this time range" not in annotation_texts(fig)
        assert fig.data


def _rgb(color: str) -> tuple[int, ...]:
    return tuple(int(part) for part in color.removeprefix("rgb(").removesuffix(")").split(","))
