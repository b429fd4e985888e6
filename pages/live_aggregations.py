"""Live aggregations: the analysts' charts over a chosen event-time range, refreshed in place."""

from __future__ import annotations

from datetime import UTC, datetime

import streamlit as st

from core import charts, frames, queries, views
from ui import context, share
from ui.context import Panel
from ui.widgets import chart_panel, fmt_time

context.through_router()
settings = context.settings()
st.title("Live aggregations")


def filter_options(name: str, column: str) -> list[str]:
    # From the widest cached answer (24 h), so a filter never hides its own choices.
    panel = context.query(name, *context.time_window("24 h"), slot="options")
    return frames.options(panel.result.frame if panel.result is not None else None, column)


operator_options = filter_options("signal_by_operator", "operator")
provider_options = filter_options("gps_by_provider", "provider")

# The view is its URL (ui.share): the URL's view when it is news to this page, then whatever the widgets say.
default_custom = views.default_custom(datetime.now(UTC).date())
shown, news, notices = share.opened("live_aggregations", views.LIVE_KEYS, lambda params: views.parse_live(
    params, operators=operator_options, providers=provider_options, custom=default_custom))
start, end = (shown.start, shown.end) if shown.start and shown.end else default_custom
share.show({"range": shown.range, "operators": list(shown.operators), "providers": list(shown.providers),
            "custom_from_day": start.date(), "custom_from_time": start.time(),
            "custom_to_day": end.date(), "custom_to_time": end.time()}, news)
controls = st.columns([2, 1, 1])
with controls[0]:
    range_label = st.segmented_control(
        "Event time", [*context.RANGES, views.CUSTOM], key="range", selection_mode="single"
    ) or views.DEFAULT_RANGE
custom: tuple[datetime, datetime] | None = None
if range_label == views.CUSTOM:
    start_col, end_col = st.columns(2)
    # No default value: each shows the view's (set above), which a default would contradict.
    start_day = start_col.date_input("From (UTC)", None, key="custom_from_day")
    start_time = start_col.time_input("From time", None, key="custom_from_time")
    end_day = end_col.date_input("To (UTC)", None, key="custom_to_day")
    end_time = end_col.time_input("To time", None, key="custom_to_time")
    if start_day is None or start_time is None or end_day is None or end_time is None:
        st.info("Choose the start and the end of the range.")
        st.stop()
    custom = (datetime.combine(start_day, start_time, UTC), datetime.combine(end_day, end_time, UTC))
    if custom[1] <= custom[0]:
        st.error("The end of the range must be after its start.")
        st.stop()

operators = controls[1].multiselect("Operators", operator_options, key="operators", placeholder="All operators")
providers = controls[2].multiselect("Providers", provider_options, key="providers", placeholder="All providers")
rewritten = share.keep("live_aggregations", views.LIVE_KEYS,
                       views.LiveView(range_label, *(custom or (None, None)), tuple(operators), tuple(providers)),
                       views.live_params)
for notice in () if rewritten else notices:  # a URL just rewritten has no bad value left
    st.caption(f":material/link_off: {notice}")


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

    def panel(name: str) -> Panel:
        return context.query(name, since, until, slot=slot)

    left, right = st.columns(2)
    with left:
        period = "period" if custom else range_label
        chart_panel(panel("signal_by_operator_compared"), "Average signal by operator", "signal_by_operator",
                    lambda frame: charts.signal_by_operator_bar(frames.keep(frame, "operator", operators),
                                                                period=period),
                    notes=[charts.comparison_caption(period)])
    with right:
        marks = annotations(since, until)
        chart_panel(panel("signal_per_minute"), "Signal per minute", "signal_per_minute",
                    lambda frame: charts.signal_per_minute_line(frames.keep(frame, "operator", operators),
                                                                watermark=watermark, annotations=marks),
                    notes=["Dashed: provisional windows, after the job's watermark; late data may still change them.",
                           *filter(None, [charts.marks_caption(marks)])])

    left, right = st.columns(2)
    with left:
        chart_panel(panel("gps_by_provider"), "GPS precision and satellites by provider", "gps_by_provider",
                    lambda frame: charts.gps_by_provider_bars(frames.keep(frame, "provider", providers)))
    with right:
        window = queries.get("coverage_cells").window_seconds
        start, end = queries.snap(since, until, window)
        chart_panel(panel("coverage_cells"), "Coverage map", "coverage_cells",
                    lambda frame: charts.coverage_map(charts.combine_cells(frame, operators or None),
                                                      settings.grid_degrees, tiles=settings.map_tiles),
                    notes=[f"Coverage is kept in {window // 60}-minute windows: this map counts "
                           f"{fmt_time(start)} to {fmt_time(end)}."])

    unfiltered = "The operator filter does not apply here: status counts are kept per postal code only."
    notes = [unfiltered] if operators else []
    chart_panel(panel("status_by_postal_code"), "Network status by postal code", "status_by_postal_code",
                charts.status_stacked_bar, notes=notes, table=True)


panels()
