"""Soak: the local pipeline live (job + looping replay) while many browser sessions hold the console for minutes.

    .venv/bin/python -m bench.soak [--sessions 25] [--minutes 10] [--no-record]      (`make soak`)

What runs, in a temporary SIGNAL_HOME and on a free port (nothing of the developer's is touched):
- the supervised job (`core.cli job start`, SIGNAL_TRIGGER_SECONDS=--trigger-seconds) and a looping replay
  of the bundled sample (`core.cli replay --loop --rate`), as scripts/run_local.sh runs them; every table
  is crawled once the first batch has landed;
- `streamlit run Home.py` on 127.0.0.1 (SIGNAL_REFRESH_SECONDS=--refresh-seconds: the panels' refresh and
  the data cache's TTL);
- one headless Chromium (Debian's /usr/bin/chromium, never a downloaded browser; under the idle scheduling
  policy, as it stands in for people's own machines and must not take the CPU from what is measured) with
  --sessions browser contexts, alternately on the live page (/live_aggregations) and the wall display (/?kiosk=1). Each
  session starts a little after the previous one, reloads its page every --reload-seconds and watches it
  in between (the panels refresh themselves), for --minutes.

Figures (bench.common.record("soak", ...)):
- render time of every (re)load, from the navigation's start to the page's first data element visible
  (live page: a Plotly chart; wall display: a KPI tile with its value), p50/p95/max; also to the whole
  page (live: its 5 charts; wall: 4 tiles and 2 charts). Target: p95 to first data <= RENDER_TARGET_S;
- peak memory of the streamlit process and its children (bench.common.PeakRss: PSS summed over the tree),
  idle before the sessions and during them. Target: <= RSS_TARGET_MIB;
- errors seen in pages: Streamlit exception blocks, uncaught page errors, console errors, loads that never
  rendered, and tracebacks in the server's log. Target: 0. Not counted (reported apart): the 404s of
  Streamlit's own base-path probe (`<page>/_stcore/health|host-config`, which a page opened by its URL
  tries before the root);
- lake queries per panel per TTL, counted from outside: every panel of the live page shows its query's id
  and parameters (Query details); the console rounds a range's end up to the TTL, so a panel's parameters
  name its TTL window, and distinct query ids per (panel, parameters) are the lake queries that window
  cost all sessions together. Only what some session saw is counted (a lower bound when sessions are
  few), and only the live page's five panels (the wall display and the filter lists show no query id).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import PeakRss, ThreadCpu, free_port, record, stop_group, wait_healthy
from core import job_defaults, queries

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
RENDER_TARGET_S = 5.0
RSS_TARGET_MIB = 300.0
LIVE, WALL = "live", "wall"
PATHS = {LIVE: "/live_aggregations", WALL: "/?kiosk=1"}
LIVE_PANELS = ("signal_by_operator_compared", "signal_per_minute", "gps_by_provider", "coverage_cells",
               "status_by_postal_code")
SHOWN = "e => e.getClientRects().length > 0"
FIRST_DATA = {
    LIVE: f"""() => Array.from(document.querySelectorAll('[data-testid="stPlotlyChart"]')).some({SHOWN})""",
    WALL: f"""() => Array.from(document.querySelectorAll('[data-testid="stMetricValue"]'))
                 .some(e => ({SHOWN})(e) && e.innerText.trim() !== '')""",
}
WHOLE_PAGE = {
    LIVE: f"""() => Array.from(document.querySelectorAll('[data-testid="stPlotlyChart"]')).filter({SHOWN}).length
                 >= {len(LIVE_PANELS)}""",
    WALL: f"""() => Array.from(document.querySelectorAll('[data-testid="stMetricValue"]'))
                   .filter(e => ({SHOWN})(e) && e.innerText.trim() !== '').length >= 4
               && Array.from(document.querySelectorAll('[data-testid="stPlotlyChart"]')).filter({SHOWN}).length >= 2""",
}
# What a session reads off its page between reloads: exception blocks, and each panel's query (its SQL,
# id and parameters) from the Query details expanders, which are in the page even while collapsed.
INSPECT = """() => ({
  exceptions: Array.from(document.querySelectorAll('[data-testid="stException"]'))
    .map(e => e.innerText.trim().slice(0, 500)),
  queries: Array.from(document.querySelectorAll('[data-testid="stExpander"]')).map(e => ({
    sql: (e.querySelector('code')?.textContent || '').trim(),
    captions: Array.from(e.querySelectorAll('[data-testid="stCaptionContainer"]')).map(c => c.textContent.trim()),
  })),
})"""
BASE_PATH_PROBE = re.compile(r"/_stcore/(health|host-config)$")
QUERY_ID = re.compile(r"Query id (\S+)")


# --- processes -----------------------------------------------------------------------------------


def cli(env: dict[str, str], *args: str, timeout: float = 300) -> str:
    """Run `python -m core.cli ...` on the soak's SIGNAL_HOME; return its output, raise when it fails."""
    done = subprocess.run([sys.executable, "-m", "core.cli", *args], cwd=PROJECT_ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"core.cli {' '.join(args)} exited {done.returncode}: {done.stderr.strip()[-2000:]}")
    return done.stdout


