"""Alerts in the console: the firing alerts and the recent firings and resolutions, each drawn by one call.

The rules run outside the console (`python -m core.cli alerts run`, started by `make run`); these only
read what that loop wrote under SIGNAL_HOME, so showing alerts costs no backend call.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import streamlit as st

from core import alerts
from core.config import Settings
from core.errors import SignalStreamError
from core.health import describe_age
from ui.widgets import fmt_time

ICON = {"critical": ":material/error:", "warning": ":material/warning:"}


def _firing(settings: Settings) -> tuple[alerts.FiringAlerts, str | None]:
    try:
        return alerts.firing_alerts(settings.home), None
    except SignalStreamError as error:
        return alerts.FiringAlerts(), str(error)


def show_alerts_panel(settings: Settings, *, limit: int = 10) -> None:
    """Draw the firing alerts and the alert log's newest `limit` events (the Overview's Alerts panel)."""
    st.subheader("Alerts")
    firing, problem = _firing(settings)
    now = datetime.now(UTC)
    if problem:
        st.warning(f"The firing alerts cannot be shown: {problem}")
    elif alerts.loop_silent(firing.evaluated_at, now, settings.trigger_seconds):
        where = ("On AWS, CloudWatch alarms notify the stack's SNS topic (infra/README.md). "
                 if settings.backend == "aws" else "")
        last = (f"last evaluated {describe_age((now - firing.evaluated_at).total_seconds())} ago"
                if firing.evaluated_at else "never evaluated here")
        st.info(f"The alert rules are not being evaluated ({last}). {where}"
                "Run `python -m core.cli alerts run` (`make run` starts it).", icon=":material/notifications_off:")
    for alert in firing:
        show = st.error if alert.severity == "critical" else st.warning
        show(f"**{alert.summary}** · {alert.key}, firing since {fmt_time(alert.since)}", icon=ICON[alert.severity])
    if not firing and not problem and firing.evaluated_at is not None:
        st.success(f"No alert firing (rules evaluated {fmt_time(firing.evaluated_at)})",
                   icon=":material/notifications:")
    try:
        recent = alerts.recent_alerts(settings.home, limit)
    except OSError as error:
        st.warning(f"The alert log cannot be read: {error}")
        return
    if recent:
        st.dataframe(pd.DataFrame({
            "time": [fmt_time(event.time) for event in recent],
            "event": [event.kind for event in recent],
            "alert": [event.key for event in recent],
            "severity": [event.severity for event in recent],
            "summary": [event.summary for event in recent],
        }), hide_index=True, width="stretch")
    else:
        st.caption("No alert has fired yet.")
    if recent.skipped:
        st.caption(f"{recent.skipped} unreadable line(s) of the alert log skipped.")


def show_alert_banner(settings: Settings) -> None:
    """Draw one banner naming every firing alert (the wall display); nothing when none fires."""
    firing, problem = _firing(settings)
    if problem:
        st.warning(f"Alerts cannot be shown: {problem}")
        return
    if not firing:
        return
    show = st.error if any(alert.severity == "critical" for alert in firing) else st.warning
    show("ALERT: " + " · ".join(alert.summary for alert in firing), icon=":material/notifications_active:")
