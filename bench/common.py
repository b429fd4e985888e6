"""Shared helpers for the benchmarks: machine facts, run statistics, RSS sampling, recording a run."""

from __future__ import annotations

import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Self


def machine() -> dict[str, Any]:
    """Return the facts a reader needs to compare runs: cores, memory, CPU, Python."""
    memory_kib = 0
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            memory_kib = int(next(line for line in meminfo if line.startswith("MemTotal")).split()[1])
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), cpu)
    except (OSError, StopIteration):
        pass
    return {"cores": os.cpu_count(), "memory_gib": round(memory_kib / 1024 / 1024, 1), "cpu": cpu,
            "python": platform.python_version(), "system": platform.platform()}


def stats(values: Sequence[float]) -> dict[str, float]:
    """Return median, min and max of several runs (these machines are noisy: report medians)."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": len(values)}


def _tree_pids(root: int) -> tuple[list[int], dict[int, int]]:
    """Return the pids of root and all its descendants, and each one's VmRSS in KiB."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status", encoding="ascii", errors="replace") as status:
                fields = dict(line.split(":", 1) for line in status if ":" in line)
        except OSError:
            continue
        pid = int(entry)
        children.setdefault(int(fields.get("PPid", "0").strip() or 0), []).append(pid)
        rss[pid] = int(fields.get("VmRSS", "0 kB").split()[0]) if "VmRSS" in fields else 0
    tree, stack = [], [root]
    while stack:
        pid = stack.pop()
        tree.append(pid)
        stack.extend(children.get(pid, []))
    return tree, rss


def _tree_rss_kib(root: int) -> int:
    tree, rss = _tree_pids(root)
    return sum(_proportional_kib(pid, rss.get(pid, 0)) for pid in tree)


def _proportional_kib(pid: int, rss_kib: int) -> int:
    # PSS splits each shared page among the processes that map it, so a tree's sum counts every page
    # once: a JVM child between fork and exec (Hadoop's shell helpers) shares the JVM's whole RSS,
    # and summing VmRSS counted the JVM twice whenever a sample caught one.
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii", errors="replace") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return rss_kib


class _Sampler:
    """Call `_sample` every `interval` seconds, on a thread of its own, for the length of a `with`."""

    def __init__(self, pid: int, interval: float) -> None:
        self.pid, self.interval = pid, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


class PeakRss(_Sampler):
    """Sample the resident memory (PSS where the kernel has it, else RSS) of a process and all its
    children (Python + JVM) until stopped."""

    # Once a second: reading a 2 GiB JVM's PSS makes the kernel walk its page tables (about 20 ms of
    # CPU, holding the JVM's memory-map lock), so sampling five times a second slowed the runs measured.
    def __init__(self, pid: int, interval: float = 1.0) -> None:
        super().__init__(pid, interval)
        self.peak_kib = 0

    def _sample(self) -> None:
        self.peak_kib = max(self.peak_kib, _tree_rss_kib(self.pid))

    @property
    def peak_mib(self) -> float:
        """Return the peak in MiB."""
        return round(self.peak_kib / 1024, 1)


# A JVM's threads by name prefix (Linux keeps the first 15 characters), first match wins.
SPARK_TASKS = "Spark tasks"
JVM_THREAD_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("JIT compilers", ("C1 CompilerThre", "C2 CompilerThre")),
    ("garbage collector", ("GC Thread", "G1 ")),
    (SPARK_TASKS, ("Executor task l",)),
)
OTHER_JVM_THREADS = "other JVM threads (query driver, scheduler, start-up)"


def _thread_group(process: str, thread: str) -> str:
    if process != "java":
        return f"{process} processes"
    return next((group for group, prefixes in JVM_THREAD_GROUPS if thread.startswith(prefixes)), OTHER_JVM_THREADS)


class ThreadCpu(_Sampler):
    """Sample the CPU seconds of every thread of a process and its children, until stopped.

    Java Flight Recorder samples only Java code, so it cannot see the JIT compilers and the garbage
    collector, which are native threads; their CPU time is in /proc. A thread's last sample counts,
    so up to one interval of a thread that ends is missed.
    """

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        super().__init__(pid, interval)
        self._seconds: dict[tuple[int, int], tuple[str, float]] = {}
        self._ticks = os.sysconf("SC_CLK_TCK")

    def _sample(self) -> None:
        for pid in _tree_pids(self.pid)[0]:
            try:
                with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as comm:
                    process = comm.read().strip()
                tasks = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue
            for task in tasks:
                try:
                    with open(f"/proc/{pid}/task/{task}/stat", encoding="utf-8", errors="replace") as stat:
                        text = stat.read()
                except OSError:
                    continue
                name = text[text.index("(") + 1:text.rindex(")")]
                fields = text[text.rindex(")") + 2:].split()
                seconds = (int(fields[11]) + int(fields[12])) / self._ticks  # utime + stime
                self._seconds[(pid, int(task))] = (_thread_group(process, name), seconds)

    def by_group(self) -> dict[str, float]:
        """Return CPU seconds per thread group, largest first."""
        totals: dict[str, float] = {}
        for group, seconds in self._seconds.values():
            totals[group] = totals.get(group, 0.0) + seconds
        ranked = sorted(totals.items(), key=lambda kv: -kv[1])
        return {group: round(seconds, 1) for group, seconds in ranked if seconds >= 0.05}  # not the shell helpers


def record(name: str, figures: dict[str, Any], *, notes: Iterable[str] = (), command: str | None = None) -> None:
    """Print the run as JSON, append it to bench/history.jsonl and regenerate bench/RESULTS.md from the history."""
    from bench import summary

    command = command or "python -m bench." + name + " " + " ".join(sys.argv[1:])
    document: dict[str, Any] = {
        "benchmark": name, "when": datetime.now(UTC).isoformat(timespec="seconds"), "command": command.strip(),
        "machine": machine(), "figures": figures, "notes": list(notes),
    }
    document["targets"] = summary.target_rows(name, figures)
    print(json.dumps(document, indent=1, default=str))
    with summary.HISTORY.open("a", encoding="utf-8") as history:
        history.write(json.dumps(document, default=str) + "\n")
    summary.write_results()


def timed(function: Any, *args: Any, **kwargs: Any) -> tuple[float, Any]:
    """Return (seconds, result) of one call."""
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - started, result


# --- a console server started by a benchmark ----------------------------------------------------

def free_port() -> int:
    """Return a free TCP port on the loopback interface."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_healthy(base_url: str, server: subprocess.Popen[bytes], timeout: float = 90.0,
                 log_tail: Callable[[], str] = str) -> None:
    """Wait until Streamlit answers its health check; a failure carries `log_tail()`, the server's last output."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"streamlit exited with {server.returncode}:\n{log_tail()}")
        try:
            with urllib.request.urlopen(f"{base_url}/_stcore/health", timeout=2) as response:
                if response.read().decode().strip() == "ok":
                    return
        except OSError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"streamlit did not answer {base_url}/_stcore/health within {timeout:.0f} s:\n{log_tail()}")


def stop_group(process: subprocess.Popen[bytes], grace: float = 30.0) -> None:
    """Stop a process a benchmark started in a session of its own (only what it started): SIGTERM its
    group, SIGKILL after `grace` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        if process.poll() is not None:
            return
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue
