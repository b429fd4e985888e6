"""The CLI's pipeline-changing commands are audited as the OS user, fail-closed, like the console's actions.

The job and crawlers are fakes (no Spark); the audit log is the real file; replay runs on the local backend.
"""

from __future__ import annotations

import getpass
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from core import cli
from core.audit import FileAuditLog
from core.backends import build_backend
from core.config import Settings
from core.domain import CrawlerState, JobStatus

USER = f"cli:{getpass.getuser()}"
JOB = "etl_streaming_mobile_logs"


class FakeJob:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def start(self, reset_checkpoint: bool = False) -> JobStatus:
        self.calls.append("start --reset" if reset_checkpoint else "start")
        return JobStatus(JOB, "STARTING")

    def stop(self) -> JobStatus:
        self.calls.append("stop")
        return JobStatus(JOB, "STOPPED")

    def status(self) -> JobStatus:
        return JobStatus(JOB, "STOPPED")


class FakeCrawlers:
    def __init__(self) -> None:
        self.started: list[str] = []

    def list(self) -> list[CrawlerState]:
        return [CrawlerState(name, name.removeprefix("crawler_"), "READY", last_result="SUCCEEDED")
                for name in ("crawler_a", "crawler_b")]

    def start(self, name: str) -> None:
        if name == "crawler_b" and "fail" in self.started:
            raise OSError("disk full")
        self.started.append(name)


@pytest.fixture
def fakes(clean_environ: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    real = build_backend(Settings.from_env({"SIGNAL_HOME": str(clean_environ)}))
    job, crawlers = FakeJob(), FakeCrawlers()
    backend = replace(real, job=job, crawlers=crawlers)
    monkeypatch.setattr(cli, "build_backend", lambda settings: backend)
    return {"job": job, "crawlers": crawlers, "audit": FileAuditLog(clean_environ / "audit" / "audit.jsonl"),
            "home": clean_environ}


def trail(audit: FileAuditLog) -> list[tuple[str, str, str, str]]:
    return [(e.user, e.action, e.target, e.outcome) for e in reversed(audit.recent(1000))]


def test_job_start_stop_and_reset_are_audited_as_the_os_user(fakes: dict[str, Any]) -> None:
    assert cli.main(["job", "start"]) == 0
    assert cli.main(["job", "stop"]) == 0
    assert cli.main(["job", "start", "--reset-checkpoint"]) == 0
    assert cli.main(["job", "status"]) == 0  # reading is not audited
    assert fakes["job"].calls == ["start", "stop", "start --reset"]
    assert trail(fakes["audit"]) == [
        (USER, "start_job", JOB, "requested"), (USER, "start_job", JOB, "succeeded"),
        (USER, "stop_job", JOB, "requested"), (USER, "stop_job", JOB, "succeeded"),
        (USER, "reset_checkpoint_and_start_job", JOB, "requested"),
        (USER, "reset_checkpoint_and_start_job", JOB, "succeeded"),
    ]
    assert all(e.role == "operator" for e in fakes["audit"].recent())


def test_crawl_audits_each_crawler_it_starts(fakes: dict[str, Any]) -> None:
    assert cli.main(["crawl"]) == 0
    assert trail(fakes["audit"]) == [
        (USER, "start_crawler", "crawler_a", "requested"), (USER, "start_crawler", "crawler_a", "succeeded"),
        (USER, "start_crawler", "crawler_b", "requested"), (USER, "start_crawler", "crawler_b", "succeeded"),
    ]


def test_a_failing_cli_action_is_audited_with_its_error_class(fakes: dict[str, Any],
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    fakes["crawlers"].started.append("fail")
    assert cli.main(["crawl", "crawler_b"]) == 1
    assert "error: unexpected OSError: disk full" in capsys.readouterr().err
    [failed] = fakes["audit"].recent(1)
    assert (failed.action, failed.outcome, failed.reason) == ("start_crawler", "failed", "OSError: disk full")


def test_a_cli_action_is_refused_when_the_audit_log_cannot_be_written(fakes: dict[str, Any],
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    (fakes["home"] / "audit" / "audit.jsonl").mkdir(parents=True)  # every write fails
    assert cli.main(["job", "stop"]) == 2
    assert fakes["job"].calls == []
    err = capsys.readouterr().err
    assert "the audit log cannot be written, so stop job etl_streaming_mobile_logs did not run" in err
    assert "Traceback" not in err


def test_replay_is_audited_as_the_os_user(clean_environ: Path, tmp_path: Path) -> None:
    header = ("hour,lat,long,signal,network,operator,status,description,speed,satellites,precission,provider,"
              "activity,postal_code")
    row = "10:00:00,40.4,-3.7,17,Movistar,Movistar,0,STATE_IN_SERVICE,0,4.0,5.0,gps,STILL,28013.0"
    csv_path = tmp_path / "two.csv"
    csv_path.write_text(f"{header}\n{row}\n{row}\n")
    assert cli.main(["replay", str(csv_path)]) == 0
    audit = FileAuditLog(clean_environ / "audit" / "audit.jsonl")
    assert trail(audit) == [(USER, "start_replay", "two.csv", "requested"),
                            (USER, "start_replay", "two.csv", "succeeded")]
    assert str(csv_path) in audit.recent()[1].reason


def test_query_csv_output_neutralises_formulas(capsys: pytest.CaptureFixture[str], clean_environ: Path) -> None:
    from datetime import UTC, datetime

    from core.lake_layout import STATUS_COUNT
    from tests.lake_fixtures import write_rows

    start = datetime(2026, 3, 1, 10, tzinfo=UTC)
    write_rows(clean_environ / "lake", STATUS_COUNT, 0, [{
        "window_start": start, "window_end": start, "postal_code": "=HYPERLINK(\"x\")", "status": "0",
        "description": "S", "record_count": 3}])
    assert cli.main(["crawl", "crawler_status_count"]) == 0
    capsys.readouterr()
    assert cli.main(["query", "status_by_postal_code", "--format", "csv"]) == 0
    out = capsys.readouterr().out
    assert "'=HYPERLINK" in out and "\n=HYPERLINK" not in out
