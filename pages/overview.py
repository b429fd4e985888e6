"""Overview: is data flowing (the freshness chain, hop by hop) and the headline numbers."""

from __future__ import annotations

import streamlit as st

from ui import context
from ui.widgets import fmt_time, freshness_chain

context.through_router()
settings = context.settings()
st.title("Overview")


@st.fragment(run_every=settings.refresh_seconds)
def live() -> None:
    kpis = context.kpis()
    st.subheader("Freshness, producer to query")
    freshness_chain(context.health_chain(kpis.result.as_of if kpis.result else None))

    st.subheader("Last 5 minutes")
    row = kpis.result.frame.iloc[0] if kpis.result is not None and len(kpis.result.frame) else None
    records = int(row["records"]) if row is not None else 0
    if kpis.error:
        st.warning(f"Headline numbers could not be refreshed: {kpis.error}")
    if records == 0:
        user = st.session_state.get("user")
        message = "No records in the last 5 minutes."
        if settings.demo_mode and user is not None and user.is_operator:
            st.info(f"{message} Start a replay of the sample to see data flow.", icon=":material/play_circle:")
            st.page_link("pages/demo_replay.py", label="Open Demo replay", icon=":material/play_circle:")
        else:
            st.info(f"{message} Check the producer and the Pipeline health page.")
    tiles = st.columns(4)
    avg = row["avg_signal"] if row is not None else None
    tiles[0].metric("Records", f"{records:,}", border=True)
    tiles[1].metric("Average signal (raw 0-31)", "–" if avg is None or avg != avg else f"{avg:.1f}", border=True)
    tiles[2].metric("Operators seen", int(row["operators"]) if row is not None else 0, border=True)
    tiles[3].metric("Quarantined", int(row["quarantined"]) if row is not None else 0, border=True)
    if kpis.result is not None:
        st.caption(f"Data as of {fmt_time(kpis.result.as_of)}")


live()
