"""Plotly figures for the console's panels, built from the named queries' result frames.

Every builder is a pure function (DataFrame or backend dataclasses in, `go.Figure` out) so pages only
draw what they get and tests can inspect the traces. The same operator keeps the same colour in every
chart; an empty frame gives a figure that says so instead of an error; `dark=True` is the wall display.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

from core.compare import DAY_BEFORE, PREVIOUS, change, missing
from core.config import tile_url_template
from core.domain import BatchProgress
from core.records import UNKNOWN, canonical_name

NO_DATA = "No data in this time range"
PROVISIONAL = "provisional"  # pages say the rest: late data may still change these windows
SIGNAL_TITLE = "Average signal level (raw, 0-31)"
SIGNAL_MAX = 31
EVENT_TIME_TITLE = "Event time (UTC)"
WINDOW = timedelta(minutes=1)
DARK_FONT_SIZE = 18
MARGIN_TOP = 30
MARK_ROW_PX = 22  # one row of replay-mark numbers above the plot
MARK_ROWS = 3
MARK_GAP = 0.04  # numbers closer than this share of the time axis would touch: they take another row
NOTE_MARGIN = 64  # room above the plot for two lines of a note, at the wall's font size too
SIGNAL_SCALE = "RdYlGn"
NO_READING_COLOR = "#9e9e9e"

# Keyed by lower-cased canonical name (core.records.canonical_name), so any spelling of a name maps here.
OPERATOR_COLORS: dict[str, str] = {
    "movistar": "#019df4",
    "vodafone": "#e60000",
    "orange": "#ff7900",
    "yoigo": "#9b59b6",
    "masmovil": "#f5c400",
    "simyo": "#ec4899",
    "pepephone": "#8c564b",
    "jazztel": "#bcbd22",
    "lowi": "#2ca02c",
    "digi": "#3f51b5",
    "tuenti": "#00bfa5",
    UNKNOWN: "#9e9e9e",
}
# Spelled out rather than taken from plotly.colors, so a plotly upgrade cannot recolour a name.
PALETTE: tuple[str, ...] = (
    "#7f3c8d", "#11a579", "#3969ac", "#f2b701", "#e73f74",
    "#80ba5a", "#e68310", "#008695", "#cf1c90", "#f97b72",
)
STATUS_COLORS: dict[str, str] = {
    "STATE_IN_SERVICE": "#2ca02c",
    "STATE_EMERGENCY_ONLY": "#ff9f1c",
    "STATE_OUT_OF_SERVICE": "#d62728",
    "STATE_POWER_OFF": "#7f7f7f",
    UNKNOWN: "#bdbdbd",
}


def palette_color(name: str) -> str:
    """Return the palette colour a name always gets, from a hash that is stable across processes."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return PALETTE[int.from_bytes(digest[:8], "big") % len(PALETTE)]


def operator_color(operator: str) -> str:
    """Return the colour of one operator, whatever the spelling of its name."""
    key = canonical_name(operator).lower()
    return OPERATOR_COLORS.get(key) or palette_color(key)


def operator_colors(operators: Iterable[str]) -> dict[str, str]:
    """Return a colour per operator name, the same for a name in every chart and session."""
    return {operator: operator_color(operator) for operator in operators}


def _style(fig: go.Figure, dark: bool, *, empty: bool) -> go.Figure:
    # A builder that put something around the plot (notes above it, a colour bar below) kept room for it.
    margin = fig.layout.margin
    fig.update_layout(
        template="plotly_dark" if dark else "plotly_white",
        paper_bgcolor="rgba(0,0,0,0)",
        margin={"l": 10, "r": 10, "t": max(margin.t or 0, MARGIN_TOP), "b": max(margin.b or 0, 10)},
    )
    if dark:
        fig.update_layout(font_size=DARK_FONT_SIZE)
    fig.update_xaxes(automargin=True)
    fig.update_yaxes(automargin=True)
    if empty:
        fig.add_annotation(
            text=NO_DATA, xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False, font_size=16
        )
    return fig


def _utc_naive(values: pd.Series) -> pd.Series:
    # Plotly draws the wall-clock digits it is given, so every time is turned into naive UTC first.
    return pd.to_datetime(values, utc=True).dt.tz_convert(None)


