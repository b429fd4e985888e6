"""The server-side role check and the fail-closed audit log behind every operator action."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.audit import AuditEntry, FileAuditLog
from core.auth import OPERATOR, VIEWER, User, perform
from core.errors import ConflictError, PermissionDeniedError


def steps(audit: FileAuditLog) -> list[tuple[str, str]]:
    """Return (outcome, reason) of every entry, oldest first."""
    return [(e.outcome, e.reason) for e in reversed(audit.recent(limit=1000))]


class BrokenAuditLog:
    """An audit log whose storage fails from the `fail_from`-th write on (a full disk, a denied bucket)."""

    def __init__(self, fail_from: int = 0) -> None:
        self.entries: list[AuditEntry] = []
        self.fail_from = fail_from

    def append(self, entry: AuditEntry) -> None:
        if len(self.entries) >= self.fail_from:
            raise OSError(28, "No space left on device")
        self.entries.append(entry)


def test_operator_action_is_audited_as_requested_then_succeeded(tmp_path: Path) -> None:
    audit = FileAuditLog(tmp_path / "audit.jsonl")
    result = perform(User("ana@example.com", OPERATOR), "start_crawler", "crawler_status_count", lambda: 42, audit)
    assert result == 42
    succeeded, requested = audit.recent()
    assert (requested.user, requested.role, requested.action, requested.target, requested.outcome) == (
        "ana@example.com", OPERATOR, "start_crawler", "crawler_status_count", "requested")
    assert (succeeded.action, succeeded.target, succeeded.outcome) == (
        "start_crawler", "crawler_status_count", "succeeded")
    assert requested.time <= succeeded.time


def test_the_request_is_on_disk_before_the_action_runs(tmp_path: Path) -> None:
    audit = FileAuditLog(tmp_path / "audit.jsonl")
    seen: list[list[tuple[str, str]]] = []
    perform(User("ana", OPERATOR), "stop_job", "etl", lambda: seen.append(steps(audit)), audit, detail="why")
    assert seen == [[("requested", "why")]]
    assert steps(audit) == [("requested", "why"), ("succeeded", "")]


def test_describe_puts_the_result_in_the_succeeded_entry(tmp_path: Path) -> None:
    audit = FileAuditLog(tmp_path / "audit.jsonl")
    perform(User("ana", OPERATOR), "upload_csv", "a.csv", lambda: 12, audit, detail="300 bytes",
            describe=lambda rows: f"300 bytes, {rows} rows")
    assert steps(audit) == [("requested", "300 bytes"), ("succeeded", "300 bytes, 12 rows")]


def test_viewer_is_refused_server_side_and_the_refusal_is_audited(tmp_path: Path) -> None:
    audit = FileAuditLog(tmp_path / "audit.jsonl")
    ran: list[bool] = []
    with pytest.raises(PermissionDeniedError, match="viewer may not stop_job"):
        perform(User("bob", VIEWER), "stop_job", "etl_streaming_mobile_logs", lambda: ran.append(True), audit)
    assert ran == []
    [entry] = audit.recent()
    assert (entry.outcome, entry.reason) == ("refused", "role viewer may not stop_job")


def test_a_viewer_is_refused_even_when_the_refusal_cannot_be_written() -> None:
    with pytest.raises(PermissionDeniedError, match="viewer may not stop_job"):
        perform(User("bob", VIEWER), "stop_job", "etl", lambda: None, BrokenAuditLog())


def test_a_failing_action_is_audited_as_failed_with_its_error_class_and_re_raised(tmp_path: Path) -> None:
    audit = FileAuditLog(tmp_path / "audit.jsonl")

    def busy() -> None:
        raise ConflictError("crawler crawler_status_count is already running")

    with pytest.raises(ConflictError):
        perform(User("ana", OPERATOR), "start_crawler", "crawler_status_count", busy, audit)
    assert [e.outcome for e in audit.recent()] == ["failed", "requested"]
    assert audit.recent()[0].reason == "ConflictError: crawler crawler_status_count is already running"


@pytest.mark.parametrize("error", [OSError(13, "Permission denied"), RuntimeError("boom"), KeyboardInterrupt()])
def test_any_exception_of_the_action_is_audited_as_failed(tmp_path: Path, error: BaseException) -> None:
    audit = FileAuditLog(tmp_path / "audit.jsonl")

    def fails() -> None:
        raise error

    with pytest.raises(type(error)):
        perform(User("ana", OPERATOR), "start_job", "etl", fails, audit)
    outcome, reason = steps(audit)[-1]
    assert outcome == "failed" and reason.startswith(f"{type(error).__name__}")


def test_an_action_whose_request_cannot_be_written_is_refused_and_does_not_run(
        caplog: pytest.LogCaptureFixture) -> None:
    ran: list[bool] = []
    with pytest.raises(PermissionDeniedError, match="audit log cannot be written, so start crawler c1 did not run"):
        perform(User("ana", OPERATOR), "start_crawler", "c1", lambda: ran.append(True), BrokenAuditLog())
    assert ran == []
    assert "audit log cannot be written" in caplog.text


def test_an_unwritable_audit_file_refuses_the_action(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.mkdir()  # a folder where the log should be: every write fails
    ran: list[bool] = []
    with pytest.raises(PermissionDeniedError, match="IsADirectoryError"):
        perform(User("ana", OPERATOR), "stop_job", "etl", lambda: ran.append(True), FileAuditLog(path))
    assert ran == []


def test_an_outcome_that_cannot_be_written_does_not_undo_the_reported_result(
        caplog: pytest.LogCaptureFixture) -> None:
    audit = BrokenAuditLog(fail_from=1)  # the request is written, the outcome is not
    with caplog.at_level(logging.ERROR):
        assert perform(User("ana", OPERATOR), "stop_job", "etl", lambda: "stopped", audit) == "stopped"
    assert [e.outcome for e in audit.entries] == ["requested"]
    assert "could not audit the outcome succeeded" in caplog.text


def test_concurrent_appends_keep_every_line_whole(tmp_path: Path) -> None:
    audit = FileAuditLog(tmp_path / "audit.jsonl")

    def worker(n: int) -> None:
        for i in range(50):
            perform(User(f"user{n}", OPERATOR), "start_crawler", f"target-{i}", lambda: None, audit)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    entries = audit.recent(limit=1000)
    assert len(entries) == 400 and entries.skipped == 0
    assert {e.user for e in entries} == {"user0", "user1", "user2", "user3"}


def test_recent_returns_newest_first_and_respects_the_limit(tmp_path: Path) -> None:
    audit = FileAuditLog(tmp_path / "audit.jsonl")
    assert audit.recent() == []
    for i in range(5):
        perform(User("ana", OPERATOR), "start_crawler", f"t{i}", lambda: None, audit)
    assert [(e.target, e.outcome) for e in audit.recent(limit=3)] == [
        ("t4", "succeeded"), ("t4", "requested"), ("t3", "succeeded")]


def test_a_torn_last_line_is_skipped_counted_and_does_not_swallow_the_next_entry(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    audit = FileAuditLog(path)
    perform(User("ana", OPERATOR), "start_crawler", "c1", lambda: None, audit)
    with path.open("ab") as handle:  # a crash in the middle of a write
        handle.write(b'{"time": "2026-03-01T10:00:00+00:00", "user": "an')

    entries = audit.recent()
    assert [(e.target, e.outcome) for e in entries] == [("c1", "succeeded"), ("c1", "requested")]
    assert entries.skipped == 1

    perform(User("ana", OPERATOR), "stop_job", "etl", lambda: None, audit)
    entries = audit.recent()
    assert [(e.target, e.outcome) for e in entries][:2] == [("etl", "succeeded"), ("etl", "requested")]
    assert (len(entries), entries.skipped) == (4, 1)


def test_invalid_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    good = ('{"time": "2026-03-01T10:00:00+00:00", "user": "ana", "role": "operator", "action": "stop_job", '
            '"target": "etl", "outcome": "succeeded", "reason": ""}')
    bad = [
        "not json",
        "[1, 2, 3]",
        good.replace('"succeeded"', '"maybe"'),  # an outcome that does not exist
        good.replace('"2026-03-01T10:00:00+00:00"', '"2026-03-01T10:00:00"'),  # a time without a zone
        good.replace('"ana"', "42"),  # a user that is not text
        good.replace(', "reason": ""', ', "reason": "", "extra": "x"'),
        good.replace('"target": "etl", ', ""),
    ]
    path.write_bytes("\n".join([good, *bad, good]).encode() + b"\n\xff\xfe\n\n")

    entries = FileAuditLog(path).recent()

    assert len(entries) == 2 and entries.skipped == len(bad) + 1  # + the line that is not UTF-8
    assert all(e.outcome == "succeeded" and e.time == datetime(2026, 3, 1, 10, tzinfo=UTC) for e in entries)


def test_entries_written_before_the_request_outcome_split_read_as_succeeded(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_text('{"time": "2026-03-01T10:00:00+00:00", "user": "cli:ana", "role": "operator", '
                    '"action": "reset_checkpoint_and_start_job", "target": "etl", "outcome": "ok", '
                    '"reason": "requested from the command line"}\n')
    [entry] = FileAuditLog(path).recent()
    assert entry.outcome == "succeeded"
