"""Shared helpers for the benchmarks: machine facts, run statistics, RSS sampling, RESULTS.md sections."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


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


def _tree_rss_kib(root: int) -> int:
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
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += _proportional_kib(pid, rss.get(pid, 0))
        stack.extend(children.get(pid, []))
    return total


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


class PeakRss:
    """Sample the resident memory (PSS where the kernel has it, else RSS) of a process and all its
    children (Python + JVM) until stopped."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid, self.interval, self.peak_kib = pid, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kib = max(self.peak_kib, _tree_rss_kib(self.pid))
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_mib(self) -> float:
        """Return the peak in MiB."""
        return round(self.peak_kib / 1024, 1)


def record(name: str, figures: dict[str, Any], *, notes: Iterable[str] = (), command: str | None = None) -> None:
    """Print the figures as JSON and append a dated section to bench/RESULTS.md."""
    command = command or "python -m bench." + name + " " + " ".join(sys.argv[1:])
    document: dict[str, Any] = {
        "benchmark": name, "when": datetime.now(UTC).isoformat(timespec="seconds"), "command": command,
        "machine": machine(), "figures": figures, "notes": list(notes),
    }
    print(json.dumps(document, indent=1, default=str))
    lines = [
        f"## {name}: {document['when']}",
        "",
        f"Command: `{command}`  ",
        f"Machine: {document['machine']['cores']} cores, {document['machine']['memory_gib']} GiB, "
        f"{document['machine']['cpu']}, Python {document['machine']['python']}",
        "",
        "```json",
        json.dumps(figures, indent=1, default=str),
        "```",
        "",
    ]
    lines += [f"- {note}" for note in document["notes"]]
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmark results\n\nAppended by `make bench` (each script adds a dated section).\n\n")
    with RESULTS.open("a", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n\n")


def timed(function: Any, *args: Any, **kwargs: Any) -> tuple[float, Any]:
    """Return (seconds, result) of one call."""
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - started, result