def _utc_moment(moment: datetime) -> datetime:
    stamp = pd.Timestamp(moment)
    stamp = stamp if stamp.tzinfo is None else stamp.tz_convert(None)
    return stamp.to_pydatetime()


def _datetimes(values: pd.Series) -> list[datetime]:
    return [stamp.to_pydatetime() for stamp in values]


def signal_by_operator_bar(frame: pd.DataFrame, dark: bool = False, *, period: str = "period") -> go.Figure:
    """Return bars of the average signal level per operator, best first; records with no operator are not
    ranked among them but summed up in a note above the bars.

    A signal_by_operator_compared frame adds a marker per operator at its average of the previous `period` and one
    at the same `period` a day earlier (none where that period has no data), and both changes to the hover text.
    """
    fig = go.Figure()
    ranked = frame[frame["operator"].astype(str) != UNKNOWN] if not frame.empty else frame
    compared = f"{PREVIOUS}avg_signal" in frame.columns
    if not ranked.empty:
        rows = ranked.sort_values(["avg_signal", "operator"], ascending=[False, True], na_position="last")
        operators = [str(name) for name in rows["operator"]]
        colors = operator_colors(operators)
        if compared:
            customdata: Any = [[_samples(row["samples"]),
                                change(row["avg_signal"], row[f"{PREVIOUS}avg_signal"], digits=1).text,
                                change(row["avg_signal"], row[f"{DAY_BEFORE}avg_signal"], digits=1).text,
                                _reading(row.get("min_signal")), _reading(row.get("max_signal"))]
                               for _, row in rows.iterrows()]
            hover = ("%{x}<br>Average signal %{y:.1f}<br>Samples %{customdata[0]}"
                     "<br>Min %{customdata[3]} / max %{customdata[4]}"
                     f"<br>vs previous {period}: %{{customdata[1]}}"
                     f"<br>vs same {period} a day earlier: %{{customdata[2]}}<extra></extra>")
        else:
            customdata = rows[["samples", "min_signal", "max_signal"]].to_numpy(dtype=float)
            hover = ("%{x}<br>Average signal %{y:.1f}<br>Samples %{customdata[0]:,.0f}"
                     "<br>Min %{customdata[1]:.0f} / max %{customdata[2]:.0f}<extra></extra>")
        fig.add_bar(x=operators, y=rows["avg_signal"].to_numpy(dtype=float),
                    marker_color=[colors[name] for name in operators], customdata=customdata, hovertemplate=hover)
        if compared:
            # No legend (plotly gives one to several traces): the note under the chart says what the markers are.
            fig.update_layout(showlegend=False)
            ink = "#e0e0e0" if dark else "#424242"
            for prefix, symbol, size, words in ((PREVIOUS, "line-ew-open", 30, f"Previous {period}"),
                                                (DAY_BEFORE, "diamond-open", 12, f"Same {period} a day earlier")):
                fig.add_scatter(
                    x=operators, y=rows[f"{prefix}avg_signal"].to_numpy(dtype=float), mode="markers",
                    name=prefix.rstrip("_"),
                    customdata=[_samples(value) for value in rows[f"{prefix}samples"]],
                    marker={"symbol": symbol, "size": size, "color": ink, "line": {"width": 3, "color": ink}},
                    hovertemplate=f"%{{x}}<br>{words}: %{{y:.1f}}<br>Samples %{{customdata}}<extra></extra>",
                )
    note = unranked_note(frame)
    if note:
        fig.add_annotation(text=note, xref="paper", yref="paper", x=0, y=1, xanchor="left", yanchor="bottom",
                           align="left", showarrow=False, name="unranked")
        fig.update_layout(margin_t=NOTE_MARGIN)
    fig.update_xaxes(title_text="Operator", type="category")
    fig.update_yaxes(title_text=SIGNAL_TITLE, range=[0, SIGNAL_MAX])
    return _style(fig, dark, empty=frame.empty)


def comparison_caption(period: str) -> str:
    """Return what signal_by_operator_bar's markers stand for, for a note under the chart."""
    return (f"Markers: ▬ each operator's average over the previous {period}, ◇ over the same {period} a day "
            "earlier; none where that period has no data. Hover a bar for the changes.")


