"""A full disk (ENOSPC) under the stream, the audit log and the job's state: each write that cannot be made
is refused or reported, nothing half-written is read, and nothing already committed is lost.

The disk fills at the OS edge of Python's file I/O (tests/faults/support.py, DiskFull): file objects
write what still fits and raise OSError(ENOSPC), or os.fsync raises it. delta-rs writes from Rust,
where no Python patch reaches: its append is made to fail by the OS itself (RLIMIT_FSIZE, EFBIG) instead.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from deltalake import DeltaTable

from core import cli
from core.audit import FileAuditLog
from core.auth import User, perform
from core.backends.local import build_local_backend
from core.config import Settings
from core.errors import PermissionDeniedError
from core.lake_layout import SIGNAL_STRENGTH_BY_OPERATOR, MaintenanceRun
from glue_job.lake_files import LakeFiles
from glue_job.local import main as local_job_main
from glue_job.sink import BatchOutput, LakeTables
from glue_job.status import STATUS_PATH, StatusTracker
from tests.conftest import PROJECT_ROOT, SAMPLE_CSV
from tests.faults.support import DiskFull, read_stream, temporaries
from tests.harness import open_page
from tests.lake_fixtures import delta_rows, signal_rows

JOB = "etl_streaming_mobile_logs"
ALICE = User("alice", "operator")
NO_SPACE = "No space left on device"


@pytest.fixture
def sigterm_restored() -> Iterator[None]:
    """The CLI's replay installs a SIGTERM handler in the process that runs it: give pytest its own back."""
    before = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, before)


# --- the stream ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fail", ["write", "fsync"])
def test_a_full_disk_under_the_stream_fails_the_records_it_cannot_hold_and_leaves_nothing_half_written(
        clean_environ: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        sigterm_restored: None, fail: str) -> None:
    stream_folder = clean_environ / "stream" / "mobile_coverage_logs"
    # Room for two batch files of 500 records of the sample (about 282 kB each), not three.
    disk = DiskFull(stream_folder, free=700_000, fail=fail).install(monkeypatch)

    code = cli.main(["replay", str(SAMPLE_CSV), "--limit", "2000", "--json"])

    summary = json.loads(capsys.readouterr().out)
    assert disk.refusals > 0
    assert code == 1, "a replay that could not send everything exits non-zero"
    assert summary["sent"] == 1000 and summary["failed"] == 1000
    assert summary["failures"] == {"LocalWriteFailed": 1000}
    # On disk: exactly the records reported sent, in whole files, and no temporary left behind.
    rows, envelopes = read_stream(stream_folder)
    assert len(rows) == summary["sent"]
    sent_lines = sorted(int(e["record"]["record_id"].rsplit(":", 1)[1]) for e in envelopes)
    assert sent_lines == list(range(2, 2 + summary["sent"]))  # CSV lines 2.. : the first batches, whole
    assert temporaries(clean_environ) == []
    assert pd.read_csv(SAMPLE_CSV, dtype=str, keep_default_na=False).head(summary["sent"])["operator"].tolist() == \
        rows["operator"].tolist()
    backend = build_local_backend(Settings.from_env({"SIGNAL_HOME": str(clean_environ)}))
    assert backend.stream.health().pending_records == summary["sent"]
    # The replay's history says it too (the console's Demo page reads it).
    history = [json.loads(line) for line in (clean_environ / "demo" / "replays.jsonl").read_text().splitlines()]
    assert (history[-1]["sent"], history[-1]["failed"], history[-1]["error"]) == (1000, 1000, None)


def test_the_cli_names_the_failed_records_in_one_summary_line_not_a_traceback(
        clean_environ: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        sigterm_restored: None) -> None:
    DiskFull(clean_environ / "stream", free=0, fail="write").install(monkeypatch)

    code = cli.main(["replay", str(SAMPLE_CSV), "--limit", "600"])

    out, err = capsys.readouterr()
    assert code == 1
    assert "sent 0, rejected 0, failed 600" in out
    assert "failed: 600 record(s) with LocalWriteFailed" in out
    assert "Traceback" not in out + err
    assert not list((clean_environ / "stream").rglob("*.jsonl")) and temporaries(clean_environ) == []


# --- the audit log -------------------------------------------------------------------------------


