"""Alerts: rules over the pipeline's health, evaluated outside the console, logged and sent to people.

    observe the backend -> RULES -> findings -> AlertState (firing, pending, outbox) -> alert log, webhook

`python -m core.cli alerts run` evaluates the rules at most once per trigger. A finding that holds long
enough starts firing; a judged key without a finding resolves. Each firing and each resolution is one
event: written into the state's outbox durably before anything is sent, appended once to the alert log
($SIGNAL_HOME/alerts/alerts.jsonl) and, when SIGNAL_ALERT_WEBHOOK is set, posted once (a failed post
stays in the outbox and is retried at the next evaluation). The state ($SIGNAL_HOME/alerts/state.json)
survives a restart of the loop, so nothing is notified twice or forgotten. The console only reads the
state and the log (firing_alerts, recent_alerts).

Alerts change nothing in the pipeline, so they are not operator actions and nothing is audited.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import json
import os
import signal
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, get_args

import pandas as pd

from core import health
from core.backends.base import Backend
from core.config import Settings
from core.domain import JobStatus, StreamHealth, TableFreshness
from core.durable import write_text_atomically
from core.errors import BackendError, ConflictError, SignalStreamError

ALERTS_FOLDER = "alerts"
LOG_FILE = "alerts.jsonl"
STATE_FILE = "state.json"
LOCK_FILE = "loop.lock"

# Shares of input are judged over the job's batches of the last few minutes (the AWS alarms use the same
# period), and only once there is enough input for a percentage to mean something.
SHARE_WINDOW = timedelta(minutes=5)
MIN_SHARE_INPUT = 100
# An hourly average moves slowly: two lake queries a minute are plenty, whatever the trigger.
SIGNAL_EVERY = timedelta(minutes=1)
MIN_SIGNAL_SAMPLES = 50
# The state is rewritten when it changes, and at least this often so the console can tell the loop runs.
HEARTBEAT_SECONDS = 10.0
WEBHOOK_TIMEOUT_SECONDS = 5.0
# Undelivered events kept while the webhook fails (the oldest are dropped; the log still has them).
OUTBOX_LIMIT = 200

Severity = Literal["critical", "warning"]
EventKind = Literal["firing", "resolved"]
EVENT_KINDS: tuple[str, ...] = get_args(EventKind)
# Job states that are on their way to RUNNING: only an alert when they last (a Spark start takes a while).
TRANSIENT_JOB_STATES = frozenset({"STARTING", "RESTARTING", "UNKNOWN"})
CHAIN_HOPS = ("sent", "backlog", "lake", "catalog")  # the hops judged, producer first


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _time(text: Any) -> datetime:
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a time")
    return _utc(datetime.fromisoformat(text))


# --- rules ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Thresholds:
    """The rules' thresholds, from the SIGNAL_ALERT_* settings."""

    stale_seconds: float
    quarantine_percent: float
    late_percent: float
    signal_drop: float

    @classmethod
    def from_settings(cls, settings: Settings) -> Thresholds:
        """Return the thresholds of these settings."""
        return cls(settings.alert_stale_seconds, settings.alert_quarantine_percent, settings.alert_late_percent,
                   settings.alert_signal_drop)


@dataclass(frozen=True)
class Finding:
    """A rule's verdict on one key: the condition holds now; it fires once it has held `hold_seconds`."""

    key: str
    severity: Severity
    summary: str
    hold_seconds: float = 0.0


@dataclass(frozen=True)
class Verdict:
    """What one rule found, and the keys it could not judge this time (their state is kept as it is)."""

    findings: tuple[Finding, ...] = ()
    unjudged: frozenset[str] = frozenset()


@dataclass(frozen=True)
class SignalHours:
    """signal_by_operator over the last hour and over the hour before it."""

    last: pd.DataFrame
    previous: pd.DataFrame


@dataclass(frozen=True)
class Observation:
    """What one evaluation read from the backend; None where the read failed or was not due."""

    now: datetime
    stream: StreamHealth | None = None
    job: JobStatus | None = None
    tables: tuple[TableFreshness, ...] | None = None
    signal: SignalHours | None = None
    partitions_need_crawl: bool = False


