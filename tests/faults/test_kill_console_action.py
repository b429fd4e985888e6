"""kill -9 of the console while an operator action runs: the audit log stays readable and shows the request
with no outcome, and the next action is audited as usual.

The action runs as the console runs it (core.auth.perform over the local backend's audit log) in a
subprocess standing in for the Streamlit server; the action is slow, and the process is killed once its
`requested` entry is on disk.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from core.audit import FileAuditLog
from core.auth import User, perform
from tests.conftest import PROJECT_ROOT
from tests.harness import open_page, page_text

JOB = "etl_streaming_mobile_logs"
SLOW_ACTION = """
import os, time
from core.auth import User, perform
from core.backends.local import build_local_backend
from core.config import Settings

audit = build_local_backend(Settings.from_env(os.environ)).audit
perform(User("alice", "operator"), "stop_job", "etl_streaming_mobile_logs", lambda: time.sleep(600), audit,
        detail="from the console")
"""


def test_an_action_killed_mid_run_shows_as_requested_with_no_outcome(clean_environ: Path) -> None:
    audit = FileAuditLog(clean_environ / "audit" / "audit.jsonl")
    alice = User("alice", "operator")
    perform(alice, "start_crawler", "crawler_status_count", lambda: None, audit)

    console = subprocess.Popen([sys.executable, "-c", SLOW_ACTION], cwd=PROJECT_ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not any(e.action == "stop_job" for e in audit.recent()):
            assert console.poll() is None, console.communicate()
            assert time.monotonic() < deadline, "the action was never audited as requested"
            time.sleep(0.02)
        assert console.poll() is None, "the action is still running when the console is killed"
    finally:
        console.send_signal(signal.SIGKILL)
        console.wait()
    assert console.returncode == -signal.SIGKILL

    after_kill = audit.recent()
    assert after_kill.skipped == 0, "no entry was torn"
    assert [(e.action, e.outcome) for e in after_kill] == [
        ("stop_job", "requested"), ("start_crawler", "succeeded"), ("start_crawler", "requested")]
    assert (after_kill[0].user, after_kill[0].target, after_kill[0].reason) == ("alice", JOB, "from the console")

    # The log takes the next action as usual, as whole lines after the interrupted one.
    perform(alice, "start_job", JOB, lambda: None, audit)
    assert [(e.action, e.outcome) for e in audit.recent()][:3] == [
        ("start_job", "succeeded"), ("start_job", "requested"), ("stop_job", "requested")]
    assert audit.recent().skipped == 0

    # The Audit log page shows it: no traceback, the request without an outcome, and what that means.
    at = open_page("pages/audit_log.py")
    assert not at.exception, [e.value for e in at.exception]
    table = next(d.value for d in at.dataframe if "outcome" in d.value.columns)
    stop_job = table[table["action"] == "stop_job"]
    assert stop_job["outcome"].tolist() == ["requested"]
    assert "a request without an outcome is still running or was interrupted" in page_text(at)
    assert "unreadable" not in page_text(at)