def _samples(value: Any) -> str:
    return "none" if missing(value) else f"{int(value):,}"


def _reading(value: Any) -> str:
    return "none" if missing(value) else f"{float(value):.0f}"


def unranked_note(frame: pd.DataFrame) -> str | None:
    """Return what signal_by_operator's rows without an operator add up to, or None when there are none.

    They are no operator (none reported, or the handset's no-service state in its place, see
    core.records.NO_SERVICE_LABELS), so they are not ranked among the operators.
    """
    if frame.empty:
        return None
    # A comparison frame also lists operators seen only in the earlier periods: no samples in this range.
    rows = frame[(frame["operator"].astype(str) == UNKNOWN) & frame["samples"].notna()]
    if rows.empty:
        return None
    samples = int(rows["samples"].sum())
    weighted = (rows["avg_signal"].astype(float) * rows["samples"].astype(float)).sum()
    average = f"average {weighted / samples:.1f}" if samples else "no signal reading"
    # Two short lines: a chart can be a third of a laptop screen wide.
    return f"Not ranked: {samples:,} samples with no operator<br>(none reported, or no service), {average}"


def signal_per_minute_line(
    frame: pd.DataFrame,
    *,
    watermark: datetime | None = None,
    annotations: Sequence[tuple[datetime, str]] = (),
    dark: bool = False,
) -> go.Figure:
    """Return one line per operator of the average signal per minute, provisional windows dashed."""
    fig = go.Figure()
    if not frame.empty:
        rows = frame.assign(minute=_utc_naive(frame["minute"])).sort_values(["minute", "operator"])
        # A window is final once the watermark has passed its end: later records for it are dropped.
        limit = None if watermark is None else _utc_moment(watermark)
        provisional = (
            rows["minute"] + WINDOW > limit if limit is not None else pd.Series(False, index=rows.index)
        )
        rows = rows.assign(provisional=provisional)
        for operator in sorted({str(name) for name in rows["operator"]}):
            _add_operator_lines(fig, rows[rows["operator"].astype(str) == operator], operator)
        if limit is not None and bool(provisional.any()):
            end = rows["minute"].max() + WINDOW
            fig.add_vrect(
                x0=max(limit, rows["minute"].min().to_pydatetime()),
                x1=end.to_pydatetime(),
                fillcolor="grey",
                opacity=0.15,
                line_width=0,
                layer="below",
                # Inside the shaded part, right-aligned: past its right end are the legend's names.
                annotation_text=PROVISIONAL,
                annotation_position="top right",
            )
        _add_marks(fig, annotations, rows["minute"].min().to_pydatetime(),
                   (rows["minute"].max() + WINDOW).to_pydatetime())
    fig.update_xaxes(title_text=EVENT_TIME_TITLE)
    fig.update_yaxes(title_text=SIGNAL_TITLE, range=[0, SIGNAL_MAX])
    fig.update_layout(legend_title_text="Operator")
    return _style(fig, dark, empty=frame.empty)


def _add_marks(fig: go.Figure, marks: Sequence[tuple[datetime, str]], first: datetime, last: datetime) -> None:
    # Each mark is a dotted line with its number above the plot, where no data, tick or legend is; the
    # full label is the number's hover text and the page's caption (marks_caption). Numbers closer than
    # MARK_GAP of the time axis go on rows of their own; past MARK_ROWS a mark keeps its line alone.
    moments = sorted(((_utc_moment(moment), label) for moment, label in marks), key=lambda mark: mark[0])
    if not moments:
        return
    start, stop = min(first, moments[0][0]), max(last, moments[-1][0])
    span = max((stop - start).total_seconds(), 1.0)
    row_ends: list[datetime] = []  # the moment of the last number on each row
    for number, (moment, label) in enumerate(moments, start=1):
        fig.add_shape(type="line", x0=moment, x1=moment, xref="x", y0=0, y1=1, yref="paper",
                      line={"dash": "dot", "color": "grey", "width": 1}, name=f"mark {number}")
        row = next((i for i, end in enumerate(row_ends) if (moment - end).total_seconds() / span >= MARK_GAP),
                   len(row_ends))
        if row >= MARK_ROWS:
            continue
        if row == len(row_ends):
            row_ends.append(moment)
        row_ends[row] = moment
        fig.add_annotation(x=moment, xref="x", y=1, yref="paper", yanchor="bottom", yshift=2 + row * MARK_ROW_PX,
                           text=str(number), hovertext=label, showarrow=False, bordercolor="grey", borderwidth=1,
                           borderpad=2, name=f"mark {number}")
    fig.update_layout(margin_t=MARGIN_TOP + len(row_ends) * MARK_ROW_PX)


