"""The supervised local job's bookkeeping, with a stub in place of the supervisor (no Spark, fast).

One supervisor per checkpoint, a stop that signals only our supervisor, durable state files, and
state files that cannot be read giving UNKNOWN with the way out instead of an exception.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.backends import local_job
from core.backends.job_status import job_status_from_document
from core.backends.local_job import LocalJob, supervise
from core.backends.processes import command_line, pid_alive, start_time
from core.config import Settings

STUB = ("sleep", "30")  # stands in for `python -m core.cli job supervise`


@pytest.fixture
def settings(clean_environ: Path) -> Settings:
    return Settings.from_env({"SIGNAL_HOME": str(clean_environ)})


@pytest.fixture
def spawned(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[subprocess.Popen[Any]]]:
    """Every process started through subprocess.Popen during the test; killed afterwards."""
    processes: list[subprocess.Popen[Any]] = []
    real_popen = subprocess.Popen

    class Recorded(real_popen):  # type: ignore[misc,valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            processes.append(self)

    monkeypatch.setattr(subprocess, "Popen", Recorded)
    yield processes
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait(5)


@pytest.fixture
def unrelated() -> Iterator[subprocess.Popen[bytes]]:
    """A live process that is not ours to signal."""
    process = subprocess.Popen(["sleep", "30"])
    # Popen can return before the child has exec'ed `sleep` (its command line is empty for a moment).
    deadline = time.monotonic() + 5
    while command_line(process.pid) != "sleep 30" and time.monotonic() < deadline:
        time.sleep(0.01)
    yield process
    process.kill()
    process.wait(5)


def test_concurrent_starts_start_one_supervisor(settings: Settings, spawned: list[subprocess.Popen[Any]]) -> None:
    jobs = [LocalJob(settings, supervisor_command=STUB) for _ in range(6)]  # six console sessions / CLI calls
    barrier = threading.Barrier(len(jobs))
    states: list[str] = []

    def start(job: LocalJob) -> None:
        barrier.wait()
        states.append(job.start().state)

    threads = [threading.Thread(target=start, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert len(spawned) == 1
    assert json.loads(jobs[0].pid_file.read_text())["pid"] == spawned[0].pid
    assert jobs[0]._pid() == spawned[0].pid
    assert states == ["STARTING"] * len(jobs)


def test_start_while_running_is_a_no_op_and_stop_ends_our_supervisor(
        settings: Settings, spawned: list[subprocess.Popen[Any]]) -> None:
    job = LocalJob(settings, supervisor_command=STUB)
    job.start()
    job.start()
    assert len(spawned) == 1
    record = json.loads(job.pid_file.read_text())
    assert record == {"pid": spawned[0].pid, "command": "sleep 30", "started": start_time(spawned[0].pid)}

    stopped = job.stop(timeout=5)
    assert spawned[0].wait(5) == -signal.SIGTERM
    assert (stopped.state, stopped.error) == ("STOPPED", None)
    assert not job.pid_file.exists()


def write_pid_file(job: LocalJob, content: str) -> None:
    job.run_folder.mkdir(parents=True, exist_ok=True)
    job.pid_file.write_text(content)


@pytest.mark.parametrize("content", [
    "{pid}",  # an older version's pid file: the pid alone, and it is not a supervisor
    '{{"pid": {pid}, "command": "python -m core.cli job supervise", "started": "1"}}',  # another command
    '{{"pid": {pid}, "command": "sleep 30", "started": "1"}}',  # same command, but started at another time
])
def test_stop_does_not_signal_a_process_a_stale_pid_file_names(
        settings: Settings, unrelated: subprocess.Popen[bytes], content: str) -> None:
    job = LocalJob(settings)
    write_pid_file(job, content.format(pid=unrelated.pid))
    assert job.status().state == "STOPPED"  # a reused pid is not our job running

    stopped = job.stop(timeout=1)

    time.sleep(0.1)
    assert unrelated.poll() is None and pid_alive(unrelated.pid)  # neither SIGTERM nor SIGKILL reached it
    assert stopped.state == "STOPPED"
    assert stopped.error is not None and "stale" in stopped.error and "signalled nothing" in stopped.error
    assert not job.pid_file.exists()


def test_stop_with_an_unreadable_pid_file_removes_it(settings: Settings) -> None:
    job = LocalJob(settings)
    write_pid_file(job, '{"pid": 12')
    stopped = job.stop(timeout=1)
    assert "unreadable" in (stopped.error or "") and not job.pid_file.exists()


def test_a_supervisor_records_its_identity_the_system_can_confirm(unrelated: subprocess.Popen[bytes]) -> None:
    assert command_line(unrelated.pid) == "sleep 30"
    assert start_time(unrelated.pid) == start_time(unrelated.pid) is not None
    assert command_line(2**22 + 12345) is None and start_time(2**22 + 12345) is None


def test_a_second_supervisor_on_the_same_home_exits_at_once(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_job(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("a second supervisor started a job")

    monkeypatch.setattr(subprocess, "Popen", no_job)
    run_folder = settings.home / "run"
    run_folder.mkdir(parents=True)
    with (run_folder / "supervisor.lock").open("a") as held:  # the first supervisor, alive
        fcntl.flock(held, fcntl.LOCK_EX)
        assert supervise(settings) == 1


class FinishedChild:
    """A `job run` child that ends at once with code 0."""

    def __init__(self, *_args: object, **_kwargs: object) -> None:
        self.pid = 0

    def wait(self) -> int:
        return 0

    def poll(self) -> int:
        return 0


def test_the_supervisor_and_its_pid_file_are_written_durably(
        settings: Settings, monkeypatch: pytest.MonkeyPatch, spawned: list[subprocess.Popen[Any]]) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def recording_fsync(descriptor: int) -> None:
        synced.append(os.fstat(descriptor).st_ino)
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    job = LocalJob(settings, supervisor_command=STUB)
    job.start()
    assert job.pid_file.stat().st_ino in synced and job.run_folder.stat().st_ino in synced

    monkeypatch.setattr(local_job.subprocess, "Popen", FinishedChild)
    monkeypatch.setattr(local_job.signal, "signal", lambda *_args: None)  # keep pytest's own handlers
    synced.clear()
    assert supervise(settings) == 0
    assert job.supervisor_file.stat().st_ino in synced and job.run_folder.stat().st_ino in synced
    assert json.loads(job.supervisor_file.read_text())["restarts"] == 0


# --- state files that cannot be read ----------------------------------------------------------------------


@pytest.mark.parametrize("content", [b'{"state": "RUNNING", "last_b', b"[1, 2]", b"\xff\xfe",
                                     b'{"state": "RUNNING", "totals": {"batches": "many"}}',
                                     b'{"state": "RUNNING", "last_batch": {"batch_id": 3}}'])
def test_an_unreadable_status_document_reads_as_unknown_with_the_way_out(settings: Settings, content: bytes) -> None:
    job = LocalJob(settings)
    job.status_file.parent.mkdir(parents=True)
    job.status_file.write_bytes(content)

    status = job.status()

    assert status.state == "UNKNOWN"
    assert str(job.status_file) in (status.error or "") and "job start" in (status.error or "")


@pytest.mark.parametrize("content", ['{"restarts": 2, "wait', '{"restarts": "two"}', "null"])
def test_an_unreadable_supervisor_file_reads_as_unknown_with_the_way_out(settings: Settings, content: str) -> None:
    job = LocalJob(settings)
    job.run_folder.mkdir(parents=True)
    job.supervisor_file.write_text(content)

    status = job.status()

    assert status.state == "UNKNOWN"
    assert str(job.supervisor_file) in (status.error or "") and "job stop" in (status.error or "")


def test_a_malformed_document_from_any_backend_reads_as_unknown() -> None:
    status = job_status_from_document("job", {"started_at": "yesterday"}, state="RUNNING", restarts=1)
    assert (status.state, status.restarts) == ("UNKNOWN", 1)
    assert "_job/status.json" in (status.error or "")
