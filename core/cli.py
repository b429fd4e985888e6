"""Command line: `python -m core.cli replay|job|crawl|query|status|alerts` (see README).

Commands that change the pipeline (`replay`, `job start|stop`, `crawl`, `--reset-checkpoint`) go through
core.auth.perform as the OS user (`cli:<user>`): audited before they run, refused when that cannot be
written, and their outcome recorded, like the console's actions. `alerts` changes nothing in the
pipeline (it reads it and notifies people), so it is not audited.
"""

from __future__ import annotations

import argparse
import getpass
import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from functools import partial
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from core import alerts, health, queries
from core.auth import OPERATOR, User, perform
from core.backends import build_backend
from core.backends.base import Backend
from core.backends.job_status import job_status_to_dict
from core.config import Settings
from core.errors import BackendError, InputError, SignalStreamError
from core.frames import to_safe_csv
from core.replay import ReplayOptions, ReplayProgress

T = TypeVar("T")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise InputError(f"{self.prog}: {message}")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
    return value


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
    return int(text)


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2026-11-28") from None


def build_parser() -> argparse.ArgumentParser:
    """Return the CLI's argument parser."""
    parser = _Parser(prog="python -m core.cli", description="Signal Stream pipeline commands")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = commands.add_parser("replay", help="validate a CSV and send its rows to the stream")
    p.add_argument("csv", nargs="?", type=Path, help="CSV to replay (default: SIGNAL_SAMPLE_CSV)")
    p.add_argument("--rate", type=_positive_float, help="records per second (default: as fast as possible)")
    p.add_argument("--limit", type=_count, help="send at most this many records")
    p.add_argument("--loop", action="store_true", help="start over at the end of the file until stopped")
    p.add_argument("--time-mode", choices=("live", "recorded"), default="live",
                   help="live: event time = send time; recorded: `hour` on --date")
    p.add_argument("--date", type=_date, help="recorded mode: the date to put `hour` on (default: yesterday)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")

    job = commands.add_parser("job", help="the streaming job").add_subparsers(
        dest="job_command", required=True, parser_class=_Parser)
    reset_help = ("start on a new checkpoint when the lake refused the old one (missing, corrupt or another "
                  "app's): the stream is read again from its start; audited")
    run = job.add_parser("run", help="run the job in the foreground")
    run.add_argument("--available-now", action="store_true", help="process what is in the stream, then exit")
    run.add_argument("--reset-checkpoint", action="store_true", help=reset_help)
    start = job.add_parser("start", help="start the supervised job in the background")
    start.add_argument("--reset-checkpoint", action="store_true", help=reset_help)
    job.add_parser("stop", help="stop the background job")
    status = job.add_parser("status", help="the job's state and last batch")
    status.add_argument("--json", action="store_true")
    supervise = job.add_parser("supervise", help=argparse.SUPPRESS)
    supervise.add_argument("--reset-checkpoint", action="store_true")

    crawl = commands.add_parser("crawl", help="run crawlers (all by default) and wait for them")
    crawl.add_argument("names", nargs="*", metavar="NAME")

    q = commands.add_parser("query", help="run a named query")
    q.add_argument("name", metavar="NAME", help=f"one of: {', '.join(queries.QUERIES)}")
    q.add_argument("--since", help="event time from (ISO-8601, UTC when no zone)")
    q.add_argument("--until", help="event time until, exclusive")
    q.add_argument("--format", choices=("table", "csv", "json"), default="table")

    s = commands.add_parser("status", help="the health snapshot the console shows")
    s.add_argument("--json", action="store_true")

    alert = commands.add_parser("alerts", help="the alert rules, their loop and their log").add_subparsers(
        dest="alerts_command", required=True, parser_class=_Parser)
    run_alerts = alert.add_parser("run", help="evaluate the rules once per trigger; log and post firings and "
                                  "resolutions (until Ctrl-C or SIGTERM)")
    run_alerts.add_argument("--once", action="store_true", help="evaluate once, then exit")
    listing = alert.add_parser("list", help="the firing alerts and the alert log's newest events")
    listing.add_argument("--limit", type=_count, default=20, help="events to show (default 20)")
    listing.add_argument("--json", action="store_true")
    alert.add_parser("stop", help="stop the alerts loop of this SIGNAL_HOME (one left by an interrupted make run)")
    alert.add_parser("rules", help="the rules and their thresholds")
    return parser