@pytest.mark.parametrize("fail", ["write", "fsync"])
def test_a_full_disk_under_the_audit_log_refuses_the_action_fail_closed(
        clean_environ: Path, monkeypatch: pytest.MonkeyPatch, fail: str) -> None:
    audit = FileAuditLog(clean_environ / "audit" / "audit.jsonl")
    perform(ALICE, "start_crawler", "crawler_status_count", lambda: None, audit)
    disk = DiskFull(clean_environ / "audit", free=40, fail=fail).install(monkeypatch)
    ran: list[str] = []

    with pytest.raises(PermissionDeniedError) as refused:
        perform(ALICE, "stop_job", JOB, lambda: ran.append("stop_job"), audit)

    assert ran == [], "an action whose request could not be audited never runs"
    assert f"the audit log cannot be written, so stop job {JOB} did not run" in str(refused.value)
    assert NO_SPACE in str(refused.value) and "check the audit log's storage (space" in str(refused.value)
    entries = audit.recent()
    assert [(e.action, e.outcome) for e in entries if e.action == "start_crawler"] == [
        ("start_crawler", "succeeded"), ("start_crawler", "requested")], "what was audited before is intact"
    # write: the part that fitted is a torn line, skipped and counted. fsync: the line reached the page cache
    # but not the disk; read back it is a request without an outcome, though the action was refused.
    stop_job = [e.outcome for e in entries if e.action == "stop_job"]
    assert (stop_job, entries.skipped) == (([], 1) if fail == "write" else (["requested"], 0))

    disk.free = 10**9  # space freed: the next action is audited on whole lines again
    perform(ALICE, "start_job", JOB, lambda: ran.append("start_job"), audit)
    assert ran == ["start_job"]
    newest = [(e.action, e.outcome) for e in audit.recent()][:2]
    assert newest == [("start_job", "succeeded"), ("start_job", "requested")]
    assert audit.recent().skipped == entries.skipped


