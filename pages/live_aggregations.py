"""Live aggregations: the analysts' charts over a chosen event-time range, refreshed in place."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import streamlit as st

from core import charts, frames, queries
from ui import context
from ui.widgets import fmt_time, panel_footer, panel_header

context.through_router()
settings = context.settings()
st.title("Live aggregations")

controls = st.columns([3, 3, 3])
with controls[0]:
    range_label = st.segmented_control(
        "Event time", [*context.RANGES, "Custom"], default="1 h", key="range", selection_mode="single"
    ) or "1 h"
custom: tuple[datetime, datetime] | None = None
if range_label == "Custom":
    today = datetime.now(UTC).date()
    start_col, end_col = st.columns(2)
    start_day = start_col.date_input("From (UTC)", today, key="custom_from_day")
    start_time = start_col.time_input("From time", time(0, 0), key="custom_from_time")
    end_day = end_col.date_input("To (UTC)", today + timedelta(days=1), key="custom_to_day")
    end_time = end_col.time_input("To time", time(0, 0), key="custom_to_time")
    custom = (datetime.combine(start_day, start_time, UTC), datetime.combine(end_day, end_time, UTC))
    if custom[1] <= custom[0]:
        st.error("The end of the range must be after its start.")
        st.stop()



def filter_options(name: str, column: str) -> list[str]:
    # From the widest cached answer (24 h), so a filter never hides its own choices.
    panel = context.query(name, *context.time_window("24 h"), slot="options")
    return frames.options(panel.result.frame if panel.result is not None else None, column)


operator_options = filter_options("signal_by_operator", "operator")
provider_options = filter_options("gps_by_provider", "provider")
operators = controls[1].multiselect("Operators", operator_options, key="operators", placeholder="All operators")
providers = controls[2].multiselect("Providers", provider_options, key="providers", placeholder="All providers")


def annotations(since: datetime, until: datetime) -> list[tuple[datetime, str]]:
    if not settings.demo_mode:
        return []
    from core.demo import replay_marks

    return replay_marks(context.replay_manager().history(), since, until)


@st.fragment(run_every=settings.refresh_seconds)
def panels() -> None:
    since, until = custom or context.time_window(range_label)
    slot = range_label if custom is None else f"custom-{since.isoformat()}-{until.isoformat()}"
    watermark = context.watermark()

    left, right = st.columns(2)
    with left:
        panel = context.query("signal_by_operator", since, until, slot=slot)
        if panel_header(panel, "Average signal by operator") and panel.result is not None:
            frame = frames.keep(panel.result.frame, "operator", operators)
            st.plotly_chart(charts.signal_by_operator_bar(frame), key="chart_signal_by_operator")
            panel_footer(panel, "signal_by_operator")
    with right:
        panel = context.query("signal_per_minute", since, until, slot=slot)
        if panel_header(panel, "Signal per minute") and panel.result is not None:
            frame = frames.keep(panel.result.frame, "operator", operators)
            figure = charts.signal_per_minute_line(frame, watermark=watermark, annotations=annotations(since, until))
            st.plotly_chart(figure, key="chart_signal_per_minute")
            st.caption("Dashed: provisional windows, after the job's watermark; late data may still change them.")
            panel_footer(panel, "signal_per_minute")

    left, right = st.columns(2)
    with left:
        panel = context.query("gps_by_provider", since, until, slot=slot)
        if panel_header(panel, "GPS precision and satellites by provider") and panel.result is not None:
            frame = frames.keep(panel.result.frame, "provider", providers)
            st.plotly_chart(charts.gps_by_provider_bars(frame), key="chart_gps_by_provider")
            panel_footer(panel, "gps_by_provider")
    with right:
        panel = context.query("coverage_cells", since, until, slot=slot)
        if panel_header(panel, "Coverage map") and panel.result is not None:
            cells = charts.combine_cells(panel.result.frame, operators or None)
            st.plotly_chart(charts.coverage_map(cells, settings.grid_degrees), key="chart_coverage")
            window = queries.get("coverage_cells").window_seconds
            start, end = queries.snap(since, until, window)
            st.caption(f"Coverage is kept in {window // 60}-minute windows: this map counts "
                       f"{fmt_time(start)} to {fmt_time(end)}.")
            panel_footer(panel, "coverage_cells")

    panel = context.query("status_by_postal_code", since, until, slot=slot)
    if panel_header(panel, "Network status by postal code") and panel.result is not None:
        st.plotly_chart(charts.status_stacked_bar(panel.result.frame), key="chart_status")
        st.dataframe(panel.result.frame, hide_index=True, width="stretch", key="table_status")
        if operators:
            st.caption("The operator filter does not apply here: status counts are kept per postal code only.")
        panel_footer(panel, "status_by_postal_code")


panels()
