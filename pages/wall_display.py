"""Wall display: key numbers and charts, full screen, refreshing itself unattended for days.

Open it as `/?kiosk=1` (no navigation, sidebar or toolbar); `views=signal,coverage` picks the views it
rotates through and `range=6h` its charts' range (core.views). Panels refresh in place with
st.fragment(run_every=...); the views rotate with streamlit-autorefresh's counter, the one full rerun
we want. A query that fails keeps the last good frame on screen and says so.
"""

from __future__ import annotations

from datetime import timedelta

import streamlit as st
from streamlit_autorefresh import st_autorefresh

from core import charts, views
from core.health import Level
from ui import context, share
from ui.alerts import show_alert_banner
from ui.widgets import fmt_time, kpi_tiles

# URL name -> title of each view, in rotation order.
VIEWS = {"signal": "Signal", "coverage": "Coverage", "status": "Network status"}
WINDOW = timedelta(minutes=5)
context.through_router()
settings = context.settings()

st.markdown(
    "<style>[data-testid='stMetricValue']{font-size:3.2rem}[data-testid='stMetricLabel'] p{font-size:1.3rem}"
    "</style>",
    unsafe_allow_html=True,
)
wall, notices = views.parse_wall(share.params(views.WALL_KEYS), tuple(VIEWS))
# One view has nothing to rotate to: no full rerun for it.
rotating = len(wall.views) > 1
rotation = (st_autorefresh(interval=int(settings.rotate_seconds * 1000), key="wall_rotation") or 0) if rotating else 0
view = VIEWS[wall.views[rotation % len(wall.views)]]
for notice in notices:
    st.caption(f":material/link_off: {notice}")


@st.fragment(run_every=settings.refresh_seconds)
def headline() -> None:
    show_alert_banner(settings)
    kpis = context.kpis_compared(WINDOW)
    chain = context.health_chain(kpis.result.as_of if kpis.result else None)
    stale = [hop for hop in chain if hop.level is Level.RED]
    if stale:
        st.error("STALE: " + " · ".join(f"{hop.label}: {hop.detail}" for hop in stale), icon=":material/warning:")
    if kpis.error:
        st.warning(f"Showing the last good numbers: {kpis.error}")
    kpi_tiles(kpis, WINDOW)
    st.caption(f"{view} · data as of {fmt_time(kpis.result.as_of if kpis.result else None)}"
               + (f" · next view in {settings.rotate_seconds:g} s" if rotating else ""))


@st.fragment(run_every=settings.refresh_seconds)
def view_panels() -> None:
    since, until = context.time_window(wall.range)
    titles = {
        "signal_per_minute": "Signal per minute", "signal_by_operator": "Average signal by operator",
        "coverage_cells": "Coverage", "gps_by_provider": "GPS precision and satellites",
        "status_by_postal_code": "Network status by postal code",
    }
    names = {
        "Signal": ("signal_per_minute", "signal_by_operator"),
        "Coverage": ("coverage_cells", "gps_by_provider"),
        "Network status": ("status_by_postal_code", "signal_by_operator"),
    }[view]
    watermark = context.watermark()
    for column, name in zip(st.columns(2), names, strict=True):
        with column:
            st.markdown(f"### {titles[name]} · last {wall.range}")
            panel = context.query(name, since, until, slot=wall.range)
            if panel.result is None:
                st.info(f"No data yet: {panel.error}" if panel.error else "No data yet")
                continue
            if panel.error:
                st.warning(f"Last good frame from {fmt_time(panel.result.as_of)}: {panel.error}")
            frame = panel.result.frame
            figure = {
                "signal_per_minute": lambda f: charts.signal_per_minute_line(f, watermark=watermark, dark=True),
                "signal_by_operator": lambda f: charts.signal_by_operator_bar(f, dark=True),
                "coverage_cells": lambda f: charts.coverage_map(charts.combine_cells(f), settings.grid_degrees,
                                                                dark=True, tiles=settings.map_tiles),
                "gps_by_provider": lambda f: charts.gps_by_provider_bars(f, dark=True),
                "status_by_postal_code": lambda f: charts.status_stacked_bar(f, top_n=12, dark=True),
            }[name](frame)
            figure.update_layout(height=520)
            st.plotly_chart(figure, key=f"wall_{name}")


headline()
view_panels()
