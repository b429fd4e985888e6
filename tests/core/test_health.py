"""The freshness chain's rules, hop by hop, on hand-built backend snapshots."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.domain import BatchProgress, JobStatus, StreamHealth, TableFreshness
from core.health import Level, Thresholds, describe_age, freshness_chain, worst

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
LIMITS = Thresholds(stale_after=60, dead_after=300)


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def batch(seconds_ago: float) -> BatchProgress:
    return BatchProgress(7, ago(seconds_ago), 100, 100, 0, 0, 0, 5.0, 50.0, 2000, ago(600))


def table(name: str, newest: float | None, *, catalogued: bool = True, new_partitions: int = 0) -> TableFreshness:
    return TableFreshness(name, ago(newest) if newest is not None else None, 3 if newest is not None else 0, 1,
                          catalogued, new_partitions)


def chain(stream: StreamHealth, job: JobStatus, tables: list[TableFreshness], query_as_of: datetime | None = None,
          *, aws: bool = False) -> dict[str, Level]:
    hops = freshness_chain(stream, job, tables, query_as_of, now=NOW, thresholds=LIMITS, partitions_need_crawl=aws)
    return {hop.key: hop.level for hop in hops}


HEALTHY_STREAM = StreamHealth("s", True, pending_records=0, last_record_at=ago(5))
RUNNING = JobStatus("job", "RUNNING", last_batch=batch(10))
TABLES = [table("signal_strength_by_operator", 12), table("status_count", 12), table("quarantine", None,
                                                                                     catalogued=False)]


def test_everything_fresh_is_green() -> None:
    levels = chain(HEALTHY_STREAM, RUNNING, TABLES, ago(12))
    assert levels == dict.fromkeys(("sent", "backlog", "job", "lake", "catalog", "query"), Level.GREEN)


@pytest.mark.parametrize(("age", "level"), [(59, Level.GREEN), (61, Level.AMBER), (299, Level.AMBER),
                                             (301, Level.RED)])
def test_ages_turn_amber_then_red_at_the_thresholds(age: float, level: Level) -> None:
    assert chain(HEALTHY_STREAM, RUNNING, TABLES, ago(age))["query"] is level


def test_backlog_age_drives_the_stream_and_job_hops() -> None:
    waiting = StreamHealth("s", True, pending_records=500, oldest_pending_at=ago(120), last_record_at=ago(1))
    levels = chain(waiting, RUNNING, TABLES, ago(5))
    assert (levels["backlog"], levels["job"]) == (Level.AMBER, Level.AMBER)


def test_a_stopped_job_with_records_waiting_is_red_and_a_failed_job_always() -> None:
    waiting = StreamHealth("s", True, pending_records=10, oldest_pending_at=ago(5), last_record_at=ago(5))
    assert chain(waiting, JobStatus("job", "STOPPED"), TABLES)["job"] is Level.RED
    assert chain(HEALTHY_STREAM, JobStatus("job", "STOPPED"), TABLES)["job"] is Level.AMBER
    assert chain(HEALTHY_STREAM, JobStatus("job", "FAILED", error="boom"), TABLES)["job"] is Level.RED


def test_a_job_whose_state_file_is_unreadable_is_amber_not_green() -> None:
    unknown = JobStatus("job", "UNKNOWN", error="its status file is unreadable")
    assert chain(HEALTHY_STREAM, unknown, TABLES)["job"] is Level.AMBER


def test_an_idle_running_job_with_nothing_waiting_is_green_even_if_its_last_batch_is_old() -> None:
    idle = JobStatus("job", "RUNNING", last_batch=batch(3600))
    assert chain(HEALTHY_STREAM, idle, TABLES)["job"] is Level.GREEN


def test_catalog_is_red_for_tables_with_data_but_no_entry_and_amber_for_partitions_only_on_aws() -> None:
    uncatalogued = [table("signal_strength_by_operator", 12, catalogued=False)]
    assert chain(HEALTHY_STREAM, RUNNING, uncatalogued)["catalog"] is Level.RED
    new_partitions = [table("signal_strength_by_operator", 12, new_partitions=2)]
    assert chain(HEALTHY_STREAM, RUNNING, new_partitions, aws=True)["catalog"] is Level.AMBER
    assert chain(HEALTHY_STREAM, RUNNING, new_partitions, aws=False)["catalog"] is Level.GREEN


def test_nothing_yet_is_grey_and_grey_does_not_hide_a_problem() -> None:
    empty = chain(StreamHealth("s", False, pending_records=0), JobStatus("job", "RUNNING"), [])
    assert (empty["sent"], empty["lake"], empty["query"]) == (Level.GREY, Level.GREY, Level.GREY)
    assert worst([Level.GREY, Level.GREY]) is Level.GREY
    assert worst([Level.GREY, Level.GREEN]) is Level.GREEN
    assert worst([Level.GREEN, Level.RED, Level.AMBER]) is Level.RED


@pytest.mark.parametrize(("seconds", "text"), [(5, "5 s"), (600, "10 min"), (7200, "2 h"), (3 * 86400, "3 d")])
def test_describe_age(seconds: float, text: str) -> None:
    assert describe_age(seconds) == text
