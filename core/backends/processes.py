"""Local processes (a job's supervisor, a crawler's owner): whether one runs, and which process it is.

A pid alone names a process only while it runs: once it exits the system hands the number to another
process. So what we signal is identified by its command line and start time, read from /proc (Linux)
or from `ps` (macOS), and compared with what was recorded when we started it.
"""

from __future__ import annotations

import os
import subprocess


def pid_alive(pid: int) -> bool:
    """Return True while the process runs (a zombie does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours is not running
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return True


def _ps(pid: int, field: str) -> str | None:
    try:
        result = subprocess.run(["ps", "-o", f"{field}=", "-p", str(pid)], capture_output=True, text=True,
                                timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    value = result.stdout.strip()
    return value if result.returncode == 0 and value else None


def command_line(pid: int) -> str | None:
    """Return the process's arguments joined by spaces, or None when it does not run (or is a zombie)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            raw = cmdline.read()
    except FileNotFoundError:
        if os.path.isdir("/proc/self"):
            return None  # /proc works: the process is gone
        return _ps(pid, "args")
    except OSError:
        return None
    # A zombie's cmdline is empty; arguments are NUL-terminated.
    return " ".join(os.fsdecode(part) for part in raw.rstrip(b"\0").split(b"\0")) if raw else None


def start_time(pid: int) -> str | None:
    """Return when the process started, as the system reports it (opaque, comparable), or None."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            fields = stat.read().rsplit(") ", 1)[1].split()
    except FileNotFoundError:
        if os.path.isdir("/proc/self"):
            return None
        return _ps(pid, "lstart")
    except (OSError, IndexError):
        return None
    # Field 22 of stat, counted after the command name (field 2, which may hold spaces): clock ticks since boot.
    return fields[19] if len(fields) > 19 else None