@dataclass(frozen=True)
class Rule:
    """One alert rule: its name (the first part of its keys), what it watches, and its check."""

    name: str
    description: str
    check: Callable[[Observation, Thresholds], Verdict | None]  # None: not judged at all this time


def rule_of(key: str) -> str:
    """Return the rule a key belongs to (keys are `rule` or `rule:subject`)."""
    return key.split(":", 1)[0]


def _stale_chain(seen: Observation, limits: Thresholds) -> Verdict | None:
    # Only the first stale hop fires, producer first: that is where the chain breaks, and every hop after it
    # is stale because of it. Those later hops are left unjudged, neither fired nor resolved meanwhile.
    if seen.stream is None or seen.job is None or seen.tables is None:
        return None
    chain = health.freshness_chain(
        seen.stream, seen.job, seen.tables, None, now=seen.now,
        thresholds=health.Thresholds(limits.stale_seconds, 2 * limits.stale_seconds),
        partitions_need_crawl=seen.partitions_need_crawl)
    hops = {hop.key: hop for hop in chain}
    findings: list[Finding] = []
    unjudged: set[str] = set()
    for name in CHAIN_HOPS:
        key, hop = f"stale:{name}", hops[name]
        if findings:
            unjudged.add(key)
        elif name == "catalog":
            if hop.level in (health.Level.RED, health.Level.AMBER):
                findings.append(Finding(key, "warning", f"{hop.label}: {hop.detail}", limits.stale_seconds))
        elif hop.at is not None:
            age = (seen.now - _utc(hop.at)).total_seconds()
            if age > limits.stale_seconds:
                findings.append(Finding(key, "critical", f"{hop.label} is {health.describe_age(age)} old "
                                        f"(alert after {health.describe_age(limits.stale_seconds)}): {hop.detail}"))
    return Verdict(tuple(findings), frozenset(unjudged))


def _job_not_running(seen: Observation, limits: Thresholds) -> Verdict | None:
    job = seen.job
    if job is None:
        return None
    if job.state == "RUNNING":
        return Verdict()
    summary = f"the streaming job {job.name} is {job.state}" + (f": {job.error}" if job.error else "")
    hold = limits.stale_seconds if job.state in TRANSIENT_JOB_STATES else 0.0
    return Verdict((Finding("job_not_running", "critical", summary, hold),))


def _share_rule(name: str, column: str, what: str, limit_of: Callable[[Thresholds], float]
                ) -> Callable[[Observation, Thresholds], Verdict | None]:
    def check(seen: Observation, limits: Thresholds) -> Verdict | None:
        if seen.job is None:
            return None
        since = seen.now - SHARE_WINDOW
        batches = [b for b in seen.job.recent_batches if _utc(b.time) > since]
        total = sum(b.input_rows for b in batches)
        part = sum(int(getattr(b, column)) for b in batches)
        limit = limit_of(limits)
        if total < MIN_SHARE_INPUT or part * 100 <= limit * total:
            return Verdict()
        minutes = SHARE_WINDOW.total_seconds() / 60
        return Verdict((Finding(name, "warning", f"{part * 100 / total:.1f} % of the job's input of the last "
                                f"{minutes:g} minutes {what} ({part:,} of {total:,} records; alert above "
                                f"{limit:g} %)"),))
    return check


def _signal_drop(seen: Observation, limits: Thresholds) -> Verdict | None:
    if seen.signal is None:
        return None
    previous = {str(row.operator): row for row in seen.signal.previous.itertuples(index=False)}
    findings = []
    for row in seen.signal.last.itertuples(index=False):
        before = previous.get(str(row.operator))
        if before is None or pd.isna([row.samples, row.avg_signal, before.samples, before.avg_signal]).any():
            continue  # no average on one side: nothing to compare
        if min(int(row.samples), int(before.samples)) < MIN_SIGNAL_SAMPLES:
            continue  # too few samples on either side to compare averages
        now_avg, before_avg = float(row.avg_signal), float(before.avg_signal)
        if before_avg - now_avg >= limits.signal_drop:
            findings.append(Finding(
                f"signal_drop:{row.operator}", "warning",
                f"{row.operator}: average signal {now_avg:.1f} over the last hour, down {before_avg - now_avg:.1f} "
                f"from {before_avg:.1f} the hour before (alert at a drop of {limits.signal_drop:g})"))
    return Verdict(tuple(findings))