def marks_caption(marks: Sequence[tuple[datetime, str]]) -> str | None:
    """Return the caption that names the numbered marks of signal_per_minute_line, or None without marks."""
    if not marks:
        return None
    ordered = sorted(marks, key=lambda mark: _utc_moment(mark[0]))
    return "Dotted lines: " + " · ".join(
        f"{number} {label} ({_utc_moment(moment):%H:%M:%S} UTC)" for number, (moment, label) in enumerate(ordered, 1))


def _add_operator_lines(fig: go.Figure, rows: pd.DataFrame, operator: str) -> None:
    color = operator_color(operator)
    template = (
        "%{x|%Y-%m-%d %H:%M} UTC<br>Average signal %{y:.1f}<br>Samples %{customdata[0]:,}"
        f"<br>%{{customdata[1]}}<extra>{operator}</extra>"
    )
    final = rows[~rows["provisional"]]
    pending = rows[rows["provisional"]]
    if not final.empty:
        fig.add_scatter(
            x=_datetimes(final["minute"]), y=final["avg_signal"].to_numpy(dtype=float),
            mode="lines+markers", name=operator, legendgroup=operator, meta={"provisional": False},
            line={"color": color}, marker={"color": color, "size": 6},
            customdata=[[samples, "final"] for samples in final["samples"]], hovertemplate=template,
        )
    if pending.empty:
        return
    # The last final point starts the dashed part too (without a marker), so the line has no gap.
    bridge = final.tail(1)
    part = pd.concat([bridge, pending])
    fig.add_scatter(
        x=_datetimes(part["minute"]), y=part["avg_signal"].to_numpy(dtype=float),
        mode="lines+markers", name=f"{operator} (provisional)", legendgroup=operator,
        showlegend=final.empty, meta={"provisional": True},
        line={"color": color, "dash": "dash"},
        marker={"color": color, "symbol": "circle-open", "size": [0] * len(bridge) + [8] * len(pending)},
        customdata=[
            [samples, "provisional" if flag else "final"]
            for samples, flag in zip(part["samples"], part["provisional"], strict=True)
        ],
        hovertemplate=template,
    )


def gps_by_provider_bars(frame: pd.DataFrame, dark: bool = False) -> go.Figure:
    """Return side-by-side bars of average GPS precision (m) and satellites per location provider."""
    # Short titles and room between the two: side by side on a laptop, longer ones ran into each other.
    fig = make_subplots(
        rows=1, cols=2, subplot_titles=("Precision (lower is better)", "Satellites"), horizontal_spacing=0.2
    )
    if not frame.empty:
        rows = frame.sort_values(["samples", "provider"], ascending=[False, True])
        providers = [str(name) for name in rows["provider"]]
        samples = rows[["samples"]].to_numpy(dtype=float)
        for col, column, fmt, color in (
            (1, "avg_precision", ".1f", "#3969ac"),
            (2, "avg_satellites", ".1f", "#11a579"),
        ):
            fig.add_bar(
                x=providers, y=rows[column].to_numpy(dtype=float), marker_color=color, showlegend=False,
                customdata=samples,
                hovertemplate=f"%{{x}}<br>%{{y:{fmt}}}<br>Samples %{{customdata[0]:,.0f}}<extra></extra>",
                row=1, col=col,
            )
    fig.update_xaxes(title_text="Location provider", type="category")
    fig.update_yaxes(title_text="Average precision (m)", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title_text="Average satellites (count)", rangemode="tozero", row=1, col=2)
    return _style(fig, dark, empty=frame.empty)