def job_status(home: Path) -> dict[str, Any]:
    """Return the job's status document, or {} while it has none (or it is being replaced)."""
    try:
        document = json.loads((home / "lake" / "_job" / "status.json").read_text())
    except (OSError, ValueError):
        return {}
    return document if isinstance(document, dict) else {}


@dataclass
class Pipeline:
    """The local pipeline of the soak: job, looping replay, crawled tables, and the console."""

    home: Path
    env: dict[str, str]
    replay: subprocess.Popen[bytes] | None = None
    console: subprocess.Popen[bytes] | None = None
    base_url: str = ""
    first_batch_s: float | None = None
    job_started: bool = False

    def start(self, rate: float, first_batch_timeout: float = 600.0) -> None:
        """Start the job and the replay, crawl once the first batch landed, then start the console."""
        run = self.home / "run"
        run.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        self.job_started = True
        cli(self.env, "job", "start")
        with (run / "replay.log").open("wb") as log:
            self.replay = subprocess.Popen(
                [sys.executable, "-m", "core.cli", "replay", "--loop", "--rate", f"{rate:g}"], cwd=PROJECT_ROOT,
                env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        while not job_status(self.home).get("last_batch"):
            if time.monotonic() - started > first_batch_timeout:
                raise RuntimeError(f"no batch within {first_batch_timeout:.0f} s; job log:\n{self.log_tail('job.log')}")
            if self.replay.poll() is not None:
                raise RuntimeError(f"the replay exited {self.replay.returncode}:\n{self.log_tail('replay.log')}")
            time.sleep(1)
        self.first_batch_s = round(time.monotonic() - started, 1)
        cli(self.env, "crawl")
        port = free_port()
        with (run / "streamlit.log").open("wb") as log:
            self.console = subprocess.Popen(
                [sys.executable, "-m", "streamlit", "run", "Home.py", "--server.port", str(port),
                 "--server.headless", "true", "--server.address", "127.0.0.1", "--server.fileWatcherType", "none"],
                cwd=PROJECT_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.base_url = f"http://127.0.0.1:{port}"
        wait_healthy(self.base_url, self.console, 120.0, lambda: self.log_tail("streamlit.log"))

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.home / "run" / name
        return path.read_text(encoding="utf-8", errors="replace")[-chars:] if path.exists() else ""

    def server_tracebacks(self) -> list[str]:
        """Return the first line after each traceback in the console's log."""
        lines = self.log_tail("streamlit.log", chars=10**7).splitlines()
        return [next((ln for ln in lines[i + 1:] if not ln.startswith(" ")), "?")
                for i, line in enumerate(lines) if line.startswith("Traceback")]

    def stop(self) -> None:
        """Stop the console, the replay and the job (only what this benchmark started)."""
        if self.console is not None:
            stop_group(self.console, grace=10)
        if self.replay is not None:
            stop_group(self.replay)  # SIGTERM: the replay records its end
        if self.job_started:
            try:
                cli(self.env, "job", "stop", timeout=120)
            except (RuntimeError, subprocess.TimeoutExpired) as error:
                print(f"soak: could not stop the job cleanly: {error}", file=sys.stderr)


# --- browser sessions ----------------------------------------------------------------------------


@dataclass
class Observed:
    """What every session saw, shared by all of them (one event loop: no locks needed)."""

    first_s: dict[str, list[float]] = field(default_factory=lambda: {LIVE: [], WALL: []})
    whole_s: dict[str, list[float]] = field(default_factory=lambda: {LIVE: [], WALL: []})
    loads: int = 0
    render_timeouts: int = 0
    load_failures: Counter[str] = field(default_factory=Counter)
    exceptions: Counter[str] = field(default_factory=Counter)
    page_errors: Counter[str] = field(default_factory=Counter)
    console_errors: Counter[str] = field(default_factory=Counter)
    base_path_probes: int = 0
    external: Counter[str] = field(default_factory=Counter)  # resources of other hosts the browser could not load
    # panel -> query id -> when a session first saw it (time.time())
    queries: dict[str, dict[str, float]] = field(default_factory=lambda: defaultdict(dict))
    unmatched_sql: int = 0
    missed_looks: int = 0


def _panel_names() -> dict[str, str]:
    return {" ".join(queries.get(name).sql.split()): name for name in LIVE_PANELS}


async def _watch(page: Any, observed: Observed, panels: dict[str, str], seen: set[str]) -> None:
    found = await page.evaluate(INSPECT)
    for text in found["exceptions"]:
        if text not in seen:  # each exception block once per load
            seen.add(text)
            observed.exceptions[text] += 1
    for panel in found["queries"]:
        if not panel["sql"]:
            continue  # an expander still being drawn
        name = panels.get(" ".join(panel["sql"].split()))
        ids = [m.group(1) for c in panel["captions"] if (m := QUERY_ID.search(c))]
        if name is None:
            observed.unmatched_sql += 1
        elif ids:
            observed.queries[name].setdefault(ids[0], time.time())


async def _session(browser: Any, kind: str, base_url: str, delay: float, until: float, reload_seconds: float,
                   check_seconds: float, render_timeout_s: float, observed: Observed) -> None:
    from playwright.async_api import Error as PlaywrightError
    from playwright.async_api import TimeoutError as PlaywrightTimeout

    url = base_url + PATHS[kind]
    await asyncio.sleep(delay)
    context = await browser.new_context(viewport={"width": 1600, "height": 1000})
    page = await context.new_page()
    panels = _panel_names()

    def on_console(message: Any) -> None:
        if message.type != "error":
            return
        where = (message.location or {}).get("url", "")
        if "404" in message.text and BASE_PATH_PROBE.search(where):
            observed.base_path_probes += 1
        elif where and not where.startswith(base_url):
            observed.external[f"{message.text[:200]} ({where})"] += 1
        else:
            observed.console_errors[f"{message.text[:300]} ({where})"] += 1

    page.on("console", on_console)
    page.on("pageerror", lambda error: observed.page_errors.update([str(error)[:300]]))
    try:
        while time.monotonic() < until:
            observed.loads += 1
            started = time.perf_counter()
            seen: set[str] = set()
            try:
                await page.goto(url, wait_until="commit", timeout=render_timeout_s * 1000)
                await page.wait_for_function(FIRST_DATA[kind], timeout=render_timeout_s * 1000)
                observed.first_s[kind].append(time.perf_counter() - started)
                await page.wait_for_function(WHOLE_PAGE[kind], timeout=render_timeout_s * 1000)
                observed.whole_s[kind].append(time.perf_counter() - started)
            except PlaywrightTimeout:
                observed.render_timeouts += 1
            except PlaywrightError as error:  # the load itself failed (connection refused, reset, ...)
                observed.load_failures[str(error).splitlines()[0][:300]] += 1
            next_load = min(until, time.monotonic() + reload_seconds)
            while (left := next_load - time.monotonic()) > 0:
                await asyncio.sleep(min(check_seconds, left))
                try:
                    await _watch(page, observed, panels, seen)
                except PlaywrightError:  # the page was navigating (a wall rotation): look again next time
                    observed.missed_looks += 1
    finally:
        await context.close()


def lowest_priority_chromium(folder: Path) -> Path:
    """Return a launcher that runs Debian's Chromium under the idle scheduling policy (SCHED_IDLE), every
    process and thread of it included: it runs on what the rest leaves of the CPU.

    The browsers stand in for the people's own machines: on the bench's 2 cores they must not take the CPU
    from what is measured (the console, the job and the replay). At the same priority they did: Chromium
    used 62 % of the machine, and the console's websockets dropped for want of a time slice. A nice value
    is not enough: Chromium sets its threads' nice values itself (-8 for its display threads, as root).
    """
    launcher = folder / "chromium-idle"
    launcher.write_text(f'#!/bin/sh\nexec chrt --idle 0 {CHROMIUM} "$@"\n', encoding="utf-8")
    launcher.chmod(0o755)
    return launcher


async def _browse(base_url: str, sessions: int, seconds: float, reload_seconds: float, check_seconds: float,
                  render_timeout_s: float, observed: Observed, launcher: Path) -> None:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(launcher), headless=True, args=CHROMIUM_ARGS)
        try:
            until = time.monotonic() + seconds
            # Sessions arrive over the first minute (or reload period), as people do, not all in one instant.
            spread = min(reload_seconds, 60.0)
            await asyncio.gather(*(
                _session(browser, LIVE if i % 2 == 0 else WALL, base_url, spread * i / sessions, until,
                         reload_seconds, check_seconds, render_timeout_s, observed)
                for i in range(sessions)))
        finally:
            await browser.close()


# --- figures -------------------------------------------------------------------------------------


def percentiles(values: Sequence[float]) -> dict[str, Any]:
    """Return count, p50, p95 and max (nearest rank) in seconds, rounded."""
    if not values:
        return {"loads": 0, "p50": None, "p95": None, "max": None}
    ordered = sorted(values)

    def rank(q: float) -> float:
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

    return {"loads": len(ordered), "p50": round(rank(0.5), 2), "p95": round(rank(0.95), 2),
            "max": round(ordered[-1], 2)}


def lake_query_figures(observed: Observed, ttl: int, seconds: float) -> dict[str, Any]:
    """Return the lake queries of each live panel per TTL window, from the query ids the sessions saw.

    Every distinct id is one query the lake ran (a cache miss). Shared by all sessions, the cache costs at
    most one query per panel per window (a range's end moves each TTL, ui.context): the average is the
    ids over the windows the sessions ran. `max_first_seen_per_window` buckets each id by the window it
    was first seen in: a query run at the end of one window and first seen in the next can make it 2.
    """
    windows = max(1.0, seconds / ttl)
    per_panel: dict[str, dict[str, Any]] = {}
    for name in LIVE_PANELS:
        seen = observed.queries.get(name, {})
        buckets = Counter(int(at // ttl) for at in seen.values())
        per_panel[name] = {"queries": len(seen), "per_window": round(len(seen) / windows, 2),
                           "max_first_seen_per_window": max(buckets.values(), default=0)}
    return {"ttl_s": ttl, "windows": round(windows, 1),
            "max_per_panel_per_window": max((p["per_window"] for p in per_panel.values()), default=0.0),
            "per_panel": per_panel, "unrecognised_panels": observed.unmatched_sql}


def soak(*, sessions: int, minutes: float, rate: float, trigger_seconds: float, refresh_seconds: int,
         reload_seconds: float, check_seconds: float = 5.0, render_timeout_s: float = 60.0,
         home: Path | None = None, keep_home: bool = False) -> dict[str, Any]:
    """Run the soak and return its figures."""
    if not CHROMIUM.exists():
        raise RuntimeError(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    owned = home is None
    home = Path(tempfile.mkdtemp(prefix="signal-soak-")) if home is None else home
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SIGNAL_")},
           "SIGNAL_HOME": str(home), "SIGNAL_TRIGGER_SECONDS": f"{trigger_seconds:g}",
           "SIGNAL_REFRESH_SECONDS": str(refresh_seconds), "SIGNAL_DEMO_MODE": "1",
           # The map's tiles come from a tile server to the viewer's browser, not from the console; a load
           # test machine may have no route to one, and its failures are not the console's errors.
           "SIGNAL_MAP_TILES": "off",
           "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    pipeline = Pipeline(home, env)
    observed = Observed()
    load_before = os.getloadavg()[0]
    try:
        pipeline.start(rate)
        assert pipeline.console is not None
        with PeakRss(pipeline.console.pid) as idle:
            time.sleep(3)
        started = time.monotonic()
        # The console, the replay, Playwright's driver and Chromium are this process's descendants; the job's
        # supervisor detaches (a session of its own), so its JVM is not among the groups counted.
        with PeakRss(pipeline.console.pid) as peak, ThreadCpu(os.getpid(), interval=2.0) as cpu:
            asyncio.run(_browse(pipeline.base_url, sessions, minutes * 60, reload_seconds, check_seconds,
                                render_timeout_s, observed, lowest_priority_chromium(home)))
        browsed = time.monotonic() - started
        load_during = os.getloadavg()[0]
        tracebacks = pipeline.server_tracebacks()
        status = job_status(home)  # while the pipeline still runs
    finally:
        pipeline.stop()
    if owned and not keep_home:
        shutil.rmtree(home, ignore_errors=True)

    everything = observed.first_s[LIVE] + observed.first_s[WALL]
    errors = {
        "exception_blocks": sum(observed.exceptions.values()),
        "page_errors": sum(observed.page_errors.values()),
        "console_errors": sum(observed.console_errors.values()),
        "render_timeouts": observed.render_timeouts,
        "load_failures": sum(observed.load_failures.values()),
        "server_log_tracebacks": len(tracebacks),
        # The soak's console has no map tiles and serves its own icon: nothing should come from elsewhere.
        "other_host_loads": sum(observed.external.values()),
    }
    samples = [*observed.exceptions, *observed.page_errors, *observed.console_errors, *observed.load_failures,
               *tracebacks, *observed.external][:10]
    render_p95 = percentiles(everything)["p95"]
    figures: dict[str, Any] = {
        "sessions": sessions, "minutes": minutes, "browsed_s": round(browsed, 1),
        "pages": {LIVE: (sessions + 1) // 2, WALL: sessions // 2},
        "settings": {"trigger_seconds": trigger_seconds, "refresh_seconds": refresh_seconds, "replay_rate": rate,
                     "reload_seconds": reload_seconds},
        "loads": observed.loads,
        "render_s": {
            "first_data": percentiles(everything),
            "first_data_by_page": {kind: percentiles(observed.first_s[kind]) for kind in (LIVE, WALL)},
            "whole_page_by_page": {kind: percentiles(observed.whole_s[kind]) for kind in (LIVE, WALL)},
            "target_p95": RENDER_TARGET_S,
        },
        "server_memory_mib": {"idle": idle.peak_mib, "peak": peak.peak_mib, "target": RSS_TARGET_MIB},
        "errors": {"total": sum(errors.values()), **errors, "samples": samples,
                   "not_counted_base_path_probe_404s": observed.base_path_probes},
        "lake_queries": lake_query_figures(observed, refresh_seconds, browsed),
        "page_looks_missed_mid_rerun": observed.missed_looks,
        "pipeline": {"first_batch_s": pipeline.first_batch_s,
                     "batches": (status.get("totals") or {}).get("batches"),
                     "input_rows": (status.get("totals") or {}).get("input_rows"),
                     "job_state_during": status.get("state"), "job_error": status.get("error")},
        "load_average": {"before": round(load_before, 2), "end_of_sessions": round(load_during, 2)},
        "cpu_seconds_by_group": cpu.by_group(),
    }
    figures["targets"] = {
        "render_p95": "met" if render_p95 is not None and render_p95 <= RENDER_TARGET_S else "missed",
        "server_memory": "met" if peak.peak_mib <= RSS_TARGET_MIB else "missed",
        "errors": "met" if figures["errors"]["total"] == 0 else "missed",
        "lake_queries_per_panel_per_ttl": "met" if figures["lake_queries"]["max_per_panel_per_window"] <= 1.0
        else "missed",
    }
    return figures


def cpu_note(by_group: dict[str, float], seconds: float) -> str:
    """Return who used the CPU during the sessions, in shares of what the machine's cores could give."""
    capacity = (os.cpu_count() or 1) * seconds
    shares = ", ".join(f"{group} {used:.0f} s ({used / capacity:.0%})" for group, used in list(by_group.items())[:6])
    return f"CPU seconds during the {seconds:.0f} s of sessions, of {capacity:.0f} s the cores could give: {shares}."


def notes_for(figures: dict[str, Any]) -> list[str]:
    """Return the run's findings in a few sentences."""
    render, memory, errors = figures["render_s"], figures["server_memory_mib"], figures["errors"]
    lake = figures["lake_queries"]
    first = render["first_data"]
    notes = [
        f"{figures['sessions']} browser sessions ({figures['pages'][LIVE]} live page, {figures['pages'][WALL]} wall "
        f"display) for {figures['minutes']:g} min, each reloading every {figures['settings']['reload_seconds']:g} s: "
        f"{figures['loads']} loads while the job ran (trigger {figures['settings']['trigger_seconds']:g} s) and the "
        f"replay looped at {figures['settings']['replay_rate']:g} records/s.",
        f"Render (navigation start to first data element visible: a chart on the live page, a KPI value on the "
        f"wall): p50 {first['p50']} s, p95 {first['p95']} s, max {first['max']} s over {first['loads']} loads "
        f"(target p95 <= {render['target_p95']:g} s: {figures['targets']['render_p95']}). Whole page p95: live "
        f"{render['whole_page_by_page'][LIVE]['p95']} s, wall {render['whole_page_by_page'][WALL]['p95']} s.",
        f"Console server memory (PSS of streamlit and its children): idle {memory['idle']:.0f} MiB, peak "
        f"{memory['peak']:.0f} MiB (target <= {memory['target']:g} MiB: {figures['targets']['server_memory']}).",
        f"Errors seen in pages: {errors['total']} (exception blocks {errors['exception_blocks']}, page errors "
        f"{errors['page_errors']}, console errors {errors['console_errors']}, loads not rendered within the "
        f"timeout {errors['render_timeouts']}, failed loads {errors['load_failures']}, server log tracebacks "
        f"{errors['server_log_tracebacks']}, failed loads from other hosts {errors['other_host_loads']}); not "
        f"counted: {errors['not_counted_base_path_probe_404s']} 404s of Streamlit's base-path probe.",
        f"Lake queries per live panel per {lake['ttl_s']} s TTL window (query ids seen over {lake['windows']:g} "
        f"windows; shared cache: at most 1): at most {lake['max_per_panel_per_window']} (" + ", ".join(
            f"{name} {p['per_window']}" for name, p in lake["per_panel"].items()) + ").",
        f"Load average {figures['load_average']['before']} before, {figures['load_average']['end_of_sessions']} at "
        f"the end of the sessions (2 cores shared by the job, the replay, the console and Chromium).",
        cpu_note(figures["cpu_seconds_by_group"], figures["browsed_s"]),
    ]
    if errors["samples"]:
        notes.append("First errors: " + " | ".join(errors["samples"][:3]))
    return notes


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=25, help="concurrent browser sessions (default 25)")
    parser.add_argument("--minutes", type=float, default=10.0, help="how long the sessions run (default 10)")
    parser.add_argument("--rate", type=float, default=50.0, help="replay records/s (default 50, as make run)")
    # The product's trigger (SIGNAL_TRIGGER_SECONDS' default): a 5 s trigger kept the job's JVM busy four times as
    # often and took that CPU from the browsers, which on this machine share the cores with what they measure.
    parser.add_argument("--trigger-seconds", type=float, default=float(job_defaults.TRIGGER_SECONDS),
                        help=f"the job's trigger (default {job_defaults.TRIGGER_SECONDS}, the product's)")
    parser.add_argument("--refresh-seconds", type=int, default=20, help="console refresh and cache TTL (default 20)")
    # Between reloads a session's panels refresh themselves every --refresh-seconds (the server's steady work);
    # a reload is a person opening the page again, and costs the browser a Streamlit and Plotly start-up.
    parser.add_argument("--reload-seconds", type=float, default=120.0, help="each session reloads this often")
    parser.add_argument("--home", type=Path, help="SIGNAL_HOME to use (default: a temporary folder, removed)")
    parser.add_argument("--no-record", action="store_true", help="print the figures, do not record them")
    args = parser.parse_args(argv)
    figures = soak(sessions=args.sessions, minutes=args.minutes, rate=args.rate, trigger_seconds=args.trigger_seconds,
                   refresh_seconds=args.refresh_seconds, reload_seconds=args.reload_seconds, home=args.home)
    notes = notes_for(figures)
    if args.no_record:
        print(json.dumps(figures, indent=1))
        print("\n".join(notes))
    else:
        record("soak", figures, notes=notes,
               command=".venv/bin/python -m bench.soak " + " ".join(sys.argv[1:] if argv is None else argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