RULES: tuple[Rule, ...] = (
    Rule("stale", "the first hop of the freshness chain (last record sent, stream backlog, newest lake commit) "
         "older than SIGNAL_ALERT_STALE_SECONDS; or the catalog unready that long", _stale_chain),
    Rule("job_not_running", "the streaming job is not RUNNING (starting or restarting: for "
         "SIGNAL_ALERT_STALE_SECONDS)", _job_not_running),
    Rule("quarantine_share", "more than SIGNAL_ALERT_QUARANTINE_PERCENT of the job's input of the last 5 minutes "
         "quarantined", _share_rule("quarantine_share", "quarantined_rows", "was quarantined",
                                    lambda limits: limits.quarantine_percent)),
    Rule("late_share", "more than SIGNAL_ALERT_LATE_PERCENT of the job's input of the last 5 minutes behind the "
         "watermark", _share_rule("late_share", "late_rows", "came too late (behind the watermark)",
                                  lambda limits: limits.late_percent)),
    Rule("signal_drop", "an operator's average signal over the last hour SIGNAL_ALERT_SIGNAL_DROP or more below "
         "the hour before", _signal_drop),
)


# --- alerts, events and their state --------------------------------------------------------------------

@dataclass(frozen=True)
class Alert:
    """An alert that fires: since when, and what its rule says now."""

    key: str
    rule: str
    severity: Severity
    summary: str
    since: datetime


@dataclass(frozen=True)
class AlertEvent:
    """One firing or one resolution: what the alert log holds and the webhook receives."""

    id: str
    time: datetime
    kind: EventKind
    key: str
    rule: str
    severity: Severity
    summary: str
    since: datetime

    def to_dict(self) -> dict[str, Any]:
        """Return the event as JSON-ready data (times in UTC, ISO-8601)."""
        return {**asdict(self), "time": self.time.isoformat(), "since": self.since.isoformat()}

    @classmethod
    def from_dict(cls, data: Any) -> AlertEvent:
        """Return the event stored as `data`; ValueError when it is not a whole event."""
        if not isinstance(data, dict) or set(data) != {f.name for f in fields(cls)}:
            raise ValueError("not an alert event")
        if data["kind"] not in EVENT_KINDS or data["severity"] not in ("critical", "warning"):
            raise ValueError("unknown kind or severity")
        if not all(isinstance(data[name], str) for name in ("id", "key", "rule", "summary")):
            raise ValueError("an alert event field is not text")
        return cls(**{**data, "time": _time(data["time"]), "since": _time(data["since"])})


def _alert_to_dict(alert: Alert) -> dict[str, Any]:
    return {**asdict(alert), "since": alert.since.isoformat()}


def _alert_from_dict(data: Any) -> Alert:
    if not isinstance(data, dict) or data.get("severity") not in ("critical", "warning"):
        raise ValueError("not an alert")
    return Alert(str(data["key"]), str(data["rule"]), data["severity"], str(data["summary"]), _time(data["since"]))


@dataclass
class Outgoing:
    """An event on its way out: appended to the log yet, posted to the webhook yet."""

    event: AlertEvent
    logged: bool = False
    posted: bool = False