def status_stacked_bar(frame: pd.DataFrame, top_n: int = 15, dark: bool = False) -> go.Figure:
    """Return records of the top N postal codes stacked by network status description."""
    if top_n < 1:
        raise ValueError(f"top_n must be at least 1, not {top_n}")
    fig = go.Figure()
    if not frame.empty:
        rows = frame.assign(
            postal_code=frame["postal_code"].astype(str),
            status=frame["status"].astype(str),
            description=frame["description"].fillna(UNKNOWN).astype(str),
        )
        totals = rows.groupby("postal_code")["records"].sum().reset_index()
        top = totals.sort_values(["records", "postal_code"], ascending=[False, True]).head(top_n)["postal_code"]
        rows = rows[rows["postal_code"].isin(top)]
        stacks = rows.groupby(["description", "postal_code"], as_index=False).agg(
            records=("records", "sum"), status=("status", lambda codes: ", ".join(sorted(set(codes))))
        )
        order = stacks.groupby("description")["records"].sum().sort_values(ascending=False, kind="stable")
        for description in order.index:
            stack = stacks[stacks["description"] == description].set_index("postal_code").reindex(top).dropna()
            fig.add_bar(
                x=list(stack.index), y=stack["records"].to_numpy(dtype=float), name=description,
                marker_color=STATUS_COLORS.get(description) or palette_color(description),
                customdata=stack[["status"]].to_numpy(),
                hovertemplate=(
                    f"Postal code %{{x}}<br>{description} (status %{{customdata[0]}})"
                    "<br>Records %{y:,.0f}<extra></extra>"
                ),
            )
        fig.update_xaxes(categoryorder="array", categoryarray=list(top))
    fig.update_layout(barmode="stack", legend_title_text="Network status")
    fig.update_xaxes(title_text=f"Postal code (top {top_n} by records)", type="category")
    fig.update_yaxes(title_text="Records (count)")
    return _style(fig, dark, empty=frame.empty)


CELL_COLUMNS = ["lat_cell", "lon_cell", "avg_signal", "samples", "records"]


def combine_cells(frame: pd.DataFrame, operators: Sequence[str] | None = None) -> pd.DataFrame:
    """Return one row per grid cell over the chosen operators (None = all), averaged exactly."""
    rows = frame if operators is None else frame[frame["operator"].isin(list(operators))]
    if rows.empty:
        return pd.DataFrame(
            {
                "lat_cell": pd.Series(dtype=float), "lon_cell": pd.Series(dtype=float),
                "avg_signal": pd.Series(dtype=float), "samples": pd.Series(dtype="int64"),
                "records": pd.Series(dtype="int64"),
            }
        )
    cells = rows.groupby(["lat_cell", "lon_cell"], as_index=False).agg(
        signal_sum=("signal_sum", "sum"), samples=("signal_count", "sum"), records=("records", "sum")
    )
    # Sum of sums over sum of counts: averaging the per-operator averages would weight them wrongly.
    counts = cells["samples"].astype(float)
    cells["avg_signal"] = (cells["signal_sum"].astype(float) / counts).where(counts > 0)
    cells = cells.astype({"samples": "int64", "records": "int64"})
    return cells.sort_values(["lat_cell", "lon_cell"], ignore_index=True)[CELL_COLUMNS]


# SIGNAL_MAP_TILES (core.config.MAP_TILES): the named base maps' plotly styles (light, dark), "off" for none;
# any other value is an XYZ tile URL template.
MAP_STYLES: dict[str, tuple[str, str]] = {
    "carto": ("carto-positron", "carto-darkmatter"),
    "osm": ("open-street-map", "open-street-map"),
}
TILES_OFF = "off"
MAP_HEIGHT = 480
MAP_WIDTH = 400  # the width the first view is fitted to (a laptop's panel); a wider one shows more around
MAP_OPACITY = 0.75
COLORBAR_MARGIN = 70  # the horizontal colour bar and its title under the map
DOT_PX = 6
DOT_BAND = 4  # signal levels per colour of the dots that stand for cells too small to see
MAX_ZOOM = 15.0


