"""Batches within the stream's limits, and retries that re-send only what failed."""

from __future__ import annotations

import json
from collections import Counter

from core.batching import Entry, EntryError, batches, encode, put_with_retries
from core.domain import MAX_BYTES_PER_PUT, MAX_BYTES_PER_RECORD, MAX_RECORDS_PER_PUT

MIB = 1024 * 1024
THROTTLED = EntryError("ProvisionedThroughputExceededException", "slow down", retryable=True)


def no_sleep(_seconds: float) -> None:
    return None


def entry(size: int, key: str = "k") -> Entry:
    """Return an entry whose size (data + partition key) is exactly `size` bytes."""
    return Entry(record={"key": key}, data=b"x" * (size - len(key)), partition_key=key)


def test_batches_never_exceed_500_records() -> None:
    entries = [entry(10, key=f"{i}") for i in range(1201)]
    result = list(batches(entries))
    assert [len(b) for b in result] == [500, 500, 201]
    assert [e for b in result for e in b] == entries  # all of them, in order


def test_batches_never_exceed_5_mib() -> None:
    entries = [entry(900 * 1024, key=f"k{i}") for i in range(30)]
    result = list(batches(entries))
    assert all(sum(e.size for e in b) <= MAX_BYTES_PER_PUT for b in result)
    assert [len(b) for b in result] == [5] * 6  # a sixth 900 KiB entry would pass 5 MiB
    assert [e for b in result for e in b] == entries


def test_batch_of_exactly_5_mib_is_one_batch() -> None:
    entries = [entry(MIB, key=f"k{i}") for i in range(6)]
    assert sum(e.size for e in entries[:5]) == MAX_BYTES_PER_PUT
    assert [len(b) for b in batches(entries)] == [5, 1]


def test_batches_of_mixed_sizes_stay_within_both_limits() -> None:
    sizes = [1, 700_000, 50, MIB, 3, 999_999, 400_000] * 10
    entries = [entry(max(size, 8), key=f"k{i}") for i, size in enumerate(sizes)]
    result = list(batches(entries))
    assert all(len(b) <= MAX_RECORDS_PER_PUT for b in result)
    assert all(sum(e.size for e in b) <= MAX_BYTES_PER_PUT for b in result)
    assert sum(len(b) for b in result) == len(entries)


def test_encode_is_compact_json_keyed_by_record_id() -> None:
    encoded = encode({"record_id": "r-1", "operator": "Telefónica"})
    assert encoded.data == '{"record_id":"r-1","operator":"Telefónica"}'.encode()
    assert encoded.partition_key == "r-1"
    assert encode({"a": 1}).partition_key == encode({"a": 1}).partition_key != encode({"a": 2}).partition_key


class FakeStream:
    """The injected `send` port: stores entries, failing chosen ones a set number of times."""

    def __init__(self, errors: dict[str, list[EntryError]] | None = None) -> None:
        self.errors = {key: list(queue) for key, queue in (errors or {}).items()}
        self.calls: list[list[str]] = []
        self.stored: list[str] = []

    def __call__(self, entries: list[Entry]) -> list[EntryError | None]:
        self.calls.append([e.partition_key for e in entries])
        results: list[EntryError | None] = []
        for e in entries:
            queue = self.errors.get(e.partition_key)
            if queue:
                results.append(queue.pop(0))
            else:
                self.stored.append(json.loads(e.data)["record_id"])
                results.append(None)
        return results


def records(n: int) -> list[dict[str, str]]:
    return [{"record_id": f"r{i}", "signal": "12"} for i in range(n)]


def test_only_failed_entries_are_re_sent() -> None:
    send = FakeStream({"r3": [THROTTLED], "r7": [THROTTLED, THROTTLED]})
    result = put_with_retries(records(10), send, sleep=no_sleep)
    assert send.calls == [[f"r{i}" for i in range(10)], ["r3", "r7"], ["r7"]]
    assert Counter(send.stored) == Counter(f"r{i}" for i in range(10))  # each stored exactly once
    assert result.sent == 10
    assert result.failed == ()
    assert (result.api_calls, result.retries) == (3, 3)


def test_retries_stay_within_their_batch() -> None:
    send = FakeStream({"r10": [THROTTLED], "r520": [THROTTLED]})
    result = put_with_retries(records(600), send, sleep=no_sleep)
    assert [len(c) for c in send.calls] == [500, 1, 100, 1]
    assert send.calls[1] == ["r10"] and send.calls[3] == ["r520"]
    assert sorted(send.stored) == sorted(f"r{i}" for i in range(600))
    assert result.sent == 600