def test_the_console_refuses_an_action_on_a_full_audit_disk_with_a_message(
        clean_environ: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    disk = DiskFull(clean_environ / "audit", free=0, fail="write").install(monkeypatch)
    at = open_page("pages/pipeline_health.py")
    at.button(key="crawl_crawler_status_count").click().run()
    at.button(key="crawler_confirm").click().run()

    assert not at.exception, [e.value for e in at.exception]
    refusal = next(e.value for e in at.error if "Refused" in e.value)
    assert "the audit log cannot be written, so start crawler crawler_status_count did not run" in refusal
    assert NO_SPACE in refusal
    assert disk.refusals >= 1
    assert not (clean_environ / "catalog" / "crawlers" / "crawler_status_count.lock").exists(), "nothing ran"
    assert not (clean_environ / "catalog" / "crawlers" / "crawler_status_count.json").exists()


# --- the job's state and the lake --------------------------------------------------------------


def _committed_lake(lake: Path) -> tuple[LakeTables, pd.DataFrame]:
    """Commit two batches through the job's writer; return the tables and every row written."""
    tables = LakeTables(str(lake))
    tables.create_all()
    start = datetime.now(UTC).replace(second=0, microsecond=0, tzinfo=None) - timedelta(minutes=5)
    written = []
    for batch_id, (operator, total, count) in enumerate([("Movistar", 120.0, 8), ("Yoigo", 45.0, 3)]):
        rows = signal_rows(start + timedelta(minutes=batch_id), operator, total, count)
        assert tables.append(SIGNAL_STRENGTH_BY_OPERATOR, delta_rows(SIGNAL_STRENGTH_BY_OPERATOR, batch_id, rows),
                             "app-1", batch_id)
        written += rows
    return tables, pd.DataFrame(written)


def _signal_totals(lake: Path) -> dict[str, tuple[float, int]]:
    frame = DeltaTable(str(lake / SIGNAL_STRENGTH_BY_OPERATOR.prefix)).to_pandas()
    grouped = frame.groupby("operator").agg(total=("signal_sum", "sum"), count=("signal_count", "sum"))
    return {k: (float(r.total), int(r["count"])) for k, r in grouped.iterrows()}


def _reference(written: pd.DataFrame) -> dict[str, tuple[float, int]]:
    grouped = written.groupby("operator").agg(total=("signal_sum", "sum"), count=("signal_count", "sum"))
    return {k: (float(r.total), int(r["count"])) for k, r in grouped.iterrows()}


def _progress(batch_id: int, rows: int) -> dict[str, object]:
    return {"runId": "run-1", "batchId": batch_id, "numInputRows": rows, "timestamp": datetime.now(UTC).isoformat()}


def test_a_full_disk_under_the_job_state_stops_the_job_with_one_line_and_loses_nothing(
        clean_environ: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    lake = clean_environ / "lake"
    tables, written = _committed_lake(lake)
    tracker = StatusTracker(LakeFiles(str(lake)), JOB)
    for batch_id, count in ((0, 8), (1, 3)):
        tracker.record_output(BatchOutput(batch_id, count, count, 0, 1))
        tracker.absorb([_progress(batch_id, count)])
    status_before = (lake / STATUS_PATH).read_bytes()
    disk = DiskFull(lake / "_job", fail="fsync").install(monkeypatch)

    # The job cannot start: its first write is its status. One line, no traceback, non-zero. (The job's own
    # entry, in this process where the disk is full; `core.cli job run` starts it as a child.)
    code = local_job_main(["--available-now"])
    err = capsys.readouterr().err
    assert code != 0 and disk.refusals == 1
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert NO_SPACE in err and "Traceback" not in err

    # Mid-run: the batch's Delta commits are made (delta-rs writes elsewhere), then the status write fails.
    # The error reaches the batch function (the job fails the batch, so Spark retries it on restart).
    rows = signal_rows(datetime.now(UTC).replace(second=0, microsecond=0, tzinfo=None), "Orange", 60.0, 4)
    assert tables.append(SIGNAL_STRENGTH_BY_OPERATOR, delta_rows(SIGNAL_STRENGTH_BY_OPERATOR, 2, rows), "app-1", 2)
    with pytest.raises(OSError, match=NO_SPACE):
        tracker.record_maintenance([MaintenanceRun("compaction", datetime.now(UTC), 0.1)])

    # Nothing already written is lost: the status document is the last whole one, no temporary is left,
    # and the console reads it as before.
    assert (lake / STATUS_PATH).read_bytes() == status_before
    assert temporaries(clean_environ) == []
    status = build_local_backend(Settings.from_env({"SIGNAL_HOME": str(clean_environ)})).job.status()
    assert status.state == "STOPPED" and status.totals["input_rows"] == 11 and status.error is None

    # Space freed, the retried batch is skipped by the lake (its app transaction is there): each row once.
    disk.free = 10**9
    assert not tables.append(SIGNAL_STRENGTH_BY_OPERATOR, delta_rows(SIGNAL_STRENGTH_BY_OPERATOR, 2, rows), "app-1", 2)
    tracker.record_output(BatchOutput(2, 4, 4, 0, 1))
    tracker.absorb([_progress(2, 4)])
    assert _signal_totals(lake) == _reference(pd.concat([written, pd.DataFrame(rows)]))
    assert json.loads((lake / STATUS_PATH).read_text())["totals"]["input_rows"] == 15


SINK_ON_A_FULL_DISK = """
import resource, signal, sys
from datetime import datetime, timedelta
from glue_job.sink import LakeTables
from core.lake_layout import SIGNAL_STRENGTH_BY_OPERATOR as SIGNAL
from tests.lake_fixtures import delta_rows, signal_rows

start = datetime.fromisoformat(sys.argv[2])
rows = [row for i in range(20000) for row in signal_rows(start + timedelta(minutes=i % 50), f"Op {i}", 3.0, 1)]
batch = delta_rows(SIGNAL, 2, rows)
tables = LakeTables(sys.argv[1])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the OS then fails the write (EFBIG) instead of killing us
resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))
try:
    tables.append(SIGNAL, batch, "app-1", 2)
except Exception as error:
    print(f"{type(error).__name__}: {error}")
    sys.exit(1)
"""


def test_a_sink_append_the_disk_cannot_hold_commits_nothing_and_its_retry_commits_once(clean_environ: Path) -> None:
    lake = clean_environ / "lake"
    tables, written = _committed_lake(lake)
    version = DeltaTable(str(lake / SIGNAL_STRENGTH_BY_OPERATOR.prefix)).version()
    start = datetime.now(UTC).replace(second=0, microsecond=0, tzinfo=None) - timedelta(minutes=50)

    done = subprocess.run([sys.executable, "-c", SINK_ON_A_FULL_DISK, str(lake), start.isoformat()],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)

    assert done.returncode == 1, done.stderr[-2000:]
    assert done.stdout.startswith("DeltaError: ") and "File too large" in done.stdout, done.stdout
    table = DeltaTable(str(lake / SIGNAL_STRENGTH_BY_OPERATOR.prefix))
    assert table.version() == version and table.transaction_version("app-1") == 1, "nothing was committed"
    assert _signal_totals(lake) == _reference(written), "readers see exactly what was committed before"
    assert temporaries(lake) == []

    # The batch is retried (Spark had not committed it): the lake takes it once.
    rows = [row for i in range(20000) for row in signal_rows(start + timedelta(minutes=i % 50), f"Op {i}", 3.0, 1)]
    assert tables.append(SIGNAL_STRENGTH_BY_OPERATOR, delta_rows(SIGNAL_STRENGTH_BY_OPERATOR, 2, rows), "app-1", 2)
    assert not tables.append(SIGNAL_STRENGTH_BY_OPERATOR, delta_rows(SIGNAL_STRENGTH_BY_OPERATOR, 2, rows), "app-1", 2)
    assert _signal_totals(lake) == _reference(pd.concat([written, pd.DataFrame(rows)]))

