"""Pipeline health: stream, job, crawlers and lake, with the operators' actions."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core import charts
from core.errors import SignalStreamError
from core.health import Level
from ui import actions, context
from ui.widgets import crawler_changes, fmt_clock, fmt_time, level_badge

context.through_router()
settings = context.settings()
user = context.current_user()
st.title("Pipeline health")
actions.run_pending()


@st.fragment(run_every=settings.refresh_seconds)
def stream_and_job() -> None:
    try:
        stream_section()
    except SignalStreamError as error:
        st.error(f"The stream's state cannot be read: {error}")
    try:
        job_section()
    except SignalStreamError as error:
        st.error(f"The job's state cannot be read: {error}")


def stream_section() -> None:
    stream = context.stream_health()
    st.subheader(f"Stream `{stream.name}`")
    # Tiles in rows that wrap: in fixed columns a narrow window cut their labels and values short.
    with st.container(horizontal=True):
        st.metric("Records waiting", f"{stream.pending_records or 0:,}", border=True)
        st.metric("Oldest waiting since (UTC)", fmt_clock(stream.oldest_pending_at), border=True,
                  help=fmt_time(stream.oldest_pending_at))
        st.metric("Last record sent (UTC)", fmt_clock(stream.last_record_at), border=True,
                  help=fmt_time(stream.last_record_at))
    if stream.detail:
        st.caption(stream.detail)


def job_section() -> None:
    job = context.job_status()
    st.subheader(f"Streaming job `{job.name}`")
    level = {"RUNNING": Level.GREEN, "FAILED": Level.RED, "STOPPED": Level.RED}.get(job.state, Level.AMBER)
    level_badge(level, text=job.state)
    if job.error:
        st.error(f"Last error: {job.error}")
    last = job.last_batch
    totals = job.totals
    with st.container(horizontal=True):
        st.metric("Batches", f"{totals.get('batches', 0):,}", border=True)
        st.metric("Input rows/s", f"{last.input_rows_per_second:,.0f}" if last else "–", border=True)
        st.metric("Processed rows/s", f"{last.processed_rows_per_second:,.0f}" if last else "–", border=True)
        st.metric("Batch duration", f"{last.duration_ms / 1000:.1f} s" if last else "–", border=True)
        st.metric("Watermark (UTC)", fmt_clock(last.watermark) if last else "–", border=True,
                  help="Windows ending after the watermark are provisional: late data may still change them.")
    with st.container(horizontal=True):
        st.metric("Input rows", f"{totals.get('input_rows', 0):,}", border=True)
        st.metric("Aggregated", f"{totals.get('aggregated_rows', 0):,}", border=True)
        st.metric("Late (dropped)", f"{totals.get('late_rows', 0):,}", border=True)
        st.metric("Duplicates (dropped)", f"{totals.get('duplicate_rows', 0):,}", border=True)
        st.metric("Quarantined", f"{totals.get('quarantined_rows', 0):,}", border=True)
    if job.restarts:
        st.caption(f"The supervisor restarted the job {job.restarts} time(s).")
    if job.recent_batches:
        st.plotly_chart(charts.batches_chart(job.recent_batches), key="chart_batches")


stream_and_job()

if user.is_operator:
    try:
        job_state = context.job_status().state
    except SignalStreamError:
        job_state = "UNKNOWN"
    with st.container(horizontal=True):
        st.button("Start job", key="start_job", icon=":material/play_arrow:",
                  disabled=job_state in ("RUNNING", "STARTING", "RESTARTING"),
                  on_click=actions.request, args=("start_job", settings.job_name))
        st.button("Stop job", key="stop_job", icon=":material/stop:", disabled=job_state in ("STOPPED", "FAILED"),
                  on_click=actions.ask, args=("stop_job", settings.job_name,
                                              f"Stop the streaming job `{settings.job_name}`? Records wait in the "
                                              "stream until it runs again."))
    if job_state == "FAILED" and "refusing to start" in (context.job_status().error or ""):
        st.button("Reset the checkpoint and start", key="reset_checkpoint", icon=":material/restart_alt:",
                  on_click=actions.ask, args=(
                      "reset_checkpoint_and_start_job", settings.job_name,
                      f"Start `{settings.job_name}` on a **new checkpoint**? The old one is moved aside and the "
                      "stream is read again from its starting position: records the lake already counted and that "
                      "are still in the stream are counted again (see README, *When the job refuses its "
                      "checkpoint*). Restore the old checkpoint instead if you can."))
    actions.confirmation("job", {"stop_job", "reset_checkpoint_and_start_job"})


@st.fragment(run_every=2)
def crawlers() -> None:
    st.subheader("Crawlers")
    actions.run_pending()  # the crawler buttons rerun this fragment only
    try:
        states = context.crawler_states()
    except SignalStreamError as error:
        st.error(f"The crawlers' states cannot be read: {error}")
        return
    table = pd.DataFrame([{
        "crawler": c.name, "state": c.state, "last result": c.last_result or "never run",
        "started": fmt_time(c.last_started), "finished": fmt_time(c.last_finished),
        "duration (s)": round((c.last_finished - c.last_started).total_seconds(), 1)
        if c.last_finished and c.last_started and c.last_finished >= c.last_started else None,
        "what changed": crawler_changes(c),
    } for c in states])
    st.dataframe(table, hide_index=True, width="stretch", key="table_crawlers")
    if user.is_operator:
        # A row that wraps: one column per crawler cut the table names short on a laptop.
        with st.container(horizontal=True):
            for state in states:
                st.button(
                    f"Re-run {state.table}", key=f"crawl_{state.name}", icon=":material/refresh:",
                    disabled=state.state == "RUNNING",
                    help="Running…" if state.state == "RUNNING" else f"Start {state.name}",
                    on_click=actions.ask,
                    args=("start_crawler", state.name, f"Start crawler `{state.name}` now?"),
                )
        actions.confirmation("crawler", {"start_crawler"})


crawlers()

st.subheader("Lake")
try:
    tables = context.lake_freshness()
except SignalStreamError as error:
    st.error(f"The lake cannot be listed: {error}")
    st.stop()
st.dataframe(pd.DataFrame([{
    "table": t.table, "files": t.files, "partitions": t.partitions, "newest commit": fmt_time(t.newest_file_at),
    "catalogued": t.catalogued, "partitions not catalogued": t.uncatalogued_partitions,
} for t in tables]), hide_index=True, width="stretch", key="table_lake")
try:
    maintenance = context.job_status().maintenance
except SignalStreamError:
    maintenance = {}
if maintenance:
    st.caption("The job compacts partitions as they fill and close, and vacuums replaced files after their "
               "retention (Delta OPTIMIZE / partition rewrites and VACUUM).")
    st.dataframe(pd.DataFrame([{
        "run": run.kind, "at": fmt_time(run.at), "seconds": round(run.seconds, 2),
        "partitions rewritten": run.partitions if run.kind == "compaction" else None,
        "files replaced": f"{run.files_removed} -> {run.files_added}" if run.kind == "compaction" else None,
        "files deleted": run.files_deleted if run.kind == "vacuum" else None,
        "error": run.error or "",
    } for run in maintenance.values()]), hide_index=True, width="stretch", key="table_maintenance")
    for run in maintenance.values():
        if run.error:
            st.warning(f"The last {run.kind} failed: {run.error}. The job retries it on its next run.")