@dataclass
class AlertState:
    """What the loop remembers between evaluations and across restarts."""

    firing: dict[str, Alert] = field(default_factory=dict)
    pending: dict[str, datetime] = field(default_factory=dict)  # key -> since when its condition holds
    outbox: list[Outgoing] = field(default_factory=list)
    evaluated_at: datetime | None = None

    def apply(self, verdicts: Mapping[str, Verdict | None], now: datetime) -> list[AlertEvent]:
        """Turn the rules' verdicts into firings and resolutions (queued in the outbox); return them."""
        events: list[AlertEvent] = []
        for rule, verdict in verdicts.items():
            if verdict is None:
                continue
            found = {finding.key: finding for finding in verdict.findings}
            judged = [key for key in (*self.firing, *self.pending)
                      if rule_of(key) == rule and key not in found and key not in verdict.unjudged]
            for key in judged:
                self.pending.pop(key, None)
                alert = self.firing.pop(key, None)
                if alert is not None:
                    events.append(_event("resolved", alert, now))
            for key, finding in found.items():
                if key in self.firing:  # still firing: its summary follows the facts, nobody is told again
                    self.firing[key] = Alert(key, rule, finding.severity, finding.summary, self.firing[key].since)
                    continue
                first_seen = self.pending.setdefault(key, now)
                if (now - first_seen).total_seconds() >= finding.hold_seconds:
                    del self.pending[key]
                    self.firing[key] = alert = Alert(key, rule, finding.severity, finding.summary, now)
                    events.append(_event("firing", alert, now))
        self.outbox.extend(Outgoing(event) for event in events)
        del self.outbox[:-OUTBOX_LIMIT]
        return events

    def to_dict(self) -> dict[str, Any]:
        """Return the state as JSON-ready data."""
        return {
            "evaluated_at": self.evaluated_at.isoformat() if self.evaluated_at else None,
            "firing": {key: _alert_to_dict(alert) for key, alert in self.firing.items()},
            "pending": {key: since.isoformat() for key, since in self.pending.items()},
            "outbox": [{"event": item.event.to_dict(), "logged": item.logged, "posted": item.posted}
                       for item in self.outbox],
        }

    @classmethod
    def from_dict(cls, data: Any) -> AlertState:
        """Return the state stored as `data`; ValueError (or KeyError, TypeError) when it is of another shape."""
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        evaluated_at = data.get("evaluated_at")
        return cls(
            firing={str(key): _alert_from_dict(alert) for key, alert in (data.get("firing") or {}).items()},
            pending={str(key): _time(since) for key, since in (data.get("pending") or {}).items()},
            outbox=[Outgoing(AlertEvent.from_dict(item["event"]), bool(item["logged"]), bool(item["posted"]))
                    for item in data.get("outbox") or []],
            evaluated_at=_time(evaluated_at) if evaluated_at else None,
        )


def _event(kind: EventKind, alert: Alert, now: datetime) -> AlertEvent:
    return AlertEvent(uuid.uuid4().hex, now, kind, alert.key, alert.rule, alert.severity, alert.summary,
                      alert.since)


def message(event: AlertEvent) -> str:
    """Return the one-line text people receive for an event."""
    if event.kind == "firing":
        return f"Signal Stream alert FIRING ({event.severity}) [{event.key}]: {event.summary}"
    lasted = health.describe_age((event.time - event.since).total_seconds())
    return f"Signal Stream alert RESOLVED after {lasted} [{event.key}]: {event.summary}"


# --- files -----------------------------------------------------------------------------------------------

def alerts_folder(home: Path) -> Path:
    """Return the folder of the alert log and state under SIGNAL_HOME."""
    return home / ALERTS_FOLDER


def load_state(path: Path) -> AlertState:
    """Return the stored state (empty when there is none); BackendError when it is unreadable."""
    try:
        return AlertState.from_dict(json.loads(path.read_bytes()))
    except FileNotFoundError:
        return AlertState()
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise BackendError(f"the alert state {path} is unreadable ({type(error).__name__}: {error})",
                           next_step="`alerts run` starts afresh and rewrites it") from error


def append_event(path: Path, event: AlertEvent) -> None:
    """Append one event as a whole line; it is on disk when this returns (OSError is raised to the caller)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(event.to_dict()) + "\n").encode("utf-8")
    with path.open("a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        size = os.fstat(handle.fileno()).st_size
        if size and os.pread(handle.fileno(), 1, size - 1) != b"\n":
            line = b"\n" + line  # a crash tore the last line: end it, so this event is a line of its own
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())


class AlertEvents(list[AlertEvent]):
    """Events newest first, and how many stored lines were unreadable (torn or invalid) and skipped."""

    def __init__(self, events: Iterable[AlertEvent] = (), skipped: int = 0) -> None:
        super().__init__(events)
        self.skipped = skipped


class FiringAlerts(list[Alert]):
    """The alerts firing at the loop's last evaluation (critical first, oldest first), and when that was."""

    def __init__(self, alerts: Iterable[Alert] = (), evaluated_at: datetime | None = None) -> None:
        super().__init__(sorted(alerts, key=lambda a: (a.severity != "critical", a.since, a.key)))
        self.evaluated_at = evaluated_at


