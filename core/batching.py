"""Putting records on a stream: encoding, batches within the stream's limits, and retries.

Shared by every Stream implementation so the local stream obeys Kinesis' limits and retry rules.
A producer of many records of one layout (replay) can encode them ahead with a RecordTemplate and
put them as EncodedRecords: the same bytes as encode(), without a dict per record.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from json.encoder import encode_basestring
from operator import itemgetter
from typing import Any, NamedTuple, overload

from core.domain import MAX_BYTES_PER_PUT, MAX_BYTES_PER_RECORD, MAX_RECORDS_PER_PUT, FailedRecord, PutResult

# One encoder for every record: json.dumps with non-default options builds a new encoder per call.
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


class Entry(NamedTuple):
    """One record ready to send: its JSON bytes and partition key."""

    record: Mapping[str, Any] | None  # None when the bytes are all there is (EncodedRecords)
    data: bytes
    partition_key: str

    @property
    def size(self) -> int:
        """Return the bytes this entry counts against the request limit."""
        return len(self.data) + len(self.partition_key.encode())

    def as_record(self) -> Mapping[str, Any]:
        """Return the record this entry was made from (decoded from its bytes when it was not kept)."""
        return self.record if self.record is not None else json.loads(self.data)


@dataclass(frozen=True)
class EntryError:
    """Why the stream refused one entry of a batch."""

    code: str
    message: str
    retryable: bool = True


def escape_json_text(text: str) -> str:
    """Return text escaped as it is inside a JSON string of encode() (no quotes around it)."""
    # encode_basestring is the C function behind JSONEncoder(ensure_ascii=False) for a str.
    return encode_basestring(text)[1:-1]


class RecordTemplate:
    """The compact JSON of records with the same string fields in the same order, by `%` formatting.

    Gives the bytes encode() gives for a dict of those keys and values, provided each value was
    escaped with escape_json_text() (or needs no escaping): formatting instead of walking a dict.
    """

    def __init__(self, keys: Sequence[str]) -> None:
        openings = [("{" if index == 0 else '",') + encode_basestring(key) + ':"' for index, key in enumerate(keys)]
        closing = '"}' if keys else "{}"
        # A % in a key would be read as a conversion: doubled, it stays literal.
        self._format = "%s".join(part.replace("%", "%%") for part in (*openings, closing))
        self.keys = tuple(keys)

    def render(self, escaped_values: Sequence[str]) -> str:
        """Return one record's JSON text from its escaped values, in the template's key order."""
        return self._format % tuple(escaped_values)

    def encode_many(self, escaped_values: Sequence[str], count: int) -> list[bytes]:
        """Return the UTF-8 JSON of `count` records from their escaped values, one record after another."""
        if len(escaped_values) != count * len(self.keys):
            raise ValueError(f"{len(escaped_values)} values for {count} records of {len(self.keys)} fields")
        if count == 0:
            return []
        # Escaped, no value holds a raw newline, so the records of one format over all of them
        # split at the newlines between them: one format call per batch instead of one per record.
        records = ("\n".join([self._format] * count) % tuple(escaped_values)).encode().split(b"\n")
        if len(records) != count:
            raise ValueError("a value holds a raw newline: values must be escaped with escape_json_text()")
        return records


class EncodedRecords(Sequence[Mapping[str, Any]]):
    """Records already encoded (the bytes encode() gives), with their partition keys.

    put_with_retries sends the bytes as they are, so a producer of many records builds no dict per
    record; a record is decoded to a mapping only when someone reads it (a failure report).
    """

    def __init__(self, data: Sequence[bytes], partition_keys: Sequence[str]) -> None:
        if len(data) != len(partition_keys):
            raise ValueError(f"{len(data)} records but {len(partition_keys)} partition keys")
        self.data = data
        self.partition_keys = partition_keys

    def __len__(self) -> int:
        return len(self.data)

    @overload
    def __getitem__(self, index: int) -> Mapping[str, Any]: ...

    @overload
    def __getitem__(self, index: slice) -> EncodedRecords: ...

    def __getitem__(self, index: int | slice) -> Mapping[str, Any] | EncodedRecords:
        if isinstance(index, slice):
            return EncodedRecords(self.data[index], self.partition_keys[index])
        record: dict[str, Any] = json.loads(self.data[index])
        return record

    def entries(self) -> list[Entry]:
        """Return the entries to send, partition keys cut to the stream's 256 characters."""
        keys = [key[:256] for key in self.partition_keys]
        # The same tuples as Entry(None, data, key), built in C: Entry(...) is a Python call per record.
        return list(map(tuple.__new__, repeat(Entry), zip(repeat(None, len(keys)), self.data, keys, strict=True)))


def encode(record: Mapping[str, Any]) -> Entry:
    """Return the entry for a record: compact UTF-8 JSON, keyed by record_id when it has one."""
    data = _COMPACT_JSON.encode(record).encode()
    key = str(record.get("record_id") or hashlib.md5(data, usedforsecurity=False).hexdigest())
    return Entry(record=record, data=data, partition_key=key[:256])


def _request_bytes(entries: Sequence[Entry]) -> int:
    """Return the sum of the entries' sizes (Entry.size), summed without a Python call per entry."""
    data_bytes = sum(map(len, map(itemgetter(1), entries)))
    return data_bytes + sum(map(len, map(str.encode, map(itemgetter(2), entries))))


def batches(entries: Sequence[Entry], max_records: int = MAX_RECORDS_PER_PUT,
            max_bytes: int = MAX_BYTES_PER_PUT) -> Iterator[list[Entry]]:
    """Yield consecutive batches of at most max_records entries and max_bytes bytes."""
    if len(entries) <= max_records and _request_bytes(entries) <= max_bytes:
        # The usual put, one batch's worth or less: no need to weigh the entries one by one.
        if entries:
            yield list(entries)
        return
    batch: list[Entry] = []
    size = 0
    for entry in entries:
        entry_size = entry.size
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
    encoded = records.entries() if isinstance(records, EncodedRecords) else list(map(encode, records))
    failed = [FailedRecord(entry.as_record(), "RecordTooLarge", f"{len(entry.data)} bytes > 1 MiB")
              for entry in encoded if len(entry.data) > MAX_BYTES_PER_RECORD]
    entries = [entry for entry in encoded if len(entry.data) <= MAX_BYTES_PER_RECORD] if failed else encoded
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
                    failed.append(FailedRecord(entry.as_record(), error.code, error.message))
            if not retry:
                break
            retries += len(retry)
            pending = retry
            delay = min(max_delay, base_delay * 2 ** (attempt - 1))
            sleep(random.uniform(0, delay))  # full jitter: retries from many producers spread out
    return PutResult(sent=sent, failed=tuple(failed), api_calls=api_calls, retries=retries)
