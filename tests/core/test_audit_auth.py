"""The server-side role check and the audit log behind every operator action."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from core.audit import FileAuditLog
from core.auth import OPERATOR, VIEWER, User, perform
from core.errors import ConflictError, PermissionDeniedError


def test_operator_action_runs_and_is_audited(tmp_path: Path) -> None:
    audit = FileAuditLog(tmp_path / "audit.jsonl")
    result = perform(User("ana@example.com", OPERATOR), "start_crawler", "crawler_status_count", lambda: 42, audit)
    assert result == 42
    [entry] = audit.recent()
    assert (entry.user, entry.role, entry.action, entry.target, entry.outcome) == (
        "ana@example.com", OPERATOR, "start_crawler", "crawler_status_count", "ok")


def test_viewer_is_refused_server_side_and_the_refusal_is_audited(tmp_path: Path) -> None:
    audit = FileAuditLog(tmp_path / "audit.jsonl")
    ran: list[bool] = []
    with pytest.raises(PermissionDeniedError, match="viewer may not stop_job"):
        perform(User("bob", VIEWER), "stop_job", "etl_streaming_mobile_logs", lambda: ran.append(True), audit)
    assert ran == []
    [entry] = audit.recent()
    assert (entry.outcome, entry.reason) == ("refused", "role viewer may not stop_job")


def test_a_failing_action_is_audited_as_failed_and_re_raised(tmp_path: Path) -> None:
    audit = FileAuditLog(tmp_path / "audit.jsonl")

    def busy() -> None:
        raise ConflictError("crawler crawler_status_count is already running")

    with pytest.raises(ConflictError):
        perform(User("ana", OPERATOR), "start_crawler", "crawler_status_count", busy, audit)
    assert audit.recent()[0].outcome == "failed"
    assert "already running" in audit.recent()[0].reason


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
    assert len(entries) == 200
    assert {e.user for e in entries} == {"user0", "user1", "user2", "user3"}


def test_recent_returns_newest_first_and_respects_the_limit(tmp_path: Path) -> None:
    audit = FileAuditLog(tmp_path / "audit.jsonl")
    assert audit.recent() == []
    for i in range(5):
        perform(User("ana", OPERATOR), "start_crawler", f"t{i}", lambda: None, audit)
    assert [e.target for e in audit.recent(limit=3)] == ["t4", "t3", "t2"]
