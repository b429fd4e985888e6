"""The local streaming job as a supervised background process.

`start` launches a supervisor (`python -m core.cli job supervise`) in its own session; the
supervisor runs glue_job/local.py and restarts it with backoff when it crashes, and forwards a stop
to it so the query ends cleanly. State lives in files, so every console session and CLI call sees
the same job.

One supervisor per checkpoint: `start` checks and spawns under an exclusive file lock (two clicks,
two CLI calls), and the supervisor itself holds a lock for its lifetime. The pid file records the
supervisor's command line and start time with its pid: `stop` signals a process only when both still
match, because a pid left in a stale file may by now belong to anything.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from core.backends.job_status import (
    UnreadableDocument,
    job_status_from_document,
    parse_status_document,
    unknown_job_status,
)
from core.backends.processes import command_line, pid_alive, start_time
from core.config import Settings
from core.domain import JobStatus
from core.durable import write_text_atomically
from core.lake_layout import JOB_STATE_PREFIX, JOB_STATUS_FILE

PROJECT_ROOT = Path(__file__).resolve().parents[2]
STOP_TIMEOUT_SECONDS = 60.0
MAX_BACKOFF_SECONDS = 60.0
SUPERVISE_COMMAND = (sys.executable, "-m", "core.cli", "job", "supervise")
SUPERVISOR_MARKER = "core.cli job supervise"  # how a pid file of an older version is checked
SUPERVISOR_RESTART = ("the supervisor rewrites it when it starts the job: python -m core.cli job stop, "
                      "then python -m core.cli job start")


@dataclasses.dataclass(frozen=True)
class SupervisorRecord:
    """What the pid file says about the supervisor we started."""

    pid: int
    command: str | None = None  # its arguments joined by spaces
    started: str | None = None  # its start time as the system reports it

    def is_running(self) -> bool:
        """Return True while this very process runs: same pid, command line and start time."""
        if not pid_alive(self.pid):
            return False
        live_command = command_line(self.pid)
        if live_command is None:
            return False
        if self.command is not None and live_command != self.command:
            return False
        if self.command is None and SUPERVISOR_MARKER not in live_command:
            return False
        return self.started is None or start_time(self.pid) == self.started


class LocalJob:
    """Start, stop and observe the supervised local job."""

    def __init__(self, settings: Settings, *, supervisor_command: Sequence[str] = SUPERVISE_COMMAND) -> None:
        self.settings = settings
        self.supervisor_command = tuple(supervisor_command)  # tests run a stub in its place
        self.run_folder = settings.home / "run"
        self.pid_file = self.run_folder / "job.pid"
        self.start_lock_file = self.run_folder / "start.lock"
        self.supervisor_file = self.run_folder / "supervisor.json"
        self.log_file = self.run_folder / "job.log"
        self.status_file = settings.home / "lake" / JOB_STATE_PREFIX / JOB_STATUS_FILE

    def _record(self) -> SupervisorRecord | None:
        """Return what the pid file says (None when there is none); ValueError when it is unreadable."""
        try:
            text = self.pid_file.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        if text.isdigit():  # written by an older version: the pid alone
            return SupervisorRecord(int(text))
        data = json.loads(text)  # ValueError when corrupt
        if not isinstance(data, dict) or not isinstance(data.get("pid"), int):
            raise ValueError("no pid in it")
        return SupervisorRecord(data["pid"], _text_or_none(data.get("command")), _text_or_none(data.get("started")))

    def _pid(self) -> int | None:
        """Return the pid of our running supervisor, or None."""
        try:
            record = self._record()
        except (OSError, ValueError):
            return None
        return record.pid if record is not None and record.is_running() else None

    def _document(self) -> dict[str, Any] | None:
        try:
            return parse_status_document(self.status_file.read_bytes())
        except FileNotFoundError:
            return None
        except OSError as error:
            raise UnreadableDocument(str(error)) from error

    def _supervisor(self) -> tuple[int, bool]:
        """Return the supervisor's restarts and whether it waits to restart the job."""
        try:
            state = parse_status_document(self.supervisor_file.read_bytes())
        except FileNotFoundError:
            return 0, False
        except OSError as error:
            raise UnreadableDocument(str(error)) from error
        try:
            return int(state.get("restarts", 0)), bool(state.get("waiting_to_restart"))
        except (TypeError, ValueError) as error:
            raise UnreadableDocument(f"restarts: {error}") from error

    def status(self) -> JobStatus:
        """Return the job's state: RUNNING, STARTING, RESTARTING, STOPPED, FAILED, or UNKNOWN (a file is unreadable)."""
        name = self.settings.job_name
        try:
            restarts, waiting = self._supervisor()
        except UnreadableDocument as problem:
            return unknown_job_status(name, str(self.supervisor_file), problem, next_step=SUPERVISOR_RESTART)
        try:
            document = self._document()
        except UnreadableDocument as problem:
            return unknown_job_status(name, str(self.status_file), problem, restarts=restarts)
        where = str(self.status_file)
        if self._pid() is None:
            failed = document is not None and document.get("state") == "FAILED"
            return job_status_from_document(name, document, state="FAILED" if failed else "STOPPED",
                                            restarts=restarts, where=where)
        job_state = str(document.get("state")) if document else "STARTING"
        if waiting:
            job_state = "RESTARTING"
        elif job_state in ("STOPPED", "FAILED"):
            job_state = "STARTING"  # the document is from the previous run
        return job_status_from_document(name, document, state=job_state, restarts=restarts, where=where)

    @contextlib.contextmanager
    def _start_lock(self) -> Iterator[None]:
        # Whoever holds it alone checks whether a supervisor runs and starts one, or stops it.
        self.run_folder.mkdir(parents=True, exist_ok=True)
        with self.start_lock_file.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def start(self, *, reset_checkpoint: bool = False) -> JobStatus:
        """Start the supervised job in the background (no-op when it already runs)."""
        with self._start_lock():
            if self._pid() is None:
                self._spawn(reset_checkpoint)
        return self.status()

    def _spawn(self, reset_checkpoint: bool) -> None:
        env = {**os.environ, **self.settings.to_env(), "SIGNAL_HOME": str(self.settings.home.resolve())}
        command = [*self.supervisor_command, *(["--reset-checkpoint"] if reset_checkpoint else [])]
        with self.log_file.open("ab") as log:
            process = subprocess.Popen(
                command, cwd=PROJECT_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        # Popen returns once the child runs the command, so its command line is the one to record.
        record = {"pid": process.pid, "command": command_line(process.pid) or " ".join(command),
                  "started": start_time(process.pid)}
        with contextlib.ExitStack() as unless_recorded:
            # Stopped when its pid file cannot be written (an interrupt included): a supervisor nobody could
            # find or stop again.
            unless_recorded.callback(os.killpg, process.pid, signal.SIGTERM)
            write_text_atomically(self.pid_file, json.dumps(record))
            unless_recorded.pop_all()

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> JobStatus:
        """Stop the job cleanly (the current batch finishes); kill it after the timeout.

        Only a process that is provably our supervisor is signalled; a pid file naming anything else is
        stale: it is removed, nothing is signalled, and the returned status says so.
        """
        stale: str | None = None
        with self._start_lock():  # a start meanwhile waits, then sees no supervisor
            try:
                record = self._record()
            except (OSError, ValueError) as error:
                record, stale = None, f"the pid file {self.pid_file} was unreadable ({error})"
            if record is not None and record.is_running():
                self._terminate(record, timeout)
            elif record is not None:
                stale = f"the pid file {self.pid_file} was stale (pid {record.pid} is not this job's supervisor)"
            self.pid_file.unlink(missing_ok=True)
        status = self.status()
        if stale is None:
            return status
        notice = f"{stale}: removed it and signalled nothing"
        return dataclasses.replace(status, error=f"{notice}; {status.error}" if status.error else notice)

    @staticmethod
    def _terminate(record: SupervisorRecord, timeout: float) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(record.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while record.is_running() and time.monotonic() < deadline:
            time.sleep(0.2)
        if record.is_running():  # checked again: once it exits, its pid may be another's
            with contextlib.suppress(ProcessLookupError):
                os.killpg(record.pid, signal.SIGKILL)


def _text_or_none(value: object) -> str | None:
    return None if value is None else str(value)


# `job run`'s exit code when it refuses its checkpoint (glue_job/local.py, glue_job/app_identity.py):
# restarting cannot help, an operator has to choose.
REFUSED_EXIT_CODE = 3


def supervise(settings: Settings, *, reset_checkpoint: bool = False) -> int:
    """Run the job in a child process; restart it with backoff when it fails; forward a stop.

    A checkpoint reset is passed to the first run only: a restart after a crash resumes the new
    checkpoint. A refused start is not restarted (the status document says why). Exits with 1 at once
    when another supervisor runs on this SIGNAL_HOME: two would run two jobs on one checkpoint.
    """
    run_folder = settings.home / "run"
    run_folder.mkdir(parents=True, exist_ok=True)
    with (run_folder / "supervisor.lock").open("a") as lifetime:
        try:  # held until this process exits; children do not inherit it (close_fds)
            fcntl.flock(lifetime, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"another supervisor already runs the job of {settings.home}", file=sys.stderr, flush=True)
            return 1
        return _supervise(run_folder, reset_checkpoint)


def _supervise(run_folder: Path, reset_checkpoint: bool) -> int:
    state_file = run_folder / "supervisor.json"
    stopping = False
    child: subprocess.Popen[bytes] | None = None
    restarts = 0

    def write_state(waiting: bool) -> None:
        state = {"pid": os.getpid(), "restarts": restarts, "waiting_to_restart": waiting}
        write_text_atomically(state_file, json.dumps(state))

    def on_stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    while not stopping:
        write_state(False)
        # The job's own entry (what `core.cli job run` starts): the reset was audited by `job start`.
        reset = ["--reset-checkpoint"] if reset_checkpoint and restarts == 0 else []
        child = subprocess.Popen([sys.executable, "-m", "glue_job.local", *reset], cwd=PROJECT_ROOT)
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
