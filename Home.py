"""Signal Stream console: page config, settings and backend, who is using it, and the page router."""

from __future__ import annotations

import streamlit as st

from core.errors import SignalStreamError
from core.health import worst
from ui import context
from ui.widgets import level_badge

st.set_page_config(page_title="Signal Stream", page_icon=":material/cell_tower:", layout="wide")

try:
    settings = context.settings()
    context.backend()
except SignalStreamError as error:
    st.error(f"Signal Stream cannot start: {error}")
    st.stop()

kiosk = st.query_params.get("kiosk") == "1"

if context.auth_configured() and not st.user.to_dict().get("is_logged_in"):
    st.title("Signal Stream")
    st.button("Log in", on_click=st.login, type="primary", icon=":material/login:")
    st.stop()

user = context.current_user()
st.session_state["user"] = user

wall = st.Page("pages/wall_display.py", title="Wall display", icon=":material/tv:", url_path="wall")
if kiosk:
    # Unattended screen: no navigation, sidebar, header or toolbar; the page refreshes itself.
    st.markdown(
        "<style>[data-testid='stSidebar'],[data-testid='stHeader'],[data-testid='stToolbar'],"
        "[data-testid='stSidebarCollapsedControl']{display:none !important}"
        ".block-container{padding-top:1rem;max-width:100%}</style>",
        unsafe_allow_html=True,
    )
    st.navigation([wall], position="hidden").run()
    st.stop()

pages: dict[str, list[st.Page]] = {
    "Analytics": [
        st.Page("pages/overview.py", title="Overview", icon=":material/dashboard:", default=True),
        st.Page("pages/live_aggregations.py", title="Live aggregations", icon=":material/monitoring:"),
    ],
    "Operations": [st.Page("pages/pipeline_health.py", title="Pipeline health", icon=":material/build:")],
    "Display": [wall],
}
if user.is_operator:
    pages["Operations"].append(st.Page("pages/audit_log.py", title="Audit log", icon=":material/receipt_long:"))
    if settings.demo_mode:
        pages["Demo"] = [st.Page("pages/demo_replay.py", title="Demo replay", icon=":material/play_circle:")]

with st.sidebar:
    st.markdown(f"**Signal Stream** · `{settings.backend.upper()}`")
    try:
        level_badge(worst([hop.level for hop in context.health_chain()]), "Pipeline")
    except SignalStreamError as error:
        st.caption(f"Pipeline status unavailable: {error}")
    st.caption(f"{user.name} · {user.role}")

st.navigation(pages).run()
