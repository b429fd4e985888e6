"""Putting records on a stream: encoding, batches within the stream's limits, and retries.

Shared by every Stream implementation so the local stream obeys Kinesis' limits and retry rules.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import msgspec

from core.domain import MAX_BYTES_PER_PUT, MAX_BYTES_PER_RECORD, MAX_RECORDS_PER_PUT, FailedRecord, PutResult

# Compact UTF-8 JSON, keys in the record's order: what json.dumps(separators=(",", ":"), ensure_ascii=False)
# writes, at a fraction of its cost per record.
JSON = msgspec.json.Encoder()


class Entry(NamedTuple):
    """One record ready to send: its JSON bytes and partition key."""

    record: Mapping[str, Any]
    data: bytes
    partition_key: str

    @property
    def size(self) -> int:
        """Return the bytes this entry counts against the request limit."""
        return len(self.data) + len(self.partition_key.encode())


@dataclass(frozen=True)
class EntryError:
    """Why the stream refused one entry of a batch."""

    code: str
    message: str
    retryable: bool = True


def encode(record: Mapping[str, Any]) -> Entry:
    """Return the entry for a record: compact UTF-8 JSON, keyed by record_id when it has one."""
    return encode_all([record])[0]


def encode_all(records: Sequence[Mapping[str, Any]]) -> list[Entry]:
    """Return the entries for records (see encode), encoded in one call."""
    data = JSON.encode_lines(records).split(b"\n")[:-1]  # JSON holds no raw line break: a line is a record
    keys = [str(record.get("record_id") or hashlib.md5(blob, usedforsecurity=False).hexdigest())[:256]
            for record, blob in zip(records, data, strict=True)]
    return list(map(Entry._make, zip(records, data, keys, strict=True)))


def batches(entries: Sequence[Entry], max_records: int = MAX_RECORDS_PER_PUT,
            max_bytes: int = MAX_BYTES_PER_PUT) -> Iterator[list[Entry]]:
    """Yield consecutive batches of at most max_records entries and max_bytes bytes."""
    # Most puts fit one request (a replay's 500 records of a few hundred bytes): no need to size each entry.
    # A key's UTF-8 bytes are at most 4 per character, so this bound never lets an oversized batch through.
    if len(entries) <= max_records and sum(len(e.data) + 4 * len(e.partition_key) for e in entries) <= max_bytes:
        if entries:
            yield list(entries)
        return
    batch: list[Entry] = []
    size = 0
    for entry in entries:
        entry_size = len(entry.data) + len(entry.partition_key.encode())  # Entry.size, without a call per entry
        if batch and (len(batch) >= max_records or size + entry_size > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(entry)
        size += entry_size
    if batch:
        yield batch


def put_with_retries(
    records: Sequence[Mapping[str, Any]],
    send: Callable[[list[Entry]], list[EntryError | None]],
    *,
    max_attempts: int = 5,
    base_delay: float = 0.1,
    max_delay: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
) -> PutResult:
    """Send records in batches; re-send only the entries that failed, with exponential backoff and jitter.

    `send` returns one result per entry, in order: None when stored, an EntryError otherwise.
    """
    entries = encode_all(records)
    failed = [FailedRecord(entry.record, "RecordTooLarge", f"{len(entry.data)} bytes > 1 MiB")
              for entry in entries if len(entry.data) > MAX_BYTES_PER_RECORD]
    if failed:
        entries = [entry for entry in entries if len(entry.data) <= MAX_BYTES_PER_RECORD]
    sent = api_calls = retries = 0
    for batch in batches(entries):
        pending = batch
        for attempt in range(1, max_attempts + 1):
            results = send(pending)
            api_calls += 1
            retry: list[Entry] = []
            for entry, error in zip(pending, results, strict=True):
                if error is None:
                    sent += 1
                elif error.retryable and attempt < max_attempts:
                    retry.append(entry)
                else:
                    failed.append(FailedRecord(entry.record, error.code, error.message))
            if not retry:
                break
            retries += len(retry)
            pending = retry
            delay = min(max_delay, base_delay * 2 ** (attempt - 1))
            sleep(random.uniform(0, delay))  # full jitter: retries from many producers spread out
    return PutResult(sent=sent, failed=tuple(failed), api_calls=api_calls, retries=retries)