def recent_alerts(home: Path, limit: int = 50) -> AlertEvents:
    """Return the newest `limit` firings and resolutions of the alert log, newest first.

    A line torn by a crash is skipped and counted; an event logged twice (a crash between the log and the
    state) is shown once.
    """
    if limit <= 0:
        return AlertEvents()
    try:
        with (alerts_folder(home) / LOG_FILE).open("rb") as handle:
            lines = deque(handle, maxlen=limit * 2)
    except FileNotFoundError:
        return AlertEvents()
    events: list[AlertEvent] = []
    seen: set[str] = set()
    skipped = 0
    for line in reversed(lines):
        if not line.strip():
            continue
        try:
            event = AlertEvent.from_dict(json.loads(line))
        except (ValueError, KeyError, TypeError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            skipped += 1
            continue
        if event.id not in seen:
            seen.add(event.id)
            events.append(event)
    return AlertEvents(events[:limit], skipped)


def firing_alerts(home: Path) -> FiringAlerts:
    """Return the alerts firing at the last evaluation; BackendError when the state is unreadable."""
    state = load_state(alerts_folder(home) / STATE_FILE)
    return FiringAlerts(state.firing.values(), state.evaluated_at)


def loop_silent(evaluated_at: datetime | None, now: datetime, trigger_seconds: float) -> bool:
    """Return True when no alert loop has evaluated lately (none runs, or it is stuck)."""
    if evaluated_at is None:
        return True
    return (now - evaluated_at).total_seconds() > 2 * max(trigger_seconds, HEARTBEAT_SECONDS) + 30


@contextlib.contextmanager
def loop_lock(home: Path) -> Iterator[None]:
    """Hold the one-loop-per-SIGNAL_HOME lock; ConflictError when another loop holds it (two would notify twice).

    The holder writes its pid into the lock file, so `alerts stop` knows whom to signal: a pid read while the
    lock is held is the running loop's, never a stale one.
    """
    folder = alerts_folder(home)
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / LOCK_FILE).open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConflictError(f"another alerts loop already runs on {home}",
                                next_step="stop it first (python -m core.cli alerts stop); one loop notifies once"
                                ) from None
        lock.truncate(0)
        lock.write(str(os.getpid()))
        lock.flush()
        yield


def _running_loop(home: Path) -> int | None:
    """Return the pid of the loop holding the lock, or None when no loop runs."""
    try:
        handle = (alerts_folder(home) / LOCK_FILE).open("r")
    except FileNotFoundError:
        return None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = handle.read().strip()
            if not text.isdigit() or int(text) <= 0:  # the loop has the lock but has not written its pid yet
                raise ConflictError("an alerts loop is starting", next_step="try again in a moment") from None
            return int(text)
        return None


def stop_loop(home: Path, timeout: float = 30.0) -> int | None:
    """Stop the alerts loop of this SIGNAL_HOME (SIGTERM; it finishes its evaluation); return its pid or None."""
    pid = _running_loop(home)
    if pid is None:
        return None
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _running_loop(home) is not None:
        if time.monotonic() > deadline:
            raise ConflictError(f"the alerts loop (pid {pid}) did not stop within {timeout:g} s")
        time.sleep(0.1)
    return pid


# --- the webhook -----------------------------------------------------------------------------------------

