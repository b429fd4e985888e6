"""Append-only audit log of operator actions: who did what to which target, when, and the outcome.

Every action is written twice: `requested` before it runs (core.auth.perform refuses an action whose
request cannot be written), then `succeeded` or `failed`; a role refusal is one `refused` entry.

Locally a JSON-lines file under $SIGNAL_HOME/audit/; every write appends one whole line under an
exclusive lock, so concurrent console sessions never interleave entries. A line torn by a crash
mid-write is skipped and counted when read, never fatal to the reader.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections import deque
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, get_args

Outcome = Literal["requested", "succeeded", "failed", "refused"]
OUTCOMES: tuple[str, ...] = get_args(Outcome)
# Entries written before the request/outcome split recorded a successful action as "ok".
_LEGACY_OUTCOMES = {"ok": "succeeded"}


@dataclass(frozen=True)
class AuditEntry:
    """One step of an operator action: requested, then succeeded or failed; or refused."""

    time: datetime
    user: str
    role: str
    action: str
    target: str
    outcome: Outcome
    reason: str = ""


class AuditEntries(list[AuditEntry]):
    """Entries newest first, and how many stored entries were unreadable (torn or invalid) and skipped."""

    def __init__(self, entries: Iterable[AuditEntry] = (), skipped: int = 0) -> None:
        super().__init__(entries)
        self.skipped = skipped


_FIELDS = {f.name for f in fields(AuditEntry)}
_REQUIRED = _FIELDS - {"reason"}


def entry_to_json(entry: AuditEntry) -> str:
    """Return one entry as a JSON object (time in UTC, ISO-8601)."""
    return json.dumps({**asdict(entry), "time": entry.time.astimezone(UTC).isoformat()})


def entry_from_json(raw: str | bytes) -> AuditEntry:
    """Return the entry stored as `raw`; ValueError when it is not a whole, valid entry."""
    data: Any = json.loads(raw)
    if not isinstance(data, dict) or not _REQUIRED <= set(data) <= _FIELDS:
        raise ValueError("not an audit entry object")
    if not all(isinstance(data[name], str) for name in data):
        raise ValueError("an audit entry field is not text")
    outcome = _LEGACY_OUTCOMES.get(data["outcome"], data["outcome"])
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown outcome {data['outcome']!r}")
    time = datetime.fromisoformat(data["time"])
    if time.tzinfo is None:
        raise ValueError("audit entry time has no zone")
    return AuditEntry(**{**data, "time": time, "outcome": outcome})


class FileAuditLog:
    """The audit log as an append-only JSON-lines file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, entry: AuditEntry) -> None:
        """Append one entry; it is on disk when this returns (any OSError is raised to the caller)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = (entry_to_json(entry) + "\n").encode("utf-8")
        # a+ (read and append): the last byte is read under the lock; writes always go to the end.
        with self.path.open("a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            size = os.fstat(handle.fileno()).st_size
            if size and os.pread(handle.fileno(), 1, size - 1) != b"\n":
                # A crash tore the last line: end it, so this entry is a whole line of its own.
                line = b"\n" + line
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())

    def recent(self, limit: int = 200) -> AuditEntries:
        """Return the entries of the newest `limit` lines, newest first; unreadable lines are counted."""
        if limit <= 0:
            return AuditEntries()
        try:
            with self.path.open("rb") as handle:
                lines = deque(handle, maxlen=limit)
        except FileNotFoundError:
            return AuditEntries()
        entries: list[AuditEntry] = []
        skipped = 0
        for line in reversed(lines):
            if not line.strip():
                continue
            try:
                entries.append(entry_from_json(line))
            except (ValueError, TypeError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
                skipped += 1
        return AuditEntries(entries, skipped)
