"""Alerts: each rule on hand-built snapshots, firing and resolving once, the durable state and log, and the
loop against the real local backend posting to a real HTTP server (http.server in a thread)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from core import alerts
from core.alerts import AlertMonitor, AlertState, Finding, Observation, Thresholds, Verdict
from core.backends.local import build_local_backend
from core.cli import main
from core.config import Settings
from core.domain import BatchProgress, JobStatus, StreamHealth, TableFreshness
from core.errors import BackendError, ConfigError, ConflictError
from tests.conftest import PROJECT_ROOT
from tests.lake_fixtures import SIGNAL, signal_rows, write_rows

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
LIMITS = Thresholds(stale_seconds=300, quarantine_percent=5, late_percent=5, signal_drop=5)


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def batch(seconds_ago: float, rows: int = 1000, *, quarantined: int = 0, late: int = 0) -> BatchProgress:
    return BatchProgress(1, ago(seconds_ago), rows, rows - quarantined, quarantined, late, 0, 10.0, 10.0, 500,
                         ago(600))


FRESH_STREAM = StreamHealth("s", True, pending_records=0, last_record_at=ago(5))
RUNNING = JobStatus("etl", "RUNNING", last_batch=batch(5))
TABLES = (TableFreshness("status_count", ago(10), 3, 1, True),)


def seen(**changes: Any) -> Observation:
    return replace(Observation(NOW, FRESH_STREAM, RUNNING, TABLES), **changes)


def keys(verdict: Verdict | None) -> list[str]:
    assert verdict is not None
    return [finding.key for finding in verdict.findings]


def check(rule: str, observation: Observation) -> Verdict | None:
    return next(r for r in alerts.RULES if r.name == rule).check(observation, LIMITS)


# --- the rules -----------------------------------------------------------------------------------------

def test_rules_are_one_declarative_list_with_unique_names() -> None:
    names = [rule.name for rule in alerts.RULES]
    assert names == ["stale", "job_not_running", "quarantine_share", "late_share", "signal_drop"]
    assert all(rule.description for rule in alerts.RULES)


def test_a_healthy_pipeline_fires_nothing() -> None:
    for rule in alerts.RULES:
        verdict = rule.check(seen(), LIMITS)
        assert verdict is None or verdict.findings == (), rule.name  # None: signal_drop had nothing to read


def test_only_the_first_stale_hop_fires_and_the_hops_after_it_are_not_judged() -> None:
    quiet = StreamHealth("s", True, pending_records=0, last_record_at=ago(400))
    verdict = check("stale", seen(stream=quiet, tables=(TableFreshness("status_count", ago(450), 3, 1, True),)))
    assert keys(verdict) == ["stale:sent"]
    assert verdict is not None and verdict.unjudged == {"stale:backlog", "stale:lake", "stale:catalog"}
    assert "400 s" in verdict.findings[0].summary or "7 min" in verdict.findings[0].summary


def test_a_backlog_older_than_the_limit_fires_when_the_producer_is_fresh() -> None:
    waiting = StreamHealth("s", True, pending_records=5000, oldest_pending_at=ago(301), last_record_at=ago(1))
    assert keys(check("stale", seen(stream=waiting, tables=(TableFreshness("t", ago(400), 1, 1, True),)))) == [
        "stale:backlog"]
    young = StreamHealth("s", True, pending_records=5000, oldest_pending_at=ago(299), last_record_at=ago(1))
    assert keys(check("stale", seen(stream=young))) == []


def test_an_old_lake_commit_fires_when_records_flow() -> None:
    assert keys(check("stale", seen(tables=(TableFreshness("status_count", ago(301), 3, 1, True),)))) == [
        "stale:lake"]


def test_an_uncatalogued_table_is_a_held_finding() -> None:
    verdict = check("stale", seen(tables=(TableFreshness("status_count", ago(10), 3, 1, False),)))
    assert verdict is not None and [(f.key, f.hold_seconds) for f in verdict.findings] == [("stale:catalog", 300)]


@pytest.mark.parametrize(("state", "hold"), [("STOPPED", 0), ("FAILED", 0), ("STARTING", 300), ("RESTARTING", 300),
                                             ("UNKNOWN", 300)])
def test_a_job_that_is_not_running_is_a_finding(state: str, hold: float) -> None:
    verdict = check("job_not_running", seen(job=JobStatus("etl", state, error="boom" if state == "FAILED" else None)))
    assert verdict is not None
    [finding] = verdict.findings
    assert (finding.key, finding.severity, finding.hold_seconds) == ("job_not_running", "critical", hold)
    assert state in finding.summary
    assert check("job_not_running", seen()) == Verdict()


def test_quarantine_and_late_shares_over_the_last_five_minutes() -> None:
    job = replace(RUNNING, recent_batches=(batch(900, quarantined=900, late=900), batch(60, quarantined=40),
                                           batch(30, quarantined=20, late=80)))
    assert keys(check("quarantine_share", seen(job=job))) == []  # 60 of 2000 = 3 %; the old batch is outside
    assert keys(check("late_share", seen(job=job))) == []  # 80 of 2000 = 4 %
    worse = replace(job, recent_batches=(*job.recent_batches, batch(10, quarantined=100, late=50)))
    verdict = check("quarantine_share", seen(job=worse))
    assert keys(verdict) == ["quarantine_share"]  # 160 of 3000 = 5.3 %
    assert verdict is not None
    assert "5.3 %" in verdict.findings[0].summary and "160 of 3,000" in verdict.findings[0].summary
    assert keys(check("late_share", seen(job=worse))) == []  # 130 of 3000 = 4.3 %
    later = replace(worse, recent_batches=(*worse.recent_batches, batch(5, rows=100, late=40)))
    assert keys(check("late_share", seen(job=later))) == ["late_share"]  # 170 of 3100 = 5.5 %


def test_shares_need_enough_input() -> None:
    few = replace(RUNNING, recent_batches=(batch(10, rows=50, quarantined=50),))
    assert keys(check("quarantine_share", seen(job=few))) == []


NAN = float("nan")


def signal_frame(**operators: tuple[float, int]) -> pd.DataFrame:
    return pd.DataFrame({"operator": list(operators), "avg_signal": [v[0] for v in operators.values()],
                         "samples": [v[1] for v in operators.values()]})


def test_an_operator_whose_average_signal_dropped_from_the_previous_hour_fires() -> None:
    hours = alerts.SignalHours(
        last=signal_frame(Movistar=(10.0, 400), Orange=(14.5, 400), Yoigo=(2.0, 10), Vodafone=(NAN, NAN)),
        previous=signal_frame(Movistar=(15.0, 500), Orange=(18.0, 500), Yoigo=(20.0, 500), Vodafone=(20.0, 500)))
    verdict = check("signal_drop", seen(signal=hours))
    # Orange dropped 3.5 (< 5); Yoigo has too few samples; Vodafone has no figures (SQL NULLs)
    assert keys(verdict) == ["signal_drop:Movistar"]
    assert verdict is not None and "down 5.0 from 15.0" in verdict.findings[0].summary
    assert check("signal_drop", seen()) is None  # not read this time: not judged


# --- firing and resolving once ------------------------------------------------------------------------

def test_a_finding_fires_once_and_resolves_once() -> None:
    state = AlertState()
    stopped = {"job_not_running": Verdict((Finding("job_not_running", "critical", "stopped"),))}
    [fired] = state.apply(stopped, NOW)
    assert (fired.kind, fired.key, fired.since) == ("firing", "job_not_running", NOW)
    assert state.apply(stopped, NOW + timedelta(seconds=2)) == []
    assert state.apply({"job_not_running": None}, NOW + timedelta(seconds=4)) == []  # not judged: still firing
    [resolved] = state.apply({"job_not_running": Verdict()}, NOW + timedelta(seconds=6))
    assert (resolved.kind, resolved.since, resolved.time) == ("resolved", NOW, NOW + timedelta(seconds=6))
    assert "RESOLVED after 6 s" in alerts.message(resolved)
    assert state.firing == {} and [item.event.kind for item in state.outbox] == ["firing", "resolved"]


def test_a_held_finding_fires_only_after_it_held_long_enough() -> None:
    state = AlertState()
    starting = {"job_not_running": Verdict((Finding("job_not_running", "critical", "starting", 300),))}
    assert state.apply(starting, NOW) == []
    assert state.apply(starting, NOW + timedelta(seconds=299)) == []
    assert [e.kind for e in state.apply(starting, NOW + timedelta(seconds=300))] == ["firing"]
    brief = AlertState()
    brief.apply(starting, NOW)
    assert brief.apply({"job_not_running": Verdict()}, NOW + timedelta(seconds=20)) == []  # started in time
    assert brief.pending == {} and brief.outbox == []


def test_an_unjudged_key_keeps_firing_and_a_judged_one_resolves() -> None:
    state = AlertState()
    state.apply({"stale": Verdict((Finding("stale:lake", "critical", "lake old"),))}, NOW)
    upstream = Verdict((Finding("stale:sent", "critical", "quiet"),), frozenset({"stale:lake"}))
    assert [(e.kind, e.key) for e in state.apply({"stale": upstream}, NOW)] == [("firing", "stale:sent")]
    assert set(state.firing) == {"stale:lake", "stale:sent"}
    assert sorted((e.kind, e.key) for e in state.apply({"stale": Verdict()}, NOW)) == [
        ("resolved", "stale:lake"), ("resolved", "stale:sent")]


def test_the_state_round_trips_through_json() -> None:
    state = AlertState()
    state.apply({"stale": Verdict((Finding("stale:sent", "critical", "quiet"), Finding("stale:x", "warning", "w",
                                                                                         60)))}, NOW)
    state.evaluated_at = NOW
    assert AlertState.from_dict(json.loads(json.dumps(state.to_dict()))) == state


# --- the log and the state on disk ---------------------------------------------------------------------

def test_the_log_skips_a_torn_line_and_shows_an_event_logged_twice_once(tmp_path: Path) -> None:
    state = AlertState()
    first, second = (state.apply({rule: Verdict((Finding(f"{rule}:x", "warning", rule),))}, NOW)[0] for rule in "ab")
    log = alerts.alerts_folder(tmp_path) / alerts.LOG_FILE
    alerts.append_event(log, first)
    alerts.append_event(log, first)  # a crash between the log and the state: logged again after the restart
    with log.open("ab") as handle:
        handle.write(b'{"id": "torn", "time": "2026-')  # a crash mid-write
    alerts.append_event(log, second)
    recent = alerts.recent_alerts(tmp_path)
    assert [e.key for e in recent] == ["b:x", "a:x"] and recent.skipped == 1
    assert log.read_bytes().count(b"\n") == 4  # the torn line was ended before the next event
    assert alerts.recent_alerts(tmp_path / "nothing") == []


def test_an_unreadable_state_is_an_error_for_readers_and_a_fresh_start_for_the_loop(tmp_path: Path) -> None:
    folder = alerts.alerts_folder(tmp_path)
    folder.mkdir(parents=True)
    (folder / alerts.STATE_FILE).write_text('{"firing": {"x": 1}}')
    with pytest.raises(BackendError, match="unreadable"):
        alerts.firing_alerts(tmp_path)
    settings = Settings.from_env({"SIGNAL_HOME": str(tmp_path)})
    monitor = AlertMonitor(settings, build_local_backend(settings))
    assert monitor.start_problem and "unreadable" in monitor.start_problem and monitor.state == AlertState()


def test_the_loop_is_silent_when_nothing_evaluated_lately() -> None:
    assert alerts.loop_silent(None, NOW, 2)
    assert not alerts.loop_silent(ago(40), NOW, 2)
    assert alerts.loop_silent(ago(51), NOW, 2)
    assert not alerts.loop_silent(ago(60), NOW, 20)


def test_one_loop_per_home(tmp_path: Path) -> None:
    with alerts.loop_lock(tmp_path), pytest.raises(ConflictError, match="another alerts loop"), \
            alerts.loop_lock(tmp_path):
        pass
    with alerts.loop_lock(tmp_path):  # released with the first
        pass


@pytest.mark.parametrize("url", ["hooks.example.com/x", "ftp://hooks.example.com/x", "https:///services/T0"])
def test_a_webhook_that_is_not_an_http_url_is_refused_without_echoing_it(url: str) -> None:
    with pytest.raises(ConfigError, match="SIGNAL_ALERT_WEBHOOK") as refused:
        Settings.from_env({"SIGNAL_ALERT_WEBHOOK": url})
    assert url not in str(refused.value)


# --- the loop against the local backend and a real webhook ----------------------------------------------

class WebhookServer:
    """A real HTTP server on loopback, in a thread, that keeps every JSON body posted to it (when it answers 200)."""

    def __init__(self) -> None:
        self.received: list[tuple[float, dict[str, Any]]] = []  # (time.monotonic() on receipt, body)
        self.status = 200
        self.refused = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if server.status == 200:
                    assert self.headers["Content-Type"] == "application/json"
                    server.received.append((time.monotonic(), json.loads(body)))
                else:
                    server.refused += 1
                self.send_response(server.status)
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/services/T000/B000/not-a-secret"
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)

    def texts(self) -> list[str]:
        return [body["text"] for _, body in self.received]

    def __enter__(self) -> WebhookServer:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def webhook() -> Iterator[WebhookServer]:
    with WebhookServer() as server:
        yield server


def local_settings(home: Path, **env: str) -> Settings:
    return Settings.from_env({"SIGNAL_HOME": str(home), "SIGNAL_TRIGGER_SECONDS": "2", **env})


def put_records(settings: Settings, count: int = 3) -> None:
    result = build_local_backend(settings).stream.put_records([{"hour": "10:00:00", "signal": n} for n in range(count)])
    assert result.sent == count


def test_the_stopped_local_job_is_posted_once_and_survives_a_restart_of_the_loop(
        clean_environ: Path, webhook: WebhookServer) -> None:
    settings = local_settings(clean_environ, SIGNAL_ALERT_WEBHOOK=webhook.url)
    monitor = AlertMonitor(settings, build_local_backend(settings))
    first = monitor.evaluate()
    assert [(e.kind, e.key) for e in first.events] == [("firing", "job_not_running")]
    assert webhook.texts() == [f"Signal Stream alert FIRING (critical) [job_not_running]: the streaming job "
                               f"{settings.job_name} is STOPPED"]
    assert monitor.evaluate().events == ()
    restarted = AlertMonitor(settings, build_local_backend(settings))  # a new loop on the same home
    assert restarted.evaluate().events == () and len(webhook.received) == 1
    assert [a.key for a in alerts.firing_alerts(clean_environ)] == ["job_not_running"]
    assert [(e.kind, e.key) for e in alerts.recent_alerts(clean_environ)] == [("firing", "job_not_running")]


def test_a_failed_post_is_retried_at_the_next_evaluation_in_order(clean_environ: Path, webhook: WebhookServer) -> None:
    settings = local_settings(clean_environ, SIGNAL_ALERT_WEBHOOK=webhook.url)
    put_records(settings)
    monitor = AlertMonitor(settings, build_local_backend(settings))
    webhook.status = 500
    later = datetime.now(UTC) + timedelta(seconds=400)  # the records were sent 400 s before this evaluation
    failed = monitor.evaluate(later)
    assert sorted(e.key for e in failed.events) == ["job_not_running", "stale:sent"]
    assert failed.delivery_error == "the webhook at 127.0.0.1 answered HTTP 500" and webhook.refused == 1
    # logged at once, posted later: the log does not wait for the webhook
    assert len(alerts.recent_alerts(clean_environ)) == 2
    webhook.status = 200
    put_records(settings)  # the producer is back: stale:sent resolves
    retried = monitor.evaluate()
    assert [(e.kind, e.key) for e in retried.events] == [("resolved", "stale:sent")] and retried.delivery_error is None
    texts = webhook.texts()
    assert len(texts) == 3 and "FIRING" in texts[0] and "FIRING" in texts[1]
    assert texts[2].startswith("Signal Stream alert RESOLVED after") and "[stale:sent]" in texts[2]
    assert monitor.state.outbox == []


def test_an_unreachable_webhook_never_stops_the_evaluation(clean_environ: Path) -> None:
    with WebhookServer() as gone:
        url = gone.url
    settings = local_settings(clean_environ, SIGNAL_ALERT_WEBHOOK=url)
    monitor = AlertMonitor(settings, build_local_backend(settings))
    evaluation = monitor.evaluate()
    assert evaluation.delivery_error and "could not be reached" in evaluation.delivery_error
    assert "not-a-secret" not in evaluation.delivery_error  # the URL is a secret
    assert [item.posted for item in monitor.state.outbox] == [False]
    assert [a.key for a in alerts.firing_alerts(clean_environ)] == ["job_not_running"]


def test_a_drop_of_an_operators_signal_in_the_local_lake_fires_and_is_not_judged_between_reads(
        clean_environ: Path) -> None:
    # Two hours of signal_strength_by_operator in the real lake, read by DuckDB through signal_by_operator_compared.
    now = datetime(2026, 11, 28, 12, 30, tzinfo=UTC)
    lake = clean_environ / "lake"
    for batch_id, (minutes_ago, movistar, orange) in enumerate([(90, 15.0, 12.0), (30, 8.0, 11.0)]):
        start = now - timedelta(minutes=minutes_ago)
        write_rows(lake, SIGNAL, batch_id, signal_rows(start, "Movistar", movistar * 100, 100)
                   + signal_rows(start, "Orange", orange * 100, 100))
    settings = local_settings(clean_environ)
    backend = build_local_backend(settings)
    backend.crawlers.run("crawler_signal_strength_by_operator")
    monitor = AlertMonitor(settings, backend)
    fired = monitor.evaluate(now)
    drops = [e for e in fired.events if e.rule == "signal_drop"]
    assert [(e.kind, e.key) for e in drops] == [("firing", "signal_drop:Movistar")]  # Orange: down 1 only
    assert "average signal 8.0 over the last hour, down 7.0 from 15.0" in drops[0].summary
    # Read once a minute: 30 s later the rule is not judged, so the alert stays as it is
    later = monitor.evaluate(now + timedelta(seconds=30))
    assert [e for e in later.events if e.rule == "signal_drop"] == []
    assert "signal_drop:Movistar" in monitor.state.firing
    # An hour on, the drop's hour is the previous one and nothing newer compares with it: judged, it resolves
    resolved = monitor.evaluate(now + timedelta(minutes=61))
    assert [(e.kind, e.key) for e in resolved.events if e.rule == "signal_drop"] == [
        ("resolved", "signal_drop:Movistar")]


def test_alerts_list_and_rules_on_the_command_line(clean_environ: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["alerts", "run", "--once"]) == 0
    assert "FIRING (critical) [job_not_running]" in capsys.readouterr().out
    assert main(["alerts", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [a["key"] for a in listed["firing"]] == ["job_not_running"] and listed["recent"][0]["kind"] == "firing"
    assert main(["alerts", "rules"]) == 0
    assert "signal_drop" in capsys.readouterr().out


def start_loop(home: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    """Start `alerts run` and return once it has evaluated (its state file exists)."""
    state = alerts.alerts_folder(home) / alerts.STATE_FILE
    state.unlink(missing_ok=True)
    loop = subprocess.Popen([sys.executable, "-m", "core.cli", "alerts", "run"], cwd=PROJECT_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not state.exists() and time.monotonic() < deadline and loop.poll() is None:
        time.sleep(0.1)
    assert state.exists(), loop.communicate()
    return loop


def test_the_loop_stops_cleanly_on_sigterm_and_on_alerts_stop(clean_environ: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    env = {**os.environ, "SIGNAL_TRIGGER_SECONDS": "1"}
    loop = start_loop(clean_environ, env)
    try:
        second = subprocess.run([sys.executable, "-m", "core.cli", "alerts", "run", "--once"], cwd=PROJECT_ROOT,
                                env=env, capture_output=True, text=True, timeout=60)
        assert (second.returncode, "another alerts loop" in second.stderr) == (2, True)
        loop.send_signal(signal.SIGTERM)  # how `make run` stops it
        out, err = loop.communicate(timeout=30)
        assert loop.returncode == 0, err
        assert "alerts: stopped" in err and "[job_not_running]" in out

        loop = start_loop(clean_environ, env)
        assert main(["alerts", "stop"]) == 0  # how `make stop` stops one left behind
        assert capsys.readouterr().out == f"alerts loop (pid {loop.pid}) stopped\n"
        assert loop.wait(timeout=30) == 0 and "alerts: stopped" in loop.communicate()[1]
        assert main(["alerts", "stop"]) == 0 and capsys.readouterr().out == "no alerts loop runs\n"
    finally:
        if loop.poll() is None:
            loop.kill()
