"""Demo replay: send the bundled sample or an uploaded CSV into the stream, in the background."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import streamlit as st

from core.auth import perform
from core.demo import save_upload
from core.errors import InputError, SignalStreamError
from core.replay import ReplayOptions, count_data_lines, validate_csv
from ui import actions, context
from ui.widgets import fmt_time

context.through_router()
settings = context.settings()
user = context.current_user()
st.title("Demo replay")
if not (settings.demo_mode and user.is_operator):
    st.error("Demo replay needs demo mode (SIGNAL_DEMO_MODE) and the operator role.")
    st.stop()
actions.run_pending()
manager = context.replay_manager()


@st.cache_data(show_spinner="Checking the CSV…", max_entries=20)
def validation(path: str, modified: float, time_mode: str) -> dict[str, object]:
    report = validate_csv(Path(path), time_mode)  # type: ignore[arg-type]
    return {"rows": report.rows, "valid": report.valid, "rejected": report.rejected,
            "rejections": [(r.line, r.reason) for r in report.rejections], "nulled": report.nulled}


source = st.radio("Source", ["Bundled sample", "Upload a CSV"], key="source", horizontal=True)
path: Path | None = settings.sample_csv
source_name = "sample"
if source == "Upload a CSV":
    path = None
    uploaded = st.file_uploader(f"CSV with the source header (at most {settings.upload_limit_mb:g} MB)",
                                type=["csv"], key="upload")
    if uploaded is not None:
        saved = st.session_state.get("saved_upload")
        if saved and saved[0] == uploaded.file_id:
            path = Path(saved[1])
        else:
            data = uploaded.getvalue()

            def store() -> tuple[Path, int]:
                stored = save_upload(data, uploaded.name, settings.home, settings.upload_limit_mb)
                return stored, count_data_lines(stored)

            try:
                # Audited like an action: who put which file (name, size, rows) on the console's disk.
                path, _rows = perform(user, "upload_csv", uploaded.name, store, context.audit_log(),
                                      detail=f"{len(data):,} bytes",
                                      describe=lambda saved: f"{len(data):,} bytes, {saved[1]:,} rows")
                st.session_state["saved_upload"] = (uploaded.file_id, str(path))
            except (SignalStreamError, OSError) as error:
                st.error(f"This file cannot be used: {error}")
        source_name = uploaded.name

left, middle, right = st.columns(3)
rate = left.number_input("Rate (records/s)", min_value=1.0, max_value=100_000.0, value=float(settings.demo_rate),
                         step=10.0, key="rate")
limit = middle.number_input("Limit (0 = whole file)", min_value=0, value=0, step=100, key="limit")
time_mode = right.radio("Event time", ["live", "recorded"], key="time_mode", horizontal=True,
                        help="live: the moment each record is sent; recorded: the CSV's hour on the chosen date")
loop = left.checkbox("Loop until stopped", key="loop")
recorded_date = None
if time_mode == "recorded":
    recorded_date = middle.date_input("Date for `hour`", (datetime.now(UTC) - timedelta(days=1)).date(),
                                      key="recorded_date")

report = None
if path is not None:
    try:
        report = validation(str(path), path.stat().st_mtime, time_mode)
    except (InputError, OSError) as error:
        st.error(f"This file cannot be replayed: {error}")
        path = None

if report is not None:
    st.subheader("Validation")
    with st.container(horizontal=True):
        st.metric("Rows", f"{report['rows']:,}")
        st.metric("Will be sent", f"{report['valid']:,}")
        st.metric("Rejected", f"{report['rejected']:,}")
    if report["rejections"]:
        st.dataframe(pd.DataFrame(report["rejections"], columns=["line", "reason"]), hide_index=True,
                     key="table_rejections", width="stretch")
    if report["nulled"]:
        st.caption("Non-numeric values sent as null: " + ", ".join(f"{k} {v}" for k, v in report["nulled"].items()))


def start_replay() -> None:
    if path is None:
        return
    options = ReplayOptions(rate=rate, limit=int(limit) or None, loop=loop, time_mode=time_mode,
                            recorded_date=recorded_date)
    actions.attempt("start_replay", source_name,
                    lambda: manager.start(path, options, started_by=user.name, source_name=source_name))


st.button("Start replay", type="primary", key="start_replay", icon=":material/play_arrow:",
          disabled=path is None or manager.running(), on_click=start_replay)


@st.fragment(run_every=1)
def progress() -> None:
    actions.run_pending()
    current = manager.current()
    if current is None:
        st.caption("No replay in this console process yet.")
        return
    running = manager.running()
    st.subheader(f"Replay {current.replay_id}" + (" (running)" if running else ""))
    if current.total_rows and not loop:
        share = min(1.0, current.rows_read / current.total_rows)
        eta = current.eta_seconds
        st.progress(share, text=f"{current.rows_read:,} of {current.total_rows:,} rows"
                    + (f" · about {eta:.0f} s left" if running and eta is not None else ""))
    with st.container(horizontal=True):
        st.metric("Sent", f"{current.sent:,}")
        st.metric("Rejected", f"{current.rejected:,}")
        st.metric("Failed", f"{current.failed:,}")
        st.metric("Rate", f"{current.records_per_second:,.0f}/s")
    if manager.last_error():
        st.error(f"The replay stopped on an error: {manager.last_error()}")
    if running:
        st.button("Stop", key="stop_replay", icon=":material/stop:", on_click=actions.request,
                  args=("stop_replay", current.replay_id))


progress()

st.subheader("Replays")
history = manager.history(20)
if history:
    st.dataframe(pd.DataFrame([{
        "replay": r.replay_id, "source": r.source_name, "by": r.started_by, "started": fmt_time(r.started_at),
        "ended": fmt_time(r.ended_at), "sent": r.sent, "rejected": r.rejected, "failed": r.failed,
        "stopped": r.stopped, "mode": r.time_mode, "rate": r.rate,
    } for r in history]), hide_index=True, width="stretch", key="table_replays")
else:
    st.caption("No replay yet.")