def coverage_map(cells: pd.DataFrame, cell_degrees: float, dark: bool = False, tiles: str = TILES_OFF) -> go.Figure:
    """Return combined grid cells (see combine_cells) as squares of their real size coloured by signal.

    With `tiles` a base map (MAP_STYLES or a tile URL template) they are drawn on a map whose tiles the
    viewer's browser loads; with "off", nothing is loaded from elsewhere: the squares sit on lon/lat axes.
    """
    if not cell_degrees > 0:
        raise ValueError(f"cell_degrees must be positive, not {cell_degrees}")
    if tiles == TILES_OFF:
        return _coverage_axes(cells, cell_degrees, dark)
    if tiles not in MAP_STYLES and not tile_url_template(tiles):
        raise ValueError(f"tiles must be one of {', '.join([*MAP_STYLES, TILES_OFF])} or a tile URL, not {tiles!r}")
    fig = go.Figure()
    if not cells.empty:
        _add_cell_polygons(fig, cells, cell_degrees)
    center, zoom = _fit_view(cells, cell_degrees)
    if tiles in MAP_STYLES:
        style, layers = MAP_STYLES[tiles][1 if dark else 0], []
    else:
        # Any XYZ server (a company's own, for screens that reach no public one), under the cells.
        style, layers = "white-bg", [{"sourcetype": "raster", "source": [tiles], "below": "traces"}]
    layers += _cell_dots(cells, cell_degrees)
    # uirevision: a refresh keeps the viewer's pan and zoom.
    fig.update_layout(map={"style": style, "layers": layers, "center": center, "zoom": zoom},
                      height=MAP_HEIGHT, uirevision="coverage", margin_b=COLORBAR_MARGIN)
    return _style(fig, dark, empty=cells.empty)


