"""The alerts panel and the wall banner (ui/alerts.py), rendered by AppTest over an alert state and log on disk."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from streamlit.testing.v1 import AppTest

from core import alerts
from core.alerts import AlertState, Finding, Verdict
from core.durable import write_text_atomically


def panel_app() -> None:
    import os

    from core.config import Settings
    from ui.alerts import show_alerts_panel

    show_alerts_panel(Settings.from_env(os.environ))


def banner_app() -> None:
    import os

    from core.config import Settings
    from ui.alerts import show_alert_banner

    show_alert_banner(Settings.from_env(os.environ))


def seed(home: Path, findings: dict[str, Verdict], *, evaluated: datetime) -> None:
    """Write the state and the log as the alerts loop does: firings first, then what the verdicts change."""
    state = AlertState()
    for rule, verdict in findings.items():
        state.apply({rule: verdict}, evaluated - timedelta(minutes=5))
    state.evaluated_at = evaluated
    for item in state.outbox:
        alerts.append_event(alerts.alerts_folder(home) / alerts.LOG_FILE, item.event)
    state.outbox = []
    alerts.alerts_folder(home).mkdir(parents=True, exist_ok=True)
    write_text_atomically(alerts.alerts_folder(home) / alerts.STATE_FILE, json.dumps(state.to_dict()))


FIRING = {
    "job_not_running": Verdict((Finding("job_not_running", "critical", "the streaming job etl is STOPPED"),)),
    "late_share": Verdict((Finding("late_share", "warning", "7.0 % of the job's input came too late"),)),
}


def test_the_panel_shows_firing_alerts_and_the_log(clean_environ: Path) -> None:
    seed(clean_environ, FIRING, evaluated=datetime.now(UTC))
    app = AppTest.from_function(panel_app).run()
    assert not app.exception
    [critical] = app.error
    assert critical.value.startswith("**the streaming job etl is STOPPED** · job_not_running, firing since ")
    assert "came too late" in app.warning[0].value
    log = app.dataframe[0].value
    assert sorted(log["alert"]) == ["job_not_running", "late_share"] and set(log["event"]) == {"firing"}
    assert not app.info  # the loop evaluated just now: no "not evaluated" notice


def test_the_panel_says_when_no_loop_evaluates(clean_environ: Path) -> None:
    app = AppTest.from_function(panel_app).run()
    assert not app.exception
    assert "not being evaluated" in app.info[0].value and "never evaluated here" in app.info[0].value
    seed(clean_environ, {}, evaluated=datetime.now(UTC) - timedelta(hours=1))
    app = AppTest.from_function(panel_app).run()
    assert "last evaluated 60 min ago" in app.info[0].value


def test_the_panel_says_all_clear_when_nothing_fires(clean_environ: Path) -> None:
    seed(clean_environ, {}, evaluated=datetime.now(UTC))
    app = AppTest.from_function(panel_app).run()
    assert not app.exception and "No alert firing" in app.success[0].value and not app.error


def test_the_banner_names_every_firing_alert_and_is_absent_otherwise(clean_environ: Path) -> None:
    app = AppTest.from_function(banner_app).run()
    assert not app.exception and not app.error and not app.warning
    seed(clean_environ, FIRING, evaluated=datetime.now(UTC))
    app = AppTest.from_function(banner_app).run()
    assert [e.value for e in app.error] == [
        "ALERT: the streaming job etl is STOPPED · 7.0 % of the job's input came too late"]


def test_an_unreadable_state_is_a_warning_not_an_exception(clean_environ: Path) -> None:
    folder = alerts.alerts_folder(clean_environ)
    folder.mkdir(parents=True)
    (folder / alerts.STATE_FILE).write_text("{not json")
    for app in (AppTest.from_function(panel_app).run(), AppTest.from_function(banner_app).run()):
        assert not app.exception and "unreadable" in app.warning[0].value
