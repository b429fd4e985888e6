"""The supervised background job: start, observe, restart after a crash, stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from core.backends.local import build_local_backend
from core.config import Settings
from core.domain import JobStatus
from core.replay import ReplayOptions, replay
from tests.conftest import PROJECT_ROOT, SAMPLE_CSV

pytestmark = pytest.mark.slow


def wait_for(predicate: Callable[[], JobStatus | None], what: str, timeout: float = 120) -> JobStatus:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = predicate()
        if status is not None:
            return status
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def job_pid(home: Path) -> int:
    return int((home / "lake" / "_job" / "status.json").read_text().split('"pid": ')[1].split(",")[0])


def test_start_status_crash_restart_stop(clean_environ: Path) -> None:
    settings = Settings.from_env({"SIGNAL_HOME": str(clean_environ), "SIGNAL_TRIGGER_SECONDS": "1"})
    backend = build_local_backend(settings)
    replay(SAMPLE_CSV, backend.stream, ReplayOptions(limit=500))
    try:
        assert backend.job.start().state in ("STARTING", "RUNNING")
        first = wait_for(lambda: ((s := backend.job.status()).last_batch and s.state == "RUNNING" and s) or None,
                         "the first batch")
        assert first.totals["input_rows"] == 500
        supervisor = json.loads((clean_environ / "run" / "job.pid").read_text())
        assert "core.cli job supervise" in supervisor["command"] and supervisor["started"]
        assert backend.job.start().state == "RUNNING"  # already running: no second supervisor
        second = subprocess.run([sys.executable, "-m", "core.cli", "job", "supervise"], cwd=PROJECT_ROOT,
                                env={**os.environ, **settings.to_env()}, capture_output=True, text=True, timeout=60)
        assert (second.returncode, "another supervisor" in second.stderr) == (1, True)
        assert json.loads((clean_environ / "run" / "job.pid").read_text()) == supervisor

        os.kill(job_pid(clean_environ), signal.SIGKILL)  # the job dies; the supervisor must bring it back
        wait_for(lambda: ((s := backend.job.status()).restarts == 1 and s) or None, "a restart")
        replay(SAMPLE_CSV, backend.stream, ReplayOptions(limit=300))
        after = wait_for(lambda: ((s := backend.job.status()).state == "RUNNING"
                         and s.totals.get("input_rows") == 800 and s) or None, "the batch after the restart")
        assert after.restarts == 1
    finally:
        stopped = backend.job.stop()
    assert stopped.state == "STOPPED"
    assert backend.lake.freshness()[0].files >= 2
