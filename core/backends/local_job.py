"""The local streaming job as a supervised background process.

`start` launches a supervisor (`python -m core.cli job supervise`) in its own session; the
supervisor runs glue_job/local.py and restarts it with backoff when it crashes, and forwards a stop
to it so the query ends cleanly. State lives in files, so every console session and CLI call sees
the same job.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from core.backends.base import JobStatus
from core.backends.job_status import job_status_from_document
from core.backends.processes import pid_alive
from core.config import Settings
from core.lake_layout import JOB_STATE_PREFIX, JOB_STATUS_FILE

PROJECT_ROOT = Path(__file__).resolve().parents[2]
STOP_TIMEOUT_SECONDS = 60.0
MAX_BACKOFF_SECONDS = 60.0


class LocalJob:
    """Start, stop and observe the supervised local job."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.run_folder = settings.home / "run"
        self.pid_file = self.run_folder / "job.pid"
        self.supervisor_file = self.run_folder / "supervisor.json"
        self.log_file = self.run_folder / "job.log"
        self.status_file = settings.home / "lake" / JOB_STATE_PREFIX / JOB_STATUS_FILE

    def _pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def _document(self) -> dict[str, object] | None:
        try:
            return json.loads(self.status_file.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return None

    def _supervisor(self) -> dict[str, object]:
        try:
            return json.loads(self.supervisor_file.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return {}

    def status(self) -> JobStatus:
        """Return the job's state: RUNNING, STARTING, RESTARTING, STOPPED or FAILED."""
        document = self._document()
        supervisor = self._supervisor()
        restarts = int(supervisor.get("restarts", 0))  # type: ignore[call-overload]
        if self._pid() is None:
            failed = document is not None and document.get("state") == "FAILED"
            return job_status_from_document(self.settings.job_name, document,
                                            state="FAILED" if failed else "STOPPED", restarts=restarts)
        job_state = str(document.get("state")) if document else "STARTING"
        if supervisor.get("waiting_to_restart"):
            job_state = "RESTARTING"
        elif job_state in ("STOPPED", "FAILED"):
            job_state = "STARTING"  # the document is from the previous run
        return job_status_from_document(self.settings.job_name, document, state=job_state, restarts=restarts)

    def start(self, *, reset_checkpoint: bool = False) -> JobStatus:
        """Start the supervised job in the background (no-op when it already runs)."""
        if self._pid() is not None:
            return self.status()
        self.run_folder.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.settings.to_env(), "SIGNAL_HOME": str(self.settings.home.resolve())}
        reset = ["--reset-checkpoint"] if reset_checkpoint else []
        with self.log_file.open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "core.cli", "job", "supervise", *reset],
                cwd=PROJECT_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid_file.write_text(str(process.pid))
        return self.status()

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> JobStatus:
        """Stop the job cleanly (the current batch finishes); kill it after the timeout."""
        pid = self._pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if pid_alive(pid):
                os.killpg(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return self.status()


# `job run`'s exit code when it refuses its checkpoint (glue_job/local.py, glue_job/app_identity.py):
# restarting cannot help, an operator has to choose.
REFUSED_EXIT_CODE = 3


def supervise(settings: Settings, *, reset_checkpoint: bool = False) -> int:
    """Run the job in a child process; restart it with backoff when it fails; forward a stop.

    A checkpoint reset is passed to the first run only: a restart after a crash resumes the new
    checkpoint. A refused start is not restarted (the status document says why).
    """
    run_folder = settings.home / "run"
    run_folder.mkdir(parents=True, exist_ok=True)
    state_file = run_folder / "supervisor.json"
    stopping = False
    child: subprocess.Popen[bytes] | None = None
    restarts = 0

    def write_state(waiting: bool) -> None:
        temporary = state_file.with_suffix(".tmp")
        temporary.write_text(json.dumps({"pid": os.getpid(), "restarts": restarts, "waiting_to_restart": waiting}))
        os.replace(temporary, state_file)

    def on_stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    while not stopping:
        write_state(False)
        reset = ["--reset-checkpoint", "--supervised"] if reset_checkpoint and restarts == 0 else []
        child = subprocess.Popen([sys.executable, "-m", "core.cli", "job", "run", *reset], cwd=PROJECT_ROOT)
        code = child.wait()
        if stopping or code in (0, REFUSED_EXIT_CODE):
            break
        restarts += 1
        delay = min(MAX_BACKOFF_SECONDS, 2.0 ** min(restarts, 6))
        print(f"job exited with code {code}; restart {restarts} in {delay:.0f} s", file=sys.stderr, flush=True)
        write_state(True)
        deadline = time.monotonic() + delay
        while not stopping and time.monotonic() < deadline:
            time.sleep(0.2)
    write_state(False)
    return 0