def test_non_retryable_error_is_reported_with_its_code_and_not_re_sent() -> None:
    invalid = EntryError("ValidationException", "bad record", retryable=False)
    send = FakeStream({"r1": [invalid]})
    result = put_with_retries(records(3), send, sleep=no_sleep)
    assert len(send.calls) == 1
    assert result.sent == 2
    assert [(f.record["record_id"], f.error_code, f.message) for f in result.failed] == [
        ("r1", "ValidationException", "bad record")]


def test_retryable_error_gives_up_after_max_attempts() -> None:
    send = FakeStream({"r0": [THROTTLED] * 10})
    delays: list[float] = []
    result = put_with_retries(records(2), send, max_attempts=4, base_delay=0.1, max_delay=0.25,
                              sleep=delays.append)
    assert send.calls == [["r0", "r1"], ["r0"], ["r0"], ["r0"]]
    assert result.sent == 1
    assert [(f.record["record_id"], f.error_code) for f in result.failed] == [
        ("r0", "ProvisionedThroughputExceededException")]
    assert len(delays) == 3
    assert all(0 <= d <= cap for d, cap in zip(delays, [0.1, 0.2, 0.25], strict=True))


def test_record_over_1_mib_is_refused_without_sending() -> None:
    send = FakeStream()
    big = {"record_id": "big", "description": "x" * MAX_BYTES_PER_RECORD}
    result = put_with_retries([big], send, sleep=no_sleep)
    assert send.calls == []
    assert result.sent == 0
    assert [(f.record["record_id"], f.error_code) for f in result.failed] == [("big", "RecordTooLarge")]


def test_record_over_1_mib_does_not_stop_the_others() -> None:
    send = FakeStream()
    big = {"record_id": "big", "description": "x" * MAX_BYTES_PER_RECORD}
    result = put_with_retries([*records(2), big], send, sleep=no_sleep)
    assert send.calls == [["r0", "r1"]]
    assert result.sent == 2
    assert [f.error_code for f in result.failed] == ["RecordTooLarge"]


# --- the bytes: what Python's json module writes, compact and UTF-8 -----------------------------------

# Values whose JSON needs every kind of care: non-ASCII, quotes, backslashes, control characters,
# JSON's own escapes, % and braces (format syntax), empty, and numbers that are text here.
MESSY_VALUES = [
    "", " ", "plain", "Telefónica ñ 日本 😀", 'say "hi"', "back\\slash", "\\\"", "tab\there", "new\nline",
    "cr\rlf", "\x00\x01\x08\x0c\x1f", "\x7f\x85\u2028\u2029", "%s %d %% %(x)s", "{0} {{}}", "1e7", "  12 ",
    "nan", "inf", "-0", "+.5", "28047.0", "</script>", "\ufeffbom",
]


def messy_records(count: int) -> list[dict[str, str]]:
    keys = ["hour", "lat", "100%", 'quo"te', "é"]
    return [{key: MESSY_VALUES[(i * 7 + j) % len(MESSY_VALUES)] for j, key in enumerate(keys)}
            | {"record_id": f"r:{i}"} for i in range(count)]


def test_encode_writes_the_bytes_of_the_json_module() -> None:
    for record in [*messy_records(len(MESSY_VALUES)), {}, {"n": 1, "x": None, "ok": True, "f": 0.5}]:
        assert encode(record).data == json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()


def test_failures_report_the_records_as_they_were_put() -> None:
    sent = [*records(3), {"record_id": "big", "description": "x" * MAX_BYTES_PER_RECORD}]
    send = FakeStream({"r1": [EntryError("ValidationException", "bad record", retryable=False)]})
    result = put_with_retries(sent, send, sleep=no_sleep)
    assert send.calls == [["r0", "r1", "r2"]]
    assert result.sent == 2
    assert [(f.record, f.error_code) for f in result.failed] == [
        (sent[3], "RecordTooLarge"), (sent[1], "ValidationException")]


def test_a_put_of_one_batch_is_one_batch_of_the_same_entries() -> None:
    entries = [entry(100, key=f"k{i}") for i in range(MAX_RECORDS_PER_PUT)]
    assert list(batches(entries)) == [entries]
    assert list(batches([])) == []
    at_the_limit = [entry(MIB, key=f"k{i}") for i in range(5)]
    assert list(batches(at_the_limit)) == [at_the_limit]


def test_partition_keys_count_their_utf8_bytes_not_their_characters() -> None:
    key = "é" * 256  # 256 characters, 512 bytes
    entries = [Entry(record={"i": i}, data=b"x" * (MIB - 300), partition_key=key) for i in range(5)]
    # Each is 1 MiB + 212 bytes: five pass 5 MiB, though by characters (1 MiB - 44 each) they would not.
    assert [len(b) for b in batches(entries)] == [4, 1]
    fits = [Entry(record={"i": i}, data=b"x" * (MIB - 512), partition_key=key) for i in range(5)]
    assert list(batches(fits)) == [fits]  # exactly 5 MiB: one request
