"""Signal Stream console: page config, settings and backend, and the page router."""

from __future__ import annotations

import streamlit as st

from core.errors import SignalStreamError
from ui import context

st.set_page_config(page_title="Signal Stream", page_icon=":material/cell_tower:", layout="wide")

try:
    settings = context.settings()
except SignalStreamError as error:
    st.error(f"Settings: {error}")
    st.stop()

st.sidebar.markdown(f"**Backend:** `{settings.backend.upper()}`" + ("  ·  demo mode" if settings.demo_mode else ""))

pages = {
    "Analytics": [st.Page("pages/live_aggregations.py", title="Live aggregations", icon=":material/monitoring:",
                          default=True)],
}
st.navigation(pages).run()