def _print_replay(summary: ReplayProgress, as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary.to_dict(), indent=1))
        return
    print(f"replay {summary.replay_id}: sent {summary.sent}, rejected {summary.rejected}, failed {summary.failed}"
          f" ({summary.records_per_second:.0f} records/s over {summary.elapsed_seconds:.1f} s,"
          f" {summary.passes} pass{'es' if summary.passes != 1 else ''})")
    for rejection in summary.rejections[:20]:
        print(f"  line {rejection.line}: {rejection.reason}")
    if summary.rejected > 20:
        print(f"  ... and {summary.rejected - 20} more rejected lines")
    for field, count in sorted(summary.nulled.items()):
        print(f"  {field}: {count} non-numeric value(s) sent as null")
    for code, count in sorted(summary.failures.items()):
        print(f"  failed: {count} record(s) with {code}")


def cli_user() -> User:
    """Return who runs the CLI: the OS user, acting as an operator (they hold the machine's files)."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = "unknown"
    return User(f"cli:{name}", OPERATOR)


def _audited(backend: Backend, action: str, target: str, run: Callable[[], T], *, detail: str = "from the command line",
             describe: Callable[[T], str] | None = None) -> T:
    return perform(cli_user(), action, target, run, backend.audit, detail=detail, describe=describe)


def _replay(args: argparse.Namespace, settings: Settings, backend: Backend) -> int:
    from core.demo import ReplayManager

    options = ReplayOptions(rate=args.rate, limit=args.limit, loop=args.loop, time_mode=args.time_mode,
                            recorded_date=args.date)
    path = args.csv or settings.sample_csv
    # Through the console's replay manager, so CLI replays show in its history and on its time charts.
    manager = ReplayManager(backend.stream, settings.home)
    user = cli_user()
    _audited(backend, "start_replay", Path(path).name,
             lambda: manager.start(path, options, started_by=user.name, source_name=Path(path).name),
             detail=f"from the command line: {path}")

    def interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    # `make run` stops its background replay with SIGTERM (background jobs of a script ignore SIGINT).
    signal.signal(signal.SIGTERM, interrupt)
    try:
        while manager.running():
            time.sleep(0.2)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM stops the replay and still prints its summary
        manager.stop(timeout=30)
    if manager.last_error():
        raise BackendError(f"replay stopped: {manager.last_error()}")
    summary = manager.current()
    assert summary is not None
    _print_replay(summary, args.json)
    return 1 if summary.failed else 0


def _run_local_job(flags: list[str]) -> int:
    """Run the local job (glue_job/local.py) in a child process until it ends; return its exit code.

    A child, not an import: the job sits above core/ and brings PySpark, which the console never loads.
    A stop (SIGTERM from the supervisor, Ctrl-C) is passed on, so the job finishes its batch and ends.
    """
    job = subprocess.Popen([sys.executable, "-m", "glue_job.local", *flags])

    def forward(signum: int, _frame: object) -> None:
        job.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    return job.wait()


RESET_ACTION = "reset_checkpoint_and_start_job"  # the console's name for the same action


def _job(args: argparse.Namespace, settings: Settings, backend: Backend) -> int:
    reset = bool(getattr(args, "reset_checkpoint", False)) and args.job_command in ("run", "start")
    if args.job_command == "run":
        if importlib.util.find_spec("pyspark") is None:
            raise InputError("the local job needs PySpark, which is not installed", next_step="make install")
        flags = [*(["--available-now"] if args.available_now else []), *(["--reset-checkpoint"] if reset else [])]
        if reset:
            return _audited(backend, RESET_ACTION, settings.job_name, lambda: _run_local_job(flags),
                            detail="job run --reset-checkpoint from the command line",
                            describe=lambda code: f"the job exited with code {code}")
        return _run_local_job(flags)
    if args.job_command == "supervise":
        from core.backends.local_job import supervise

        return supervise(settings, reset_checkpoint=args.reset_checkpoint)
    if args.job_command == "start":
        status = _audited(backend, RESET_ACTION if reset else "start_job", settings.job_name,
                          lambda: backend.job.start(reset_checkpoint=reset))
    elif args.job_command == "stop":
        status = _audited(backend, "stop_job", settings.job_name, backend.job.stop)
    else:
        status = backend.job.status()
    data = job_status_to_dict(status)
    if getattr(args, "json", False):
        print(json.dumps(data, indent=1))
    else:
        last = data["last_batch"]
        detail = f", last batch {last['batch_id']} at {last['time']} ({last['input_rows']} rows)" if last else ""
        print(f"job {status.name}: {status.state}{detail}")
        if status.error:
            print(f"  error: {status.error}")
    return 0


def _crawl(args: argparse.Namespace, backend: Backend) -> int:
    names = args.names or [c.name for c in backend.crawlers.list()]
    known = {c.name for c in backend.crawlers.list()}
    for name in names:
        if name not in known:
            raise InputError(f"no crawler named {name!r}; crawlers: {', '.join(sorted(known))}")
    for name in names:
        _audited(backend, "start_crawler", name, partial(backend.crawlers.start, name))
    final = _wait_for_crawlers(backend, names)
    for state in final:
        print(f"{state.name}: {state.last_result or '-'} ({state.message or 'no changes'})")
    return 1 if any(s.last_result == "FAILED" for s in final) else 0


def _wait_for_crawlers(backend: Backend, names: Sequence[str], timeout: float = 600.0) -> list[Any]:
    deadline = time.monotonic() + timeout
    while True:
        states = [s for s in backend.crawlers.list() if s.name in names]
        if all(s.state != "RUNNING" for s in states) or time.monotonic() > deadline:
            return states
        time.sleep(0.1)


def _query(args: argparse.Namespace, backend: Backend) -> int:
    result = backend.lake.query(args.name, {"since": args.since, "until": args.until})
    frame = result.frame
    if args.format == "csv":
        sys.stdout.write(to_safe_csv(frame))  # opened in a spreadsheet, producer text must not run as a formula
    elif args.format == "json":
        print(frame.to_json(orient="records", date_format="iso"))
    else:
        as_of = result.as_of.isoformat() if result.as_of else "no data"
        print(frame.to_string(index=False) if len(frame) else "(no rows)")
        print(f"-- {len(frame)} rows, data as of {as_of}, {result.duration_ms:.0f} ms")
    return 0


def _status(args: argparse.Namespace, settings: Settings, backend: Backend) -> int:
    thresholds = health.Thresholds(settings.stale_after_seconds, settings.dead_after_seconds)
    data = health.snapshot(backend, thresholds)
    if args.json:
        print(json.dumps(data, indent=1))
        return 0
    print(f"backend {data['backend']}: {data['overall'].upper()}")
    for hop in data["chain"]:
        print(f"  [{hop['level']:>5}] {hop['label']}: {hop['detail']}")
    for crawler in data["crawlers"]:
        print(f"  {crawler['name']}: {crawler['state']}, last {crawler['last_result'] or 'never run'}")
    return 0


def _log(text: str) -> None:
    print(f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M:%S')} {text}", file=sys.stderr, flush=True)


def _run_alerts(monitor: alerts.AlertMonitor, interval: float, stop: threading.Event, *, once: bool) -> None:
    """Evaluate every `interval` seconds until `stop` is set; an evaluation that fails is logged, not fatal."""
    if monitor.start_problem:
        _log(f"starting afresh: {monitor.start_problem}")
    reported: tuple[str, ...] = ()
    while not stop.is_set():
        started = time.monotonic()
        try:
            evaluation = monitor.evaluate()
        except (SignalStreamError, OSError) as error:  # the loop outlives a full disk or an unreadable file
            _log(f"evaluation failed: {error}")
        else:
            for event in evaluation.events:
                print(f"{event.time.strftime('%Y-%m-%d %H:%M:%S')} {alerts.message(event)}", flush=True)
            if evaluation.problems != reported:  # once per change, not every trigger
                reported = evaluation.problems
                for problem in reported:
                    _log(f"not judged: {problem}")
            if evaluation.delivery_error:
                _log(f"webhook post failed, retried at the next evaluation: {evaluation.delivery_error}")
        if once:
            return
        stop.wait(max(0.0, interval - (time.monotonic() - started)))


def _alerts(args: argparse.Namespace, settings: Settings, backend: Backend) -> int:
    if args.alerts_command == "rules":
        thresholds = alerts.Thresholds.from_settings(settings)
        for rule in alerts.RULES:
            print(f"{rule.name}: {rule.description}")
        webhook = "set" if settings.alert_webhook else "not set"
        print(f"thresholds: {json.dumps(thresholds.__dict__)}; webhook {webhook}")
        return 0
    if args.alerts_command == "stop":
        pid = alerts.stop_loop(settings.home)
        print(f"alerts loop (pid {pid}) stopped" if pid else "no alerts loop runs")
        return 0
    if args.alerts_command == "list":
        firing = alerts.firing_alerts(settings.home)
        recent = alerts.recent_alerts(settings.home, args.limit)
        if args.json:
            print(json.dumps({
                "evaluated_at": firing.evaluated_at.isoformat() if firing.evaluated_at else None,
                "firing": [{**a.__dict__, "since": a.since.isoformat()} for a in firing],
                "recent": [event.to_dict() for event in recent], "skipped_lines": recent.skipped,
            }, indent=1))
            return 0
        evaluated = firing.evaluated_at.strftime("%Y-%m-%d %H:%M:%S UTC") if firing.evaluated_at else "never"
        print(f"{len(firing)} firing (last evaluated {evaluated})")
        for alert in firing:
            print(f"  [{alert.severity}] {alert.key} since {alert.since:%Y-%m-%d %H:%M:%S}: {alert.summary}")
        for event in recent:
            print(f"  {event.time:%Y-%m-%d %H:%M:%S} {event.kind:>8} {event.key}: {event.summary}")
        if recent.skipped:
            print(f"  ({recent.skipped} unreadable line(s) of the alert log skipped)")
        return 0
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        stop.set()

    # `make run` stops its background loop with SIGTERM; the evaluation under way finishes first.
    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    with alerts.loop_lock(settings.home):
        monitor = alerts.AlertMonitor(settings, backend)
        _log(f"alerts: {len(monitor.rules)} rules every {settings.trigger_seconds:g} s, webhook "
             f"{'set' if settings.alert_webhook else 'not set'}, log {monitor.log_path}")
        _run_alerts(monitor, settings.trigger_seconds, stop, once=args.once)
    _log("alerts: stopped")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; every error is one line on stderr and a non-zero exit code."""
    try:
        args = build_parser().parse_args(argv)
        settings = Settings.from_env(os.environ)
        backend = build_backend(settings)
        if args.command == "replay":
            return _replay(args, settings, backend)
        if args.command == "job":
            return _job(args, settings, backend)
        if args.command == "crawl":
            return _crawl(args, backend)
        if args.command == "query":
            return _query(args, backend)
        if args.command == "alerts":
            return _alerts(args, settings, backend)
        return _status(args, settings, backend)
    except SignalStreamError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`| head`): nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as error:  # the promise is one line, never a traceback; SIGNAL_DEBUG=1 shows it
        if os.environ.get("SIGNAL_DEBUG"):
            traceback.print_exc()
        print(f"error: unexpected {type(error).__name__}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
