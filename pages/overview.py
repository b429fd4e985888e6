"""Overview: is data flowing (the freshness chain, hop by hop) and the headline numbers."""

from __future__ import annotations

from datetime import timedelta

import streamlit as st

from ui import context
from ui.alerts import show_alerts_panel
from ui.widgets import fmt_time, freshness_chain, kpi_tiles

WINDOW = timedelta(minutes=5)
context.through_router()
settings = context.settings()
user = context.current_user()
st.title("Overview")


@st.fragment(run_every=settings.refresh_seconds)
def live() -> None:
    kpis = context.kpis_compared(WINDOW)
    st.subheader("Freshness, producer to query")
    freshness_chain(context.health_chain(kpis.result.as_of if kpis.result else None))
    show_alerts_panel(settings)

    st.subheader("Last 5 minutes")
    if kpis.error:
        st.warning(f"Headline numbers could not be refreshed: {kpis.error}")
    records = kpi_tiles(kpis, WINDOW)
    if kpis.result is not None:
        st.caption(f"Data as of {fmt_time(kpis.result.as_of)}")
    if records == 0:
        message = "No records in the last 5 minutes."
        if settings.demo_mode and user.is_operator:
            st.info(f"{message} Start a replay of the sample to see data flow.", icon=":material/play_circle:")
            st.page_link("pages/demo_replay.py", label="Open Demo replay", icon=":material/play_circle:")
        else:
            st.info(f"{message} Check the producer and the Pipeline health page.")


live()
