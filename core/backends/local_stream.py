"""The local stream: JSON-lines files in $SIGNAL_HOME/stream/<stream>/, one file per put batch.

Each line is an envelope like a Kinesis record: the producer's bytes (`data`), a sequence id
(`seq`, file + line) and the arrival time. Files appear whole (temp file + rename), so the job never
reads half a batch; the job deletes the files it has processed. Each file is on disk before
put_records reports it sent (core/durable.py): the producer forgets what it sent.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from core.batching import JSON, Entry, EntryError, put_with_retries
from core.domain import PutResult, StreamHealth
from core.durable import write_bytes_atomically

LAST_PUT_MARKER = ".last_put"


class Envelope(msgspec.Struct):
    """One line of a stream file: what Kinesis adds to the producer's bytes (glue_job/local.py reads it)."""

    seq: str
    arrival: str
    data: str


def _file_time(name: str) -> datetime | None:
    try:
        return datetime.strptime(name[:21], "%Y%m%dT%H%M%S%f").replace(tzinfo=UTC)
    except ValueError:
        return None


class LocalStream:
    """A stream of JSON-lines files in a folder."""

    def __init__(self, folder: Path, name: str) -> None:
        self.folder = folder
        self.name = name

    def _write_batch(self, entries: list[Entry]) -> list[EntryError | None]:
        now = datetime.now(UTC)
        stem = f"{now:%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}-n{len(entries)}"
        arrival = now.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        lines = JSON.encode_lines([Envelope(f"{stem}:{i}", arrival, e.data.decode()) for i, e in enumerate(entries)])
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            write_bytes_atomically(self.folder / f"{stem}.jsonl", lines)  # a failed write leaves no temporary
            # Its time is the last put: rewriting a file's content costs a flush per batch on ext4.
            (self.folder / LAST_PUT_MARKER).touch()
        except OSError as error:
            failure = EntryError("LocalWriteFailed", f"{self.folder}: {error.strerror or error}")
            return [failure] * len(entries)
        return [None] * len(entries)

    def put_records(self, records: Sequence[Mapping[str, Any]]) -> PutResult:
        """Append records in batches of at most 500 records / 5 MiB, retrying failed writes."""
        return put_with_retries(records, self._write_batch)

    def health(self) -> StreamHealth:
        """Return the pending (not yet processed) records and the time of the last put."""
        if not self.folder.is_dir():
            return StreamHealth(self.name, exists=False, pending_records=0, detail="no record sent yet")
        pending = 0
        oldest: datetime | None = None
        for entry in os.scandir(self.folder):
            if entry.name.startswith(".") or not entry.name.endswith(".jsonl"):
                continue
            count = entry.name.rsplit("-n", 1)[-1].removesuffix(".jsonl")
            pending += int(count) if count.isdigit() else 0
            sent_at = _file_time(entry.name)
            if sent_at and (oldest is None or sent_at < oldest):
                oldest = sent_at
        last_put: datetime | None = None
        try:
            last_put = datetime.fromtimestamp((self.folder / LAST_PUT_MARKER).stat().st_mtime, UTC)
        except OSError:
            last_put = None
        return StreamHealth(self.name, exists=True, pending_records=pending, oldest_pending_at=oldest,
                            last_record_at=last_put)
