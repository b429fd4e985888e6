"""Process-wide resources and cached data for the pages.

Everything here is shared by all sessions: the backend is built once (st.cache_resource), and data
calls are cached with a TTL of SIGNAL_REFRESH_SECONDS (st.cache_data), refreshed in the background,
so N viewers cost one backend call per panel per TTL. Time ranges are rounded to the TTL so that
sessions opened at different moments share the same cache entries (and the same Athena parameters,
so Athena's result reuse serves them too). Memory stays bounded: a range is at most MAX_RANGE long,
and the last good results kept for failed refreshes are at most LAST_GOOD_ENTRIES, least recently
used dropped first.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import streamlit as st

from core.auth import User, resolve_user
from core.backends import build_backend
from core.backends.base import AuditTrail, Backend
from core.config import Settings
from core.domain import CrawlerState, JobStatus, QueryResult, StreamHealth, TableFreshness
from core.errors import ConfigError, SignalStreamError
from core.views import PRESETS

RANGES: dict[str, timedelta] = {preset.label: preset.length for preset in PRESETS}  # label -> length
MAX_RANGE = timedelta(days=31)  # the longest event-time range a panel queries; a longer one is clipped
LAST_GOOD_ENTRIES = 64  # last good results kept for all sessions (a panel and range each)
QUERY_CACHE_ENTRIES = 256  # cached query results, besides their TTL


@st.cache_resource
def settings() -> Settings:
    """Return the settings, read once per process."""
    return Settings.from_env(os.environ)


@st.cache_resource
def backend() -> Backend:
    """Return the backend, built once per process and shared by every session."""
    return build_backend(settings())


def audit_log() -> AuditTrail:
    """Return the audit log of operator actions (a file locally, S3 on AWS)."""
    return backend().audit


@st.cache_resource
def replay_manager() -> Any:
    """Return the one background replay manager of this process (demo mode)."""
    from core.demo import ReplayManager

    return ReplayManager(backend().stream, settings().home)


class LastGood:
    """The last good result of each (query, slot), shared by all sessions: at most `size` of them, the
    least recently used dropped first (each custom range is a slot of its own)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._results: OrderedDict[tuple[str, str], QueryResult] = OrderedDict()
        self._lock = threading.Lock()  # sessions run in threads of their own

    def get(self, key: tuple[str, str]) -> QueryResult | None:
        """Return the last good result for `key`, or None."""
        with self._lock:
            result = self._results.get(key)
            if result is not None:
                self._results.move_to_end(key)
            return result

    def put(self, key: tuple[str, str], result: QueryResult) -> None:
        """Keep `result` as the last good one for `key`, dropping the least recently used beyond `size`."""
        with self._lock:
            self._results[key] = result
            self._results.move_to_end(key)
            while len(self._results) > self.size:
                self._results.popitem(last=False)

    def keys(self) -> list[tuple[str, str]]:
        """Return the keys kept, least recently used first."""
        with self._lock:
            return list(self._results)


@st.cache_resource
def _last_good() -> LastGood:
    return LastGood(LAST_GOOD_ENTRIES)


def auth_configured() -> bool:
    """Return True when OIDC login is configured ([auth] in secrets.toml)."""
    try:
        return "auth" in st.secrets
    except (FileNotFoundError, KeyError, st.errors.StreamlitSecretNotFoundError):
        return False


def current_user() -> User:
    """Return the user of this session: OIDC login, load-balancer headers, or the local setting."""
    oidc = st.user.to_dict() if auth_configured() else None
    # The address Streamlit really listens on (config.toml, a flag or STREAMLIT_SERVER_ADDRESS), not
    # SIGNAL_BIND_ADDRESS: only a console bound to loopback gives operator without a login.
    return resolve_user(settings(), oidc_user=oidc, headers=dict(st.context.headers or {}),
                        bind_address=st.get_option("server.address"))


def _ttl() -> int:
    # Decorators need the TTL at import; a bad setting is reported by Home.py, not here.
    try:
        return settings().refresh_seconds
    except ConfigError:
        return 20


