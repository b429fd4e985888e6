"""Small rendering helpers shared by the pages: status badges, KPI tiles, panels with their query details."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Literal, TypeAlias

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core import wording
from core.compare import DAY_BEFORE, NO_DATA, NOW, PREVIOUS, Change, change, kpi_periods
from core.domain import CrawlerState
from core.frames import to_safe_csv
from core.health import Hop, Level
from ui.context import Panel

BADGE_COLOR = {Level.GREEN: "green", Level.AMBER: "orange", Level.RED: "red", Level.GREY: "gray"}
BADGE_TEXT = {Level.GREEN: "OK", Level.AMBER: "LATE", Level.RED: "STALE", Level.GREY: "NO DATA"}
Rise: TypeAlias = Literal["normal", "inverse", "off"]  # the colour of a rise, as st.metric's delta_color


def fmt_time(moment: datetime | None) -> str:
    """Return a UTC time for captions, or a dash."""
    if moment is None:
        return "–"
    aware = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return aware.strftime("%Y-%m-%d %H:%M:%S UTC")


def fmt_clock(moment: datetime | None) -> str:
    """Return a compact UTC time for tiles: HH:MM:SS today, else MM-DD HH:MM."""
    if moment is None:
        return "–"
    aware = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    if aware.date() == datetime.now(UTC).date():
        return aware.strftime("%H:%M:%S")
    return aware.strftime("%m-%d %H:%M")


def crawler_changes(state: CrawlerState) -> str:
    """Return what a crawler's last run changed ('1 table added, 3 partitions added'), else its message."""
    counts = {"table added": state.tables_added, "table updated": state.tables_updated,
              "partition added": state.partitions_added}
    if state.last_result == "SUCCEEDED" and any(counts.values()):
        return wording.changes(counts)
    return state.message


def level_badge(level: Level, prefix: str = "", *, text: str | None = None) -> None:
    """Draw a coloured badge for a health level (its OK/LATE/STALE word unless `text` is given)."""
    label = text if text is not None else f"{prefix} {BADGE_TEXT[level]}".strip()
    st.badge(label, color=BADGE_COLOR[level])  # type: ignore[arg-type]


def freshness_chain(hops: Sequence[Hop]) -> None:
    """Draw the freshness chain: one column per hop, producer to query."""
    for column, hop in zip(st.columns(len(hops)), hops, strict=True):
        with column.container(border=True):
            st.markdown(f"**{hop.label}**")
            level_badge(hop.level)
            st.caption(hop.detail)


def panel_header(panel: Panel, title: str) -> bool:
    """Draw a panel's title and state; return False when there is nothing to draw."""
    st.subheader(title)
    if panel.notice:
        st.info(panel.notice, icon=":material/date_range:")
    if panel.error and panel.result is None:
        st.info(f"No data to show: {panel.error}")
        return False
    if panel.error:
        st.warning(f"Showing the last good result: the latest query failed ({panel.error})", icon=":material/history:")
    return panel.result is not None


def panel_footer(panel: Panel, key: str) -> None:
    """Draw the data's as-of time, the query's details and a CSV download."""
    result = panel.result
    if result is None:
        return
    scanned = f"{result.bytes_scanned:,} bytes scanned" if result.bytes_scanned is not None else "local files"
    left, right = st.columns([4, 1])
    left.caption(f"Data as of {fmt_time(result.as_of)} · {len(result.frame):,} rows · {result.duration_ms:.0f} ms")
    # The CSV is made when clicked: a file made on every refresh was dropped by the server at the next one,
    # and a click on a page that had not refreshed yet got a 404 (make soak saw 47).
    frame = result.frame
    right.download_button("CSV", lambda: to_safe_csv(frame), file_name=f"{result.name}.csv",
                          mime="text/csv", key=f"csv_{key}", icon=":material/download:", on_click="ignore")
    with st.expander("Query details"):
        st.code(result.sql, language="sql")
        st.caption(f"Parameters: {', '.join(map(str, result.params))}")
        st.caption(f"Query id {result.query_id} · {scanned}")


# The headline tiles: (column, label, digits, compared in percent, colour of a rise). More records or a higher
# signal is good news; more quarantined records is not.
KPI_TILES: tuple[tuple[str, str, int, bool, Rise], ...] = (
    ("records", "Records, last {minutes} min", 0, True, "normal"),
    ("avg_signal", "Average signal (raw 0-31)", 1, False, "normal"),
    ("operators", "Operators seen", 0, False, "off"),
    ("quarantined", "Quarantined", 0, False, "inverse"),
)
CAPTION_COLOR = {"normal": ("green", "red"), "inverse": ("red", "green"), "off": ("gray", "gray")}


def change_caption(change: Change, rise: Rise, against: str) -> str:
    """Return a change as caption Markdown: coloured with its arrow like a metric's delta, or "no data"."""
    if change.direction is None:
        return f"{NO_DATA} for the {against}"
    if change.direction == 0:
        return f"{change.text} vs {against}"
    up, down = CAPTION_COLOR[rise]
    color, arrow = (up, "▲") if change.direction > 0 else (down, "▼")
    return f":{color}[{arrow} {change.text}] vs {against}"


def kpi_tiles(kpis: Panel, window: timedelta) -> int:
    """Draw the headline tiles over `window`, each with its change against the window before and the same window a
    day earlier ("no data" when that period had no rows); return the records."""
    frame = kpis.result.frame if kpis.result is not None else None
    row = frame.iloc[0].to_dict() if frame is not None and len(frame) else None
    periods = kpi_periods(row)
    now, previous, day_before = periods[NOW], periods[PREVIOUS], periods[DAY_BEFORE]
    minutes = f"{window.total_seconds() / 60:g}"
    # A row that wraps rather than columns: a narrow window would cut labels and values short.
    with st.container(horizontal=True):
        for column, label, digits, percent, rise in KPI_TILES:
            value = now[column]
            # No rows now: none counted, and no average. Records beside an average but None are unknown (rows
            # committed before the record count was kept): a dash, not 0.
            unknown = value is None and (column == "avg_signal" or now["avg_signal"] is not None)
            shown = "–" if unknown else f"{value or 0:,.{digits}f}"
            against_previous = change(value, previous[column], percent=percent, digits=digits)
            against_day = change(value, day_before[column], percent=percent, digits=digits)
            # "no data for the previous 5 min", "+12 % vs previous 5 min"
            linked = "for the" if against_previous.direction is None else "vs"
            # As wide as its text: a narrow window wraps the tiles rather than cutting their labels short.
            with st.container(border=True, width="content"):
                st.metric(label.format(minutes=minutes), shown, against_previous.text,
                          rise if against_previous.direction else "off",
                          # "0 %" and "no data" are text to Streamlit, which would give them a rising arrow.
                          delta_arrow="auto" if against_previous.direction else "off",
                          delta_description=f"{linked} previous {minutes} min")
                st.caption(change_caption(against_day, rise, f"same {minutes} min yesterday"))
    return int(now["records"] or 0)


def chart_panel(panel: Panel, title: str, key: str, figure: Callable[[pd.DataFrame], go.Figure], *,
                notes: Sequence[str] = (), table: bool = False) -> None:
    """Draw a query's panel: its title and state, the chart (and the rows), notes, then as-of, SQL and CSV."""
    if not panel_header(panel, title) or panel.result is None:
        return
    st.plotly_chart(figure(panel.result.frame), key=f"chart_{key}")
    if table:
        st.dataframe(panel.result.frame, hide_index=True, width="stretch", key=f"table_{key}")
    for note in notes:
        st.caption(note)
    panel_footer(panel, key)