def post_webhook(url: str, text: str, *, timeout: float = WEBHOOK_TIMEOUT_SECONDS) -> None:
    """POST `{"text": text}` (Slack-compatible) to the webhook; BackendError when it is not accepted."""
    # The URL is a secret (it lets anyone post): errors name its host only.
    host = urllib.parse.urlsplit(url).hostname or "?"
    request = urllib.request.Request(url, data=json.dumps({"text": text}).encode("utf-8"), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # http(s) only: Settings checks
            response.read(4096)
    except urllib.error.HTTPError as error:
        raise BackendError(f"the webhook at {host} answered HTTP {error.code}") from error
    except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
        reason = error.reason if isinstance(error, urllib.error.URLError) else error
        raise BackendError(f"the webhook at {host} could not be reached: {reason}") from error


# --- the monitor: one evaluation -------------------------------------------------------------------------

@dataclass(frozen=True)
class Evaluation:
    """What one evaluation did: the events it raised, what it could not read, and a failed delivery."""

    events: tuple[AlertEvent, ...]
    problems: tuple[str, ...] = ()
    delivery_error: str | None = None


class AlertMonitor:
    """Evaluates RULES against a backend and delivers the firings and resolutions (the `alerts run` body)."""

    def __init__(self, settings: Settings, backend: Backend, *, rules: tuple[Rule, ...] = RULES) -> None:
        self.backend = backend
        self.rules = rules
        self.thresholds = Thresholds.from_settings(settings)
        self.webhook = settings.alert_webhook
        folder = alerts_folder(settings.home)
        self.state_path, self.log_path = folder / STATE_FILE, folder / LOG_FILE
        self.start_problem: str | None = None
        try:
            self.state = load_state(self.state_path)
        except BackendError as error:  # an unreadable state must not stop the alerting: start afresh
            self.state, self.start_problem = AlertState(), str(error)
        self._saved: dict[str, Any] | None = None
        self._saved_at: datetime | None = None
        self._signal_read_at: datetime | None = None

    def observe(self, now: datetime) -> tuple[Observation, list[str]]:
        """Read what the rules need from the backend; a failed read is a problem, and its rules are not judged."""
        problems: list[str] = []

        def read(what: str, call: Callable[[], Any]) -> Any:
            try:
                return call()
            except (SignalStreamError, OSError) as error:
                problems.append(f"{what}: {error}")
                return None

        signal = None
        if self._signal_read_at is None or now - self._signal_read_at >= SIGNAL_EVERY:
            self._signal_read_at = now
            signal = read("signal by operator", lambda: self._signal_hours(now))
        observation = Observation(
            now=now,
            stream=read("stream", self.backend.stream.health),
            job=read("job", self.backend.job.status),
            tables=read("lake", lambda: tuple(self.backend.lake.freshness())),
            signal=signal,
            partitions_need_crawl=self.backend.kind == "aws",
        )
        return observation, problems

    def _signal_hours(self, now: datetime) -> SignalHours:
        # One comparison query answers for the last hour and the hour before it.
        both = self.backend.lake.query("signal_by_operator_compared", {"since": now - timedelta(hours=1),
                                                                       "until": now}).frame
        columns = ["operator", "avg_signal", "samples"]
        previous = both[["operator", "previous_avg_signal", "previous_samples"]].set_axis(columns, axis=1)
        return SignalHours(last=both[columns].dropna(subset=["samples"]),
                           previous=previous.dropna(subset=["samples"]))

    def evaluate(self, now: datetime | None = None) -> Evaluation:
        """Observe, judge every rule, save the state, then log and post what changed (and what is still due)."""
        now = now or datetime.now(UTC)
        observation, problems = self.observe(now)
        verdicts = {rule.name: rule.check(observation, self.thresholds) for rule in self.rules}
        events = self.state.apply(verdicts, now)
        self.state.evaluated_at = now
        self._save(now)  # before anything is sent: a restart neither repeats nor loses an event
        delivery_error = self._deliver()
        self._save(now)
        return Evaluation(tuple(events), tuple(problems), delivery_error)

    def _save(self, now: datetime) -> None:
        data = self.state.to_dict()
        unchanged = self._saved is not None and {**data, "evaluated_at": None} == {**self._saved, "evaluated_at": None}
        if unchanged and self._saved_at is not None and (now - self._saved_at).total_seconds() < HEARTBEAT_SECONDS:
            return
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomically(self.state_path, json.dumps(data, indent=1))
        self._saved, self._saved_at = data, now

    def _deliver(self) -> str | None:
        for item in self.state.outbox:
            if not item.logged:
                append_event(self.log_path, item.event)
                item.logged = True
        error: str | None = None
        if self.webhook:
            for item in self.state.outbox:
                if item.posted:
                    continue
                try:
                    post_webhook(self.webhook, message(item.event))
                except BackendError as failure:  # kept in the outbox, in order, for the next evaluation
                    error = str(failure)
                    break
                item.posted = True
        self.state.outbox = [item for item in self.state.outbox
                             if not (item.logged and (item.posted or not self.webhook))]
        return error