def _until(now: datetime | None = None) -> datetime:
    # Rounded up to the refresh interval: every session in the same interval asks the same query.
    step = _ttl()
    moment = now or datetime.now(UTC)
    return datetime.fromtimestamp((int(moment.timestamp()) // step + 1) * step, UTC)


def time_window(label: str, now: datetime | None = None) -> tuple[datetime, datetime]:
    """Return (since, until) for a preset range, `until` rounded up to the refresh interval."""
    until = _until(now)
    return until - RANGES[label], until


def _whole_second(moment: datetime | None, *, up: bool) -> datetime | None:
    # UTC (a time without zone is UTC), whole seconds: equal ranges are equal cache keys and parameters.
    if moment is None:
        return None
    aware = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    whole = aware.replace(microsecond=0)
    return whole + timedelta(seconds=1) if up and whole != aware else whole


def clip_range(since: datetime | None, until: datetime | None, now: datetime | None = None
               ) -> tuple[datetime | None, datetime | None, str | None]:
    """Return (since, until) limited to MAX_RANGE, and a notice saying so when the range was longer.

    A longer range keeps its latest MAX_RANGE up to now (the interval `until` of a preset): data
    ends now, so a range running into the future is not clipped to an empty stretch.
    """
    since, until = _whole_second(since, up=False), _whole_second(until, up=True)
    if since is None or until is None or until - since <= MAX_RANGE:
        return since, until, None
    end = min(until, max(_until(now), since + MAX_RANGE))
    start = end - MAX_RANGE
    notice = (f"A range is limited to {MAX_RANGE.days} days: this one spans {(until - since).days} days, so "
              f"the panels show {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC.")
    return start, end, notice


@st.cache_data(ttl=_ttl(), show_spinner=False, refresh_mode="background", max_entries=QUERY_CACHE_ENTRIES)
def _query(name: str, since: datetime | None, until: datetime | None) -> QueryResult:
    return backend().lake.query(name, {"since": since, "until": until})


@dataclass(frozen=True)
class Panel:
    """A query result for a panel; `error` is set when the newest try failed and `result` is older;
    `notice` when the range asked for was clipped to MAX_RANGE."""

    result: QueryResult | None
    error: str | None = None
    notice: str | None = None


def query(name: str, since: datetime | None = None, until: datetime | None = None, *, slot: str = "") -> Panel:
    """Return a named query for a panel, keeping the last good result when a newer try fails.

    The range is limited to MAX_RANGE (see clip_range); `slot` tells apart the panels' last good results.
    """
    since, until, notice = clip_range(since, until)
    key = (name, slot)
    try:
        result = _query(name, since, until)
    except SignalStreamError as error:
        return Panel(_last_good().get(key), str(error), notice)
    _last_good().put(key, result)
    return Panel(result, notice=notice)


@st.cache_data(ttl=_ttl(), show_spinner=False, refresh_mode="background")
def job_status() -> JobStatus:
    """Return the job's status, cached for all sessions."""
    return backend().job.status()


@st.cache_data(ttl=_ttl(), show_spinner=False, refresh_mode="background")
def stream_health() -> StreamHealth:
    """Return the stream's health, cached for all sessions."""
    return backend().stream.health()


@st.cache_data(ttl=_ttl(), show_spinner=False, refresh_mode="background")
def lake_freshness() -> list[TableFreshness]:
    """Return every lake table's freshness, cached for all sessions."""
    return backend().lake.freshness()


@st.cache_data(ttl=2, show_spinner=False)
def crawler_states() -> list[CrawlerState]:
    """Return the crawlers' states (a short TTL: operators follow a run they started)."""
    return backend().crawlers.list()


def watermark() -> datetime | None:
    """Return the job's current watermark, or None when it is unknown (or cannot be read)."""
    try:
        last = job_status().last_batch
    except SignalStreamError:
        return None
    return last.watermark if last else None


def forget_states() -> None:
    """Drop cached pipeline states after an operator action changed them."""
    crawler_states.clear()
    job_status.clear()


def health_chain(query_as_of: datetime | None = None) -> list[Any]:
    """Return the freshness chain from the cached pipeline states; a state that cannot be read is a red hop."""
    from core.health import Hop, Level, Thresholds, freshness_chain

    current = settings()
    failures: dict[str, str] = {}
    try:
        stream = stream_health()
    except SignalStreamError as error:
        stream, failures["sent"] = StreamHealth(current.stream_name, exists=False), str(error)
    try:
        job = job_status()
    except SignalStreamError as error:
        job, failures["job"] = JobStatus(current.job_name, "UNKNOWN"), str(error)
    try:
        tables = lake_freshness()
    except SignalStreamError as error:
        tables, failures["lake"] = [], str(error)
    chain = freshness_chain(
        stream, job, tables, query_as_of,
        now=datetime.now(UTC),
        thresholds=Thresholds(current.stale_after_seconds, current.dead_after_seconds),
        partitions_need_crawl=backend().kind == "aws",
    )
    return [Hop(h.key, h.label, Level.RED, None, f"cannot read: {failures[h.key]}") if h.key in failures else h
            for h in chain]


def kpis_compared(window: timedelta = timedelta(minutes=5)) -> Panel:
    """Return the headline numbers over the last `window` (records, signal, operators, quarantined), each also for
    the window before it and for the same window a day earlier (core.queries.PERIODS)."""
    until = _until()
    return query("kpis_compared", until - window, until, slot=f"kpis-{window.total_seconds():.0f}")


def through_router() -> None:
    """Rerun through Home.py's router when Streamlit ran this page straight from the pages/ folder."""
    from streamlit.runtime.pages_manager import PagesManager

    # Until some script calls st.navigation, Streamlit routes a process's first session from pages/ itself:
    # this page ran without Home.py (no kiosk mode, no login, Streamlit's own page list). One rerun with
    # that mode off goes through Home.py, to this same page (its URL is its file name).
    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()
