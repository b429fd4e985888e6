"""Benchmark 3: freshness, the time from sending a record to seeing it in a named query.

`python -m bench.freshness [--sends N] [--no-record]`

For each trigger interval (20 s, the default, and 2 s) the job runs as it does in production
(`python -m core.cli job run`, not available-now) in a fresh SIGNAL_HOME. Each send puts one record
with its own operator name (`bench-<i>`) on the stream and polls `signal_by_operator` every 0.2 s
until that operator shows up; latency = time seen - time sent (target: p95 <= 25 s at the 20 s trigger,
<= 4 s at the 2 s trigger). Sends sit at random offsets inside
the trigger interval, so the latencies sample every phase of the trigger; several sends may share
an interval (each timed on its own) so the 20 s trigger fits in about two minutes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import record, stats
from bench.job import generate_records
from core import records as R
from core.backends.base import Backend
from core.backends.local import build_local_backend
from core.backends.local_catalog import table_partitions
from core.config import Settings
from core.lake_layout import JOB_STATE_PREFIX, JOB_STATUS_FILE, SIGNAL_STRENGTH_BY_OPERATOR

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TRIGGERS = (20.0, 2.0)
QUERY = "signal_by_operator"
POLL_SECONDS = 0.2
SEND_WINDOW_SECONDS = 100.0  # sends of one trigger are spread over about this long
SLACK_SECONDS = 5.0  # the target: p95 <= trigger + this, unless set below
TARGET_P95_SECONDS = {2.0: 4.0}  # at the 2 s trigger: a record in a query within 4 s (p95)
START_TIMEOUT_SECONDS = 180.0
STOP_TIMEOUT_SECONDS = 60.0


@dataclass
class Send:
    """One timed record: when it is due, when it was sent and when the query showed it."""

    index: int
    operator: str
    due: float
    sent: float | None = None
    seen: float | None = None

    @property
    def latency(self) -> float | None:
        """Return seconds from send to first sight, None while unseen."""
        return None if self.sent is None or self.seen is None else self.seen - self.sent


@dataclass
class TriggerResult:
    """The sends of one trigger setting and what the job reported meanwhile."""

    trigger_seconds: float
    sends_per_interval: int
    sends: list[Send]
    query_ms: list[float] = field(default_factory=list)
    startup_seconds: float = 0.0
    warmup_seconds: float = 0.0
    batch_ms: list[int] = field(default_factory=list)
    exit_code: int | None = None
    load_average: tuple[float, float] = (0.0, 0.0)  # 1-minute load before and after: other work on the machine


def percentile(values: Sequence[float], fraction: float) -> float:
    """Return the nearest-rank percentile (the value at least `fraction` of the samples reach)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def probe_record(index: int, operator: str, rng: random.Random) -> dict[str, str]:
    """Return one record as a producer sends it, stamped now, with a unique operator."""
    now = datetime.now(UTC)
    item = next(generate_records(1, rng.randrange(1 << 30), now))
    item.update({"operator": operator, "record_id": f"freshness-{operator}-{now.timestamp()}",
                 "event_time": now.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"})
    return item


def _child_env(settings: Settings) -> dict[str, str]:
    # The developer's SIGNAL_* settings must not leak into a benchmark run.
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNAL_")}
    env.update({"SIGNAL_HOME": str(settings.home), "SIGNAL_TRIGGER_SECONDS": f"{settings.trigger_seconds:g}"})
    return env


def _job_state(settings: Settings) -> str | None:
    try:
        status = json.loads((settings.home / "lake" / JOB_STATE_PREFIX / JOB_STATUS_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return str(status.get("state"))


def _batch_durations(settings: Settings) -> list[int]:
    try:
        status = json.loads((settings.home / "lake" / JOB_STATE_PREFIX / JOB_STATUS_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        return []
    return [int(b["duration_ms"]) for b in status.get("recent_batches") or [] if b.get("input_rows")]


def _wait(condition: Any, timeout: float, what: str, job: subprocess.Popen[bytes]) -> float:
    """Poll condition() until true; return the seconds waited; fail when the job died or time ran out."""
    started = time.monotonic()
    while not condition():
        if job.poll() is not None:
            raise RuntimeError(f"the job exited (code {job.returncode}) while waiting for {what}")
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(POLL_SECONDS)
    return time.monotonic() - started


def _operators(backend: Backend, query_ms: list[float]) -> set[str]:
    result = backend.lake.query(QUERY)
    query_ms.append(result.duration_ms)
    return set(result.frame["operator"]) if len(result.frame) else set()


def _schedule(count: int, trigger: float, per_interval: int, rng: random.Random, start: float) -> list[Send]:
    """Return the sends: per_interval of them at random offsets within each trigger-long interval."""
    sends: list[Send] = []
    for interval in range(math.ceil(count / per_interval)):
        offsets = sorted(rng.uniform(0, trigger) for _ in range(min(per_interval, count - len(sends))))
        for offset in offsets:
            i = len(sends)
            sends.append(Send(i, f"bench-{i}", start + interval * trigger + offset))
    return sends


def measure_trigger(trigger: float, count: int, home: Path, rng: random.Random) -> TriggerResult:
    """Run the job with one trigger interval in home and time count sends; stop the job after."""
    settings = Settings.from_env({"SIGNAL_HOME": str(home), "SIGNAL_TRIGGER_SECONDS": f"{trigger:g}"})
    per_interval = max(1, math.ceil(count * trigger / SEND_WINDOW_SECONDS))
    result = TriggerResult(trigger, per_interval, [])
    load_before = os.getloadavg()[0]
    log = (home / "job.log").open("wb")
    started = time.monotonic()
    job = subprocess.Popen([sys.executable, "-m", "core.cli", "job", "run"], cwd=PROJECT_ROOT,
                           env=_child_env(settings), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                           start_new_session=True)  # its own process group, so one signal reaches all of it
    try:
        _wait(lambda: _job_state(settings) == "RUNNING", START_TIMEOUT_SECONDS, "the job to run", job)
        result.startup_seconds = time.monotonic() - started
        backend = build_local_backend(settings)
        warm = time.monotonic()
        # One record first so the tables exist and are catalogued: what follows times the steady state.
        backend.stream.put_records([probe_record(-1, "bench-warmup", rng)])
        lake_root = settings.home / "lake"
        _wait(lambda: bool(table_partitions(lake_root, SIGNAL_STRENGTH_BY_OPERATOR)), START_TIMEOUT_SECONDS,
              "the first batch", job)
        subprocess.run([sys.executable, "-m", "core.cli", "crawl"], cwd=PROJECT_ROOT, env=_child_env(settings),
                       check=True, stdout=subprocess.DEVNULL)
        warmup_name = R.canonical_name("bench-warmup")
        _wait(lambda: warmup_name in _operators(backend, []), START_TIMEOUT_SECONDS, "the warm-up record", job)
        result.warmup_seconds = time.monotonic() - warm
        result.sends = _schedule(count, trigger, per_interval, rng, time.monotonic() + 0.5)
        _run_sends(backend, result, job, timeout=3 * trigger + 60)
        result.batch_ms = _batch_durations(settings)
    finally:
        result.exit_code = _stop(job)
        result.load_average = (round(load_before, 1), round(os.getloadavg()[0], 1))
        log.close()
    return result


def _run_sends(backend: Backend, result: TriggerResult, job: subprocess.Popen[bytes], timeout: float) -> None:
    """Send each record when due and poll the query until every sent record is seen (or times out)."""
    wanted = {R.canonical_name(s.operator): s for s in result.sends}  # the job shows `bench-1` as `Bench-1`
    rng = random.Random(len(result.sends))
    while True:
        now = time.monotonic()
        for send in result.sends:
            if send.sent is None and send.due <= now:
                send.sent = time.monotonic()
                put = backend.stream.put_records([probe_record(send.index, send.operator, rng)])
                if put.failed:
                    raise RuntimeError(f"could not send {send.operator}: {put.failed[0]}")
        pending = [s for s in result.sends if s.sent is not None and s.seen is None]
        if pending:
            shown = _operators(backend, result.query_ms)
            seen_at = time.monotonic()  # after the query returned: a conservative sighting time
            for name in shown & {R.canonical_name(s.operator) for s in pending}:
                wanted[name].seen = seen_at
        unsent = [s for s in result.sends if s.sent is None]
        waiting = [s for s in result.sends if s.sent is not None and s.seen is None]
        overdue = [s for s in waiting if time.monotonic() - (s.sent or 0) > timeout]
        if not unsent and len(waiting) == len(overdue):
            return
        if job.poll() is not None:
            raise RuntimeError(f"the job exited (code {job.returncode}) during the sends")
        next_due = min((s.due for s in unsent), default=math.inf)
        time.sleep(max(0.0, min(now + POLL_SECONDS, next_due) - time.monotonic()))


def _stop(job: subprocess.Popen[bytes]) -> int:
    """Stop the job cleanly: SIGTERM to its Python process, which stops the query and then Spark.

    Not to the whole process group: SIGTERM also reaches the JVM, which dies under the Python
    process, and the job then exits 1 with its status left at RUNNING. The group is killed only
    when the clean stop times out.
    """
    if job.poll() is None:
        job.send_signal(signal.SIGTERM)
        try:
            job.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()
    return job.returncode


def _figures(results: list[TriggerResult], total_seconds: float) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for r in results:
        latencies = [s.latency for s in r.sends if s.latency is not None]
        target = TARGET_P95_SECONDS.get(r.trigger_seconds, r.trigger_seconds + SLACK_SECONDS)
        p95 = percentile(latencies, 0.95) if latencies else None
        figures[f"trigger_{r.trigger_seconds:g}s"] = {
            "sends": len(r.sends),
            "seen": len(latencies),
            "sends_per_interval": r.sends_per_interval,
            "p50_seconds": round(percentile(latencies, 0.50), 2) if latencies else None,
            "p95_seconds": round(p95, 2) if p95 is not None else None,
            "latency_seconds": {k: round(v, 2) if k != "runs" else v for k, v in stats(latencies).items()}
            if latencies else None,
            "target_p95_seconds": target,
            "target_met": p95 is not None and p95 <= target and len(latencies) == len(r.sends),
            "latencies": [round(x, 2) for x in sorted(latencies)],
            "batch_ms_median": round(stats(r.batch_ms)["median"]) if r.batch_ms else None,
            "query_ms_median": round(stats(r.query_ms)["median"], 1) if r.query_ms else None,
            "job_startup_seconds": round(r.startup_seconds, 1),
            "warmup_seconds": round(r.warmup_seconds, 1),
            "job_exit_code": r.exit_code,
            "load_average_before_after": r.load_average,
        }
    figures["benchmark_seconds"] = round(total_seconds)
    return figures


def _notes(figures: dict[str, Any]) -> list[str]:
    notes = []
    for trigger in TRIGGERS:
        f = figures[f"trigger_{trigger:g}s"]
        verdict = "meets" if f["target_met"] else "MISSES"
        notes.append(f"trigger {trigger:g} s: p50 {f['p50_seconds']} s, p95 {f['p95_seconds']} s over "
                     f"{f['seen']}/{f['sends']} sends; {verdict} the target p95 <= {f['target_p95_seconds']:g} s. "
                     f"Batches took {f['batch_ms_median']} ms (median), the job started in "
                     f"{f['job_startup_seconds']} s; 1-minute load average before/after: "
                     f"{f['load_average_before_after'][0]}/{f['load_average_before_after'][1]} on {os.cpu_count()} "
                     "cores (other work on the machine slows the job).")
    notes += [
        "Latency = first sight in `python -m core.cli query signal_by_operator` (in-process, polled every "
        f"{POLL_SECONDS} s; sighting time taken after the query returned) minus the time put_records was called. "
        "It includes the wait for the next trigger, the micro-batch and the DuckDB query; p95 is nearest-rank.",
        "Sends are at uniform random offsets within consecutive trigger intervals (several per 20 s interval, "
        "each timed on its own); the job runs with a processing-time trigger, as in production.",
        "Seed design, analytically: its append-mode windowed queries emit a 1-minute window only once the "
        "watermark (max event time seen - 10 min) passes the window's end, and Spark applies a new watermark in "
        "the following batch; so a record's first output comes 10-11 min after its event time (window end + "
        "10 min) plus one or two triggers, and never if newer events stop arriving. bench.job's seed run "
        "emitted 0 windows for 1M records spanning 5 minutes.",
    ]
    return notes


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, measure both trigger settings, report."""
    parser = argparse.ArgumentParser(prog="python -m bench.freshness", description=__doc__.splitlines()[0])
    parser.add_argument("--sends", type=int, default=20, help="timed sends per trigger setting (default 20)")
    parser.add_argument("--seed", type=int, default=11, help="random seed of the send offsets")
    parser.add_argument("--no-record", action="store_true", help="print the figures; do not record the run")
    args = parser.parse_args(argv)
    if args.sends < 1:
        parser.error("--sends must be at least 1")

    began = time.perf_counter()
    rng = random.Random(args.seed)
    results = []
    workdir = Path(tempfile.mkdtemp(prefix="signal-bench-freshness-"))
    try:
        for trigger in TRIGGERS:
            home = workdir / f"trigger-{trigger:g}"
            home.mkdir()
            result = measure_trigger(trigger, args.sends, home, rng)
            results.append(result)
            seen = sorted(s.latency for s in result.sends if s.latency is not None)
            print(f"trigger {trigger:g} s: {len(seen)}/{len(result.sends)} seen, "
                  f"p50 {percentile(seen, 0.5) if seen else float('nan'):.2f} s, "
                  f"p95 {percentile(seen, 0.95) if seen else float('nan'):.2f} s", file=sys.stderr)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    figures = _figures(results, time.perf_counter() - began)
    notes = _notes(figures)
    if args.no_record:
        print(json.dumps({"figures": figures, "notes": notes}, indent=1, default=str))
    else:
        record("freshness", figures, notes=notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
