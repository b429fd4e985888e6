"""Signal Stream console: page config, settings and backend, who is using it, and the page router."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from core.errors import SignalStreamError
from core.health import worst
from ui import context
from ui.widgets import level_badge

# The icon is a file of ours: a Material icon as page icon is an SVG every browser fetches from Google Fonts,
# which a wall screen with no internet fails to load on every visit, and which tells Google who opens the console.
st.set_page_config(page_title="Signal Stream", page_icon=str(Path(__file__).with_name("ui") / "icon.png"),
                   layout="wide")

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

WALL = "pages/wall_display.py"
# (file, title, icon, section, listed for this user). The URL of each page is its file name: until a script
# calls st.navigation, Streamlit serves the first session after a start from pages/ by file name itself.
PAGES: tuple[tuple[str, str, str, str, bool], ...] = (
    ("pages/overview.py", "Overview", ":material/dashboard:", "Analytics", True),
    ("pages/live_aggregations.py", "Live aggregations", ":material/monitoring:", "Analytics", True),
    ("pages/pipeline_health.py", "Pipeline health", ":material/build:", "Operations", True),
    ("pages/audit_log.py", "Audit log", ":material/receipt_long:", "Operations", user.is_operator),
    ("pages/demo_replay.py", "Demo replay", ":material/play_circle:", "Demo", user.is_operator and settings.demo_mode),
    (WALL, "Wall display", ":material/tv:", "Display", True),
)


def url_path(file: str) -> str:
    """Return the URL path of a page: its file name without the folder and `.py`."""
    return file.removeprefix("pages/").removesuffix(".py")


if kiosk:
    # Unattended screen: no navigation, sidebar, header or toolbar; the page refreshes itself.
    st.markdown(
        "<style>[data-testid='stSidebar'],[data-testid='stHeader'],[data-testid='stToolbar'],"
        "[data-testid='stSidebarCollapsedControl']{display:none !important}"
        ".block-container{padding-top:1rem;max-width:100%}</style>",
        unsafe_allow_html=True,
    )
    # Whatever page URL the screen was given (/, /wall_display, /live_aggregations, ...), it shows the wall:
    # every URL of the console is registered, each running the wall, so none is "not found".
    st.navigation([st.Page(WALL, title="Wall display", icon=":material/tv:", url_path=url_path(file),
                           default=index == 0) for index, (file, *_) in enumerate(PAGES)],
                  position="hidden").run()
    st.stop()

pages: dict[str, list[st.Page]] = {}
for index, (file, title, icon, section, listed) in enumerate(PAGES):
    if listed:
        pages.setdefault(section, []).append(st.Page(file, title=title, icon=icon, url_path=url_path(file),
                                                     default=index == 0))

with st.sidebar:
    st.markdown(f"**Signal Stream** · `{settings.backend.upper()}`")
    try:
        level_badge(worst([hop.level for hop in context.health_chain()]), "Pipeline")
    except SignalStreamError as error:
        st.caption(f"Pipeline status unavailable: {error}")
    st.caption(f"{user.name} · {user.role}")

st.navigation(pages).run()
