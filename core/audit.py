"""Append-only audit log of operator actions: who did what to which target, when, and the outcome.

Locally a JSON-lines file under $SIGNAL_HOME/audit/; every write appends one whole line under an
exclusive lock, so concurrent console sessions never interleave entries.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections import deque
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

Outcome = Literal["ok", "refused", "failed"]


@dataclass(frozen=True)
class AuditEntry:
    """One operator action as it was attempted."""

    time: datetime
    user: str
    role: str
    action: str
    target: str
    outcome: Outcome
    reason: str = ""


class FileAuditLog:
    """The audit log as an append-only JSON-lines file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, entry: AuditEntry) -> None:
        """Append one entry; it is on disk when this returns."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({**asdict(entry), "time": entry.time.astimezone(UTC).isoformat()}) + "\n"
        with self.path.open("a", encoding="utf-8") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())

    def recent(self, limit: int = 200) -> list[AuditEntry]:
        """Return the newest entries first, at most `limit`."""
        try:
            with self.path.open(encoding="utf-8") as handle:
                lines = deque(handle, maxlen=limit)
        except FileNotFoundError:
            return []
        entries = []
        for line in reversed(lines):
            data = json.loads(line)
            data["time"] = datetime.fromisoformat(data["time"])
            entries.append(AuditEntry(**data))
        return entries
