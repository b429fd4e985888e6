"""Live aggregations: the named queries over the lake, with the data's as-of time."""

from __future__ import annotations

import streamlit as st

from core.errors import SignalStreamError
from ui import context

PANELS = (
    ("signal_by_operator", "Average signal by operator"),
    ("gps_by_provider", "GPS precision by provider"),
    ("status_by_postal_code", "Network status by postal code"),
)

st.title("Live aggregations")


@st.fragment(run_every=context.settings().refresh_seconds)
def panels() -> None:
    for name, title in PANELS:
        st.subheader(title)
        try:
            result = context.query(name)
        except SignalStreamError as error:
            st.info(f"No data yet: {error}")
            continue
        as_of = result.as_of.strftime("%Y-%m-%d %H:%M:%S UTC") if result.as_of else "no data yet"
        st.caption(f"Data as of {as_of} · {len(result.frame)} rows")
        st.dataframe(result.frame, hide_index=True, width="stretch", key=f"table_{name}")


panels()