def _cell_dots(cells: pd.DataFrame, size: float) -> list[dict[str, Any]]:
    """Return map layers that draw each cell as a dot while it is too small to see (below dots_max_zoom)."""
    # Zoomed out to a region a cell is less than a pixel and the map drops its square: a dot of a few pixels
    # at its centre, in its signal's colour (one layer per band of levels, a layer has one colour), shows
    # where the cells are until the squares are big enough to take over.
    if cells.empty:
        return []
    signal = cells["avg_signal"].to_numpy(dtype=float)
    bands = np.clip(np.floor(np.nan_to_num(signal) / DOT_BAND), 0, SIGNAL_MAX // DOT_BAND)
    band = np.where(np.isnan(signal), -1, bands)
    lat = cells["lat_cell"].to_numpy(dtype=float) + size / 2
    lon = cells["lon_cell"].to_numpy(dtype=float) + size / 2
    layers = []
    for value in np.unique(band):
        chosen = band == value
        centres = np.round(np.column_stack([lon[chosen], lat[chosen]]), 6).tolist()
        points = {"type": "MultiPoint", "coordinates": centres}
        color = NO_READING_COLOR if value < 0 else level_color((value + 0.5) * DOT_BAND)
        layers.append({"sourcetype": "geojson", "source": {"type": "Feature", "geometry": points, "properties": {}},
                       "type": "circle", "circle": {"radius": DOT_PX / 2}, "color": color, "opacity": MAP_OPACITY,
                       "maxzoom": dots_max_zoom(size), "name": f"dots {int(value)}"})
    return layers


def dots_max_zoom(size: float) -> float:
    """Return the zoom from which a cell of `size` degrees is DOT_PX wide: its square shows, its dot not."""
    return math.log2(DOT_PX * 360 / (512 * size))


def _fit_view(cells: pd.DataFrame, size: float) -> tuple[dict[str, float], float]:
    """Return the centre and zoom that fit every cell in a MAP_WIDTH x MAP_HEIGHT map (Web Mercator)."""
    if cells.empty:
        return {"lat": 40.0, "lon": -3.7}, 4.0
    west, east = float(cells["lon_cell"].min()), float(cells["lon_cell"].max()) + size
    south, north = float(cells["lat_cell"].min()), float(cells["lat_cell"].max()) + size

    def mercator(lat: float) -> float:
        clipped = math.radians(min(max(lat, -85.0), 85.0))
        return math.log(math.tan(math.pi / 4 + clipped / 2))

    # The world is 512 * 2**zoom pixels wide in MapLibre; keep a tenth of the map as a border.
    across = math.log2(0.9 * MAP_WIDTH * 360 / (512 * (east - west)))
    down = math.log2(0.9 * (MAP_HEIGHT - MARGIN_TOP - 10) * 2 * math.pi / (512 * (mercator(north) - mercator(south))))
    middle = math.degrees(math.atan(math.sinh((mercator(north) + mercator(south)) / 2)))
    return {"lat": middle, "lon": (west + east) / 2}, max(0.0, min(across, down, MAX_ZOOM))


def _add_cell_polygons(fig: go.Figure, cells: pd.DataFrame, size: float) -> None:
    # One filled square per cell, its real size at every zoom, in two traces: cells with a signal reading on
    # the signal scale, and the others grey.
    lat = cells["lat_cell"].to_numpy(dtype=float)
    lon = cells["lon_cell"].to_numpy(dtype=float)
    signal = cells["avg_signal"].to_numpy(dtype=float)
    customdata = np.column_stack([cells["samples"].to_numpy(dtype=float), cells["records"].to_numpy(dtype=float),
                                  lat, lon])
    hover = ("Cell %{customdata[2]:.4f}, %{customdata[3]:.4f}<br>Average signal %{text}"
             "<br>Samples %{customdata[0]:,.0f}<br>Records %{customdata[1]:,.0f}<extra></extra>")
    read = ~np.isnan(signal)
    # The colour bar lies under the map: beside it, it took a third of a laptop's panel from the map.
    colorbar = {"title": {"text": "Signal level (raw, 0-31)", "side": "top"}, "orientation": "h", "x": 0,
                "xanchor": "left", "y": 0, "yanchor": "top", "len": 0.6, "thickness": 12}
    for chosen, colors in ((read, {"z": signal[read], "colorscale": SIGNAL_SCALE, "zmin": 0, "zmax": SIGNAL_MAX,
                                   "colorbar": colorbar}),
                           (~read, {"z": np.zeros(int((~read).sum())), "showscale": False,
                                    "colorscale": [[0, NO_READING_COLOR], [1, NO_READING_COLOR]]})):
        if not chosen.any():
            continue
        ids = [str(index) for index in np.flatnonzero(chosen)]
        squares = [
            {"type": "Feature", "id": ident, "geometry": {"type": "Polygon", "coordinates": [[
                [x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0],
            ]]}}
            for ident, x0, y0, x1, y1 in zip(ids, *(np.round(corner, 6).tolist() for corner in (
                lon[chosen], lat[chosen], lon[chosen] + size, lat[chosen] + size)), strict=True)
        ]
        fig.add_choroplethmap(
            geojson={"type": "FeatureCollection", "features": squares}, featureidkey="id", locations=ids,
            marker={"opacity": MAP_OPACITY, "line": {"width": 0}}, customdata=customdata[chosen],
            hovertemplate=hover.replace("%{text}", "%{z:.1f}" if chosen is read else "no signal reading"),
            meta={"signal_reading": chosen is read}, **colors,
        )


def _coverage_axes(cells: pd.DataFrame, cell_degrees: float, dark: bool) -> go.Figure:
    fig = go.Figure()
    if not cells.empty:
        _add_cell_squares(fig, cells, cell_degrees)
        # A degree of longitude is cos(latitude) times as long as one of latitude; this keeps cells square.
        mid_lat = float(cells["lat_cell"].mean()) + cell_degrees / 2
        scale = 1 / max(math.cos(math.radians(mid_lat)), 0.1)
    else:
        scale = 1.0
    fig.update_xaxes(title_text="Longitude (degrees east)", showgrid=False, zeroline=False)
    fig.update_yaxes(
        title_text="Latitude (degrees north)", showgrid=False, zeroline=False, scaleanchor="x", scaleratio=scale
    )
    fig.update_layout(height=MAP_HEIGHT)
    return _style(fig, dark, empty=cells.empty)


def _add_cell_squares(fig: go.Figure, cells: pd.DataFrame, size: float) -> None:
    lat = cells["lat_cell"].to_numpy(dtype=float)
    lon = cells["lon_cell"].to_numpy(dtype=float)
    signal = cells["avg_signal"].to_numpy(dtype=float)
    # Filled outlines scale with zoom and stay fast: one trace per whole signal level (32 colours),
    # each a run of closed squares separated by gaps, instead of one shape per cell.
    level = np.where(np.isnan(signal), -1, np.clip(np.floor(np.nan_to_num(signal)), 0, SIGNAL_MAX - 1))
    for value in np.unique(level):
        chosen = level == value
        x0, y0 = lon[chosen, None], lat[chosen, None]
        xs = np.hstack([x0, x0 + size, x0 + size, x0, x0, np.full_like(x0, np.nan)]).ravel()
        ys = np.hstack([y0, y0, y0 + size, y0 + size, y0, np.full_like(y0, np.nan)]).ravel()
        color = NO_READING_COLOR if value < 0 else level_color(float(value) + 0.5)
        fig.add_scatter(
            x=xs, y=ys, mode="lines", fill="toself", fillcolor=color, line={"color": color, "width": 0.5},
            hoverinfo="skip", showlegend=False, meta={"signal_level": int(value)},
        )
    # Invisible markers at the cell centres carry the hover text and the colour bar.
    text = ["no signal reading" if math.isnan(v) else f"{v:.1f}" for v in signal]
    fig.add_scatter(
        x=lon + size / 2, y=lat + size / 2, mode="markers", showlegend=False, meta={"hover": True},
        marker={
            "color": np.nan_to_num(signal, nan=0.0), "colorscale": SIGNAL_SCALE, "cmin": 0, "cmax": SIGNAL_MAX,
            "opacity": 0, "size": 8, "showscale": True,
            "colorbar": {"title": {"text": "Signal level<br>(raw, 0-31)"}},
        },
        customdata=np.column_stack(
            [cells["samples"].to_numpy(dtype=float), cells["records"].to_numpy(dtype=float), lat, lon]
        ),
        text=text,
        hovertemplate=(
            "Cell %{customdata[2]:.4f}, %{customdata[3]:.4f}<br>Average signal %{text}"
            "<br>Samples %{customdata[0]:,.0f}<br>Records %{customdata[1]:,.0f}<extra></extra>"
        ),
    )


def level_color(value: float) -> str:
    """Return the map colour of a raw signal level: red at 0, green at 31."""
    return str(sample_colorscale(SIGNAL_SCALE, [min(max(value / SIGNAL_MAX, 0.0), 1.0)])[0])


def batches_chart(batches: Sequence[BatchProgress], dark: bool = False) -> go.Figure:
    """Return the streaming job's recent batches: rows/s as lines, batch duration (s) as bars."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    ordered = sorted(batches, key=lambda batch: _utc_moment(batch.time))
    if ordered:
        times = [_utc_moment(batch.time) for batch in ordered]
        fig.add_bar(
            x=times, y=[batch.duration_ms / 1000 for batch in ordered], name="Batch duration (s)",
            marker_color="#a5aa99", opacity=0.5,
            customdata=[[batch.batch_id, batch.input_rows, batch.late_rows] for batch in ordered],
            hovertemplate=(
                "Batch %{customdata[0]}<br>%{x|%H:%M:%S} UTC<br>Duration %{y:.2f} s"
                "<br>Input rows %{customdata[1]:,}<br>Late rows %{customdata[2]:,}<extra></extra>"
            ),
            secondary_y=True,
        )
        for name, values, color in (
            ("Input rows/s", [batch.input_rows_per_second for batch in ordered], "#3969ac"),
            ("Processed rows/s", [batch.processed_rows_per_second for batch in ordered], "#11a579"),
        ):
            fig.add_scatter(
                x=times, y=values, name=name, mode="lines+markers", line_color=color,
                hovertemplate=f"%{{x|%H:%M:%S}} UTC<br>{name} %{{y:,.1f}}<extra></extra>", secondary_y=False,
            )
    # Batch time is when the job ran the batch (processing time), not the records' event time.
    fig.update_xaxes(title_text="Batch time (UTC)")
    fig.update_yaxes(title_text="Rows per second", rangemode="tozero", secondary_y=False)
    fig.update_yaxes(title_text="Batch duration (s)", rangemode="tozero", showgrid=False, secondary_y=True)
    fig.update_layout(legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0})
    return _style(fig, dark, empty=not ordered)
