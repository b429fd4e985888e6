"""Truncated and corrupt state files: a corrupt catalog, a corrupt job status, corrupt audit and replay-history
lines. Each gives a clear message in the CLI and on the console (no traceback), and the data stays exact.

(A truncated line in a stream file goes through the Spark job: tests/faults/test_stream_records.py.)
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from deltalake import DeltaTable

from core import cli
from core.audit import FileAuditLog
from core.auth import User, perform
from core.lake_layout import SIGNAL_STRENGTH_BY_OPERATOR
from glue_job.lake_files import LakeFiles
from glue_job.status import STATUS_PATH, StatusTracker
from tests.conftest import SAMPLE_CSV
from tests.harness import cli as run_cli
from tests.harness import open_page, page_text, pipeline_env
from tests.pages.seed import seed

# What tests/pages/seed.py writes to signal_strength_by_operator: three windows of scales 1, 2 and 4.
SEEDED = {"Movistar": (20.0, 7), "Yoigo": (10.0, 7)}  # operator: (average signal, samples)
PAGES = ("pages/overview.py", "pages/live_aggregations.py", "pages/pipeline_health.py")


def delta_signal(home: Path) -> dict[str, tuple[float, int]]:
    """Return average signal and samples per operator, read with deltalake alone."""
    frame = DeltaTable(str(home / "lake" / SIGNAL_STRENGTH_BY_OPERATOR.prefix)).to_pandas()
    grouped = frame.groupby("operator").agg(total=("signal_sum", "sum"), samples=("signal_count", "sum"))
    return {k: (float(r.total) / int(r.samples), int(r.samples)) for k, r in grouped.iterrows()}


def cli_signal(capsys: pytest.CaptureFixture[str]) -> dict[str, tuple[float, int]]:
    """Return `query signal_by_operator` as the CLI prints it."""
    assert cli.main(["query", "signal_by_operator", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    return {r["operator"]: (float(r["avg_signal"]), int(r["samples"])) for r in rows}


def assert_clean(at: object, where: str) -> None:
    exceptions = [e.value for e in at.exception]  # type: ignore[attr-defined]
    assert not exceptions, f"{where}: {exceptions}"
    assert "Traceback" not in page_text(at), where  # type: ignore[arg-type]


def test_a_corrupt_catalog_is_named_everywhere_and_a_crawl_rebuilds_it_with_exact_data(
        clean_environ: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seed(clean_environ)
    assert delta_signal(clean_environ) == SEEDED == cli_signal(capsys)
    catalog = clean_environ / "catalog" / "mobile_network_aggregations.json"
    catalog.write_bytes(catalog.read_bytes()[: catalog.stat().st_size // 2])  # torn half-way

    assert cli.main(["query", "signal_by_operator"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: the local catalog {catalog} is corrupt (") and len(err.strip().splitlines()) == 1
    assert "re-crawl: python -m core.cli crawl" in err and "Traceback" not in err

    for page in PAGES:
        at = open_page(page)
        assert_clean(at, page)
    at = open_page("pages/live_aggregations.py")
    assert f"the local catalog {catalog} is corrupt" in page_text(at) and "re-crawl" in page_text(at)
    wall = open_page(kiosk="1")
    assert_clean(wall, "wall display")
    assert "is corrupt" in page_text(wall)

    assert cli.main(["crawl"]) == 0
    capsys.readouterr()
    assert [p.name.split(".json.corrupt-")[0] for p in catalog.parent.glob("*.corrupt-*")] == [
        "mobile_network_aggregations"], "the broken catalog is kept aside for a look"
    assert cli_signal(capsys) == SEEDED == delta_signal(clean_environ)
    at = open_page("pages/live_aggregations.py")
    assert_clean(at, "after the crawl")
    assert "corrupt" not in page_text(at)


# Valid JSON of another shape: the readers say UNKNOWN and "the job rewrites it when it starts", and it does.
NOT_AN_OBJECT = pytest.param(b"[1, 2]", id="not-an-object")


@pytest.mark.parametrize("content", [b'{"state": "RUNNING", "totals": {"batch', b"\x00\xff\xfe garbage", NOT_AN_OBJECT])
def test_a_corrupt_job_status_reads_as_unknown_with_the_way_out_and_the_data_stays_exact(
        clean_environ: Path, capsys: pytest.CaptureFixture[str], content: bytes) -> None:
    seed(clean_environ)
    status = clean_environ / "lake" / STATUS_PATH
    status.parent.mkdir(parents=True, exist_ok=True)
    status.write_bytes(content)

    assert cli.main(["job", "status", "--json"]) == 0
    reported = json.loads(capsys.readouterr().out)
    assert reported["state"] == "UNKNOWN"
    assert f"the job's state file {status} is unreadable" in reported["error"]
    assert "the job rewrites it when it starts" in reported["error"]
    assert cli.main(["status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["overall"] in ("red", "amber", "green", "grey")

    at = open_page("pages/pipeline_health.py")
    assert_clean(at, "pipeline health")
    assert "badge[UNKNOWN]" in page_text(at)  # the job's state badge (st.badge is markdown)
    assert f"Last error: the job's state file {status} is unreadable" in page_text(at)
    assert_clean(open_page(), "overview")
    assert cli_signal(capsys) == SEEDED == delta_signal(clean_environ), "the lake is not the status file"

    # The job's next start replaces it with a whole document (its counters start again from zero).
    StatusTracker(LakeFiles(str(clean_environ / "lake")), "etl_streaming_mobile_logs")
    rewritten = json.loads(status.read_text())
    assert rewritten["state"] == "STARTING" and rewritten["totals"]["input_rows"] == 0
    assert cli.main(["job", "status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["error"] is None


def test_corrupt_audit_lines_are_skipped_and_counted_and_every_whole_entry_shows(clean_environ: Path) -> None:
    audit = FileAuditLog(clean_environ / "audit" / "audit.jsonl")
    alice = User("alice", "operator")
    perform(alice, "start_crawler", "crawler_status_count", lambda: None, audit)
    with audit.path.open("ab") as log:
        log.write(b"\xff\xfe not utf-8\n")  # bytes from something else
        log.write(b'{"time": "2026-03-01T10:00:00+00:00", "user": "x"}\n')  # JSON, not an entry
        log.write(b'{"time": "2026-03-01T10:00:00+00:00", "user": "bob", "ro')  # torn mid-write, no newline
    perform(alice, "stop_job", "etl_streaming_mobile_logs", lambda: None, audit)

    entries = audit.recent()
    assert entries.skipped == 3
    assert [(e.action, e.outcome) for e in entries] == [
        ("stop_job", "succeeded"), ("stop_job", "requested"),
        ("start_crawler", "succeeded"), ("start_crawler", "requested")]

    at = open_page("pages/audit_log.py")
    assert_clean(at, "audit log")
    assert "3 unreadable audit entries were skipped" in page_text(at)
    table = next(d.value for d in at.dataframe if "outcome" in d.value.columns)
    assert table[["action", "outcome"]].values.tolist() == [[a, o] for a, o in
                                                             [(e.action, e.outcome) for e in entries]]


def test_a_torn_replay_history_line_keeps_the_other_replays_on_the_demo_page(
        clean_environ: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = signal.getsignal(signal.SIGTERM)
    try:
        assert cli.main(["replay", str(SAMPLE_CSV), "--limit", "10"]) == 0
    finally:
        signal.signal(signal.SIGTERM, before)  # the CLI's replay handles SIGTERM in the process that runs it
    capsys.readouterr()
    history = clean_environ / "demo" / "replays.jsonl"
    with history.open("a", encoding="utf-8") as handle:
        handle.write('{"replay_id": "r-torn", "source_name": "x.csv", "started_')  # a console killed mid-write

    at = open_page("pages/demo_replay.py")

    assert_clean(at, "demo replay")
    shown = "\n".join(str(d.value.to_dict()) for d in at.dataframe)
    assert "mobile_logs.csv" in shown and "r-torn" not in shown


def truncate_newest_commit(home: Path) -> Path:
    """Cut the newest Delta commit of signal_strength_by_operator in half, as a power loss can leave it (the
    local object store renames its commit into place without an fsync); return the commit file."""
    log = home / "lake" / SIGNAL_STRENGTH_BY_OPERATOR.prefix / "_delta_log"
    newest = sorted(log.glob("*.json"))[-1]
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    return newest


def test_a_truncated_delta_commit_is_one_line_from_the_cli(clean_environ: Path) -> None:
    seed(clean_environ)
    truncate_newest_commit(clean_environ)
    # A user's environment: with RUST_BACKTRACE=1 (this sandbox sets it) delta-rs appends a Rust backtrace
    # to its error's message, and the line becomes 18.
    env = {k: v for k, v in pipeline_env(clean_environ).items() if k != "RUST_BACKTRACE"}

    done = run_cli("query", "signal_by_operator", env=env, check=False)

    assert done.returncode != 0 and done.stderr.startswith("error: "), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "Truncated" in done.stderr or "Json" in done.stderr


def test_a_truncated_delta_commit_is_a_message_on_the_console_not_an_exception(clean_environ: Path) -> None:
    seed(clean_environ)
    truncate_newest_commit(clean_environ)

    at = open_page("pages/live_aggregations.py")

    assert_clean(at, "live aggregations")
