"""Tests of the AWS job and crawlers (core/backends/aws/glue.py).

Glue has no local equivalent at the AWS edge, so these run against moto's Glue and S3. Where moto
cannot produce an answer real Glue gives (BatchStopJobRun, GetCrawlerMetrics, a run in RUNNING or
FAILED, a raced start, AccessDenied), botocore's Stubber answers on a real client instead.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.stub import Stubber
from moto.moto_api import state_manager

from core.backends.aws.glue import GlueCrawlers, GlueJob
from core.errors import BackendError, ConflictError, NotFoundError, PermissionDeniedError
from core.lake_layout import TABLES
from tests.core.aws.conftest import REGION

BUCKET = "signal-lake-test"
PREFIX = "lake"
STATUS_KEY = f"{PREFIX}/_job/status.json"
JOB = "etl_streaming_mobile_logs"
DATABASE = "mobile_network_aggregations"
ROLE = "arn:aws:iam::123456789012:role/test"
CRAWLERS = [spec.crawler for spec in TABLES]
TABLES_BY_CRAWLER = {spec.crawler: spec.name for spec in TABLES}
HOLD = {"progression": "manual", "times": 10**9}  # a moto run/crawl that stays in its first state


def _batch(batch_id: int, time: str) -> dict[str, Any]:
    return {
        "batch_id": batch_id, "time": time, "input_rows": 500, "aggregated_rows": 40, "quarantined_rows": 2,
        "late_rows": 1, "duplicate_rows": 3, "input_rows_per_second": 25.0, "processed_rows_per_second": 80.0,
        "duration_ms": 6200, "phases_ms": {"triggerExecution": 6200}, "watermark": "2025-05-01T11:50:00+00:00",
    }


# What glue_job/status.py's StatusTracker writes after two batches.
STATUS_DOCUMENT: dict[str, Any] = {
    "job_name": JOB,
    "state": "RUNNING",
    "pid": 4242,
    "started_at": "2025-05-01T11:00:00+00:00",
    "updated_at": "2025-05-01T12:00:21+00:00",
    "error": None,
    "last_batch": _batch(8, "2025-05-01T12:00:20+00:00"),
    "recent_batches": [_batch(7, "2025-05-01T12:00:00+00:00"), _batch(8, "2025-05-01T12:00:20+00:00")],
    "totals": {"batches": 9, "input_rows": 4500, "aggregated_rows": 360, "quarantined_rows": 18,
               "late_rows": 9, "duplicate_rows": 27},
}


@pytest.fixture
def glue_session(session: boto3.Session) -> boto3.Session:
    """Return the moto session (tests/core/aws/conftest.py) with the lake bucket, the job and the crawlers."""
    session.client("s3").create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    glue = session.client("glue")
    glue.create_job(Name=JOB, Role=ROLE, Command={"Name": "gluestreaming", "ScriptLocation": "s3://x/job.py"},
                    GlueVersion="5.0", ExecutionProperty={"MaxConcurrentRuns": 1})
    glue.create_database(DatabaseInput={"Name": DATABASE})
    for spec in TABLES:
        glue.create_crawler(Name=spec.crawler, Role=ROLE, DatabaseName=DATABASE,
                            Targets={"S3Targets": [{"Path": f"s3://{BUCKET}/{PREFIX}/{spec.prefix}/"}]})
    return session


@contextmanager
def _transitions(transition: dict[str, Any], *models: str) -> Iterator[None]:
    """Set how moto moves its job runs / crawls between states, for the block only."""
    for model in models:
        state_manager.set_transition(model_name=model, transition=transition)
    try:
        yield
    finally:
        for model in models:
            state_manager.unset_transition(model)


@pytest.fixture
def hold_runs() -> Iterator[None]:
    """Keep moto's job runs and crawls in their first state (STARTING, RUNNING) instead of finishing."""
    with _transitions(HOLD, "glue::job_run", "glue::crawl"):
        yield


def _put_status(session: boto3.Session, body: bytes | None = None) -> None:
    session.client("s3").put_object(Bucket=BUCKET, Key=STATUS_KEY, Body=body or json.dumps(STATUS_DOCUMENT).encode())


def _runs(session: boto3.Session) -> list[dict[str, Any]]:
    return list(session.client("glue").get_job_runs(JobName=JOB)["JobRuns"])


def _moto_glue(session: boto3.Session) -> Any:
    """Return a moto Glue client; moto lacks GetCrawlerMetrics, so it answers with no metrics (LastCrawl only)."""
    client = session.client("glue")

    def no_metrics(**_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        return AWSResponse("", 200, {}, None), {"CrawlerMetricsList": []}

    client.meta.events.register("before-call.glue.GetCrawlerMetrics", no_metrics)
    return client


def _crawlers(session: boto3.Session, names: list[str] | None = None) -> GlueCrawlers:
    return GlueCrawlers(session, names or CRAWLERS, TABLES_BY_CRAWLER, client=_moto_glue(session))


def _run(state: str, run_id: str = "jr_1", **extra: Any) -> dict[str, Any]:
    return {"Id": run_id, "JobName": JOB, "JobRunState": state,
            "StartedOn": datetime(2025, 5, 1, 11, 0, 5, tzinfo=UTC), **extra}


# --- the job -------------------------------------------------------------------------------------


def test_status_without_a_run_is_stopped_with_the_documents_progress(glue_session: boto3.Session) -> None:
    _put_status(glue_session)
    status = GlueJob(glue_session, JOB, BUCKET, PREFIX).status()
    assert status.name == JOB
    assert status.state == "STOPPED"
    assert status.totals == STATUS_DOCUMENT["totals"]
    assert status.last_batch is not None and status.last_batch.batch_id == 8
    assert [b.batch_id for b in status.recent_batches] == [7, 8]
    assert status.error is None


def test_status_without_a_document_has_no_batches(glue_session: boto3.Session) -> None:
    status = GlueJob(glue_session, JOB, BUCKET, PREFIX).status()
    assert (status.state, status.last_batch, status.recent_batches, dict(status.totals)) == ("STOPPED", None, (), {})


def test_a_malformed_document_reads_as_no_progress(glue_session: boto3.Session) -> None:
    _put_status(glue_session, b'{"state": "RUNN')
    assert GlueJob(glue_session, JOB, BUCKET, PREFIX).status().last_batch is None


def test_start_creates_one_run_and_a_second_start_does_not(glue_session: boto3.Session, hold_runs: None) -> None:
    _put_status(glue_session)
    job = GlueJob(glue_session, JOB, BUCKET, PREFIX)
    started = job.start()
    assert started.state == "STARTING"  # moto's first run state; RUNNING is covered with a Stubber below
    assert started.started_at is not None and started.started_at.tzinfo is not None
    assert started.totals == STATUS_DOCUMENT["totals"]
    assert len(_runs(glue_session)) == 1

    again = job.start()
    assert again.state == "STARTING"
    assert len(_runs(glue_session)) == 1


def test_a_finished_run_does_not_block_the_next_start(glue_session: boto3.Session) -> None:
    job = GlueJob(glue_session, JOB, BUCKET, PREFIX)
    assert job.start().state == "STOPPED"  # moto finishes a run at once (SUCCEEDED)
    job.start()
    assert len(_runs(glue_session)) == 2


def test_stop_without_an_active_run_changes_nothing(glue_session: boto3.Session) -> None:
    assert GlueJob(glue_session, JOB, BUCKET, PREFIX).stop().state == "STOPPED"


@pytest.mark.parametrize(("glue_state", "state"), [
    ("STARTING", "STARTING"), ("WAITING", "STARTING"), ("RUNNING", "RUNNING"), ("STOPPING", "RUNNING"),
    ("STOPPED", "STOPPED"), ("SUCCEEDED", "STOPPED"), ("FAILED", "FAILED"), ("TIMEOUT", "FAILED"),
    ("ERROR", "FAILED"),
])
def test_glue_run_states_map_to_job_states(glue_session: boto3.Session, glue_state: str, state: str) -> None:
    _put_status(glue_session)
    client = glue_session.client("glue")
    with Stubber(client) as stub:
        stub.add_response("get_job_runs", {"JobRuns": [_run(glue_state, Attempt=2)]},
                          {"JobName": JOB, "MaxResults": 1})
        status = GlueJob(glue_session, JOB, BUCKET, PREFIX, client=client).status()
    assert status.state == state
    assert status.started_at == datetime(2025, 5, 1, 11, 0, 5, tzinfo=UTC)
    assert status.restarts == 2
    assert (status.error is not None) == (state == "FAILED")


def test_a_failed_run_reports_glues_error_message(glue_session: boto3.Session) -> None:
    client = glue_session.client("glue")
    with Stubber(client) as stub:
        stub.add_response("get_job_runs", {"JobRuns": [_run("FAILED", ErrorMessage="OutOfMemoryError")]})
        status = GlueJob(glue_session, JOB, BUCKET, PREFIX, client=client).status()
    assert (status.state, status.error) == ("FAILED", "OutOfMemoryError")


def test_start_refuses_a_second_run_while_one_is_running(glue_session: boto3.Session) -> None:
    client = glue_session.client("glue")
    with Stubber(client) as stub:  # start_job_run is not stubbed: calling it would fail the test
        stub.add_response("get_job_runs", {"JobRuns": [_run("RUNNING")]})
        status = GlueJob(glue_session, JOB, BUCKET, PREFIX, client=client).start()
        stub.assert_no_pending_responses()
    assert status.state == "RUNNING"


def test_a_raced_start_is_a_conflict(glue_session: boto3.Session) -> None:
    client = glue_session.client("glue")
    with Stubber(client) as stub:
        stub.add_response("get_job_runs", {"JobRuns": []})
        stub.add_client_error("start_job_run", "ConcurrentRunsExceededException", "Concurrent runs exceeded")
        with pytest.raises(ConflictError, match="Concurrent runs exceeded"):
            GlueJob(glue_session, JOB, BUCKET, PREFIX, client=client).start()


def test_stop_stops_the_active_runs(glue_session: boto3.Session) -> None:
    client = glue_session.client("glue")
    with Stubber(client) as stub:  # moto does not implement BatchStopJobRun
        stub.add_response("get_job_runs", {"JobRuns": [_run("RUNNING", "jr_2"), _run("SUCCEEDED", "jr_1")]},
                          {"JobName": JOB, "MaxResults": 25})
        stub.add_response("batch_stop_job_run", {"SuccessfulSubmissions": [{"JobName": JOB, "JobRunId": "jr_2"}]},
                          {"JobName": JOB, "JobRunIds": ["jr_2"]})
        stub.add_response("get_job_runs", {"JobRuns": [_run("STOPPED", "jr_2")]}, {"JobName": JOB, "MaxResults": 1})
        status = GlueJob(glue_session, JOB, BUCKET, PREFIX, client=client).stop()
        stub.assert_no_pending_responses()
    assert status.state == "STOPPED"


def test_a_run_glue_refuses_to_stop_is_reported(glue_session: boto3.Session) -> None:
    client = glue_session.client("glue")
    with Stubber(client) as stub:
        stub.add_response("get_job_runs", {"JobRuns": [_run("RUNNING", "jr_2")]})
        stub.add_response("batch_stop_job_run", {"Errors": [{"JobName": JOB, "JobRunId": "jr_2", "ErrorDetail": {
            "ErrorCode": "InvalidInputException", "ErrorMessage": "run cannot be stopped"}}]})
        with pytest.raises(BackendError, match=r"jr_2.*run cannot be stopped"):
            GlueJob(glue_session, JOB, BUCKET, PREFIX, client=client).stop()


def test_access_denied_on_the_job_is_a_permission_error(glue_session: boto3.Session) -> None:
    client = glue_session.client("glue")
    with Stubber(client) as stub:
        stub.add_client_error("get_job_runs", "AccessDeniedException", "not authorized to perform glue:GetJobRuns")
        with pytest.raises(PermissionDeniedError, match="glue:GetJobRuns"):
            GlueJob(glue_session, JOB, BUCKET, PREFIX, client=client).status()


def test_access_denied_on_the_status_document_is_not_hidden(glue_session: boto3.Session) -> None:
    s3 = glue_session.client("s3")
    with Stubber(s3) as stub:
        stub.add_client_error("get_object", "AccessDenied", "Access Denied", http_status_code=403)
        with pytest.raises(PermissionDeniedError):
            GlueJob(glue_session, JOB, BUCKET, PREFIX, s3=s3).status()


# --- the crawlers --------------------------------------------------------------------------------


def test_crawlers_list_shows_every_crawler_ready(glue_session: boto3.Session) -> None:
    states = _crawlers(glue_session).list()
    assert [(s.name, s.table, s.state) for s in states] == [(c, TABLES_BY_CRAWLER[c], "READY") for c in CRAWLERS]
    assert all(s.last_started is None and s.last_result is None for s in states)


def test_start_runs_the_crawler_and_a_second_start_is_a_conflict(glue_session: boto3.Session,
                                                                  hold_runs: None) -> None:
    crawlers = _crawlers(glue_session)
    name = CRAWLERS[0]
    state = crawlers.start(name)
    assert (state.name, state.state, state.last_result) == (name, "RUNNING", None)
    assert state.last_started is not None
    with pytest.raises(ConflictError, match=f"crawler {name} is already running"):
        crawlers.start(name)
    others = [s.state for s in crawlers.list() if s.name != name]
    assert others == ["READY"] * (len(CRAWLERS) - 1)


def test_a_finished_crawl_shows_its_result(glue_session: boto3.Session) -> None:
    with _transitions({"progression": "immediate"}, "glue::crawl"):  # the crawl finishes at once
        state = _crawlers(glue_session).start(CRAWLERS[1])
    assert (state.state, state.last_result) == ("READY", "SUCCEEDED")
    assert state.last_started is not None


def test_starting_an_unknown_crawler_is_not_found(glue_session: boto3.Session) -> None:
    with pytest.raises(NotFoundError, match="crawler_nope"):
        _crawlers(glue_session).start("crawler_nope")


def test_a_crawler_missing_from_glue_is_not_found(glue_session: boto3.Session) -> None:
    crawlers = _crawlers(glue_session, [*CRAWLERS, "crawler_not_deployed"])
    with pytest.raises(NotFoundError, match="crawler_not_deployed"):
        crawlers.list()


def test_crawler_metrics_give_changes_and_finish_time(glue_session: boto3.Session) -> None:
    client = glue_session.client("glue")
    started = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)
    ok, failed = CRAWLERS[0], CRAWLERS[1]
    with Stubber(client) as stub:
        stub.add_response("batch_get_crawlers", {"Crawlers": [
            {"Name": ok, "State": "READY", "LastCrawl": {"Status": "SUCCEEDED", "StartTime": started}},
            {"Name": failed, "State": "STOPPING",
             "LastCrawl": {"Status": "FAILED", "StartTime": started, "ErrorMessage": "Insufficient Lake Formation"}},
        ], "CrawlersNotFound": []}, {"CrawlerNames": [ok, failed]})
        stub.add_response("get_crawler_metrics", {"CrawlerMetricsList": [
            {"CrawlerName": ok, "LastRuntimeSeconds": 75.0, "TablesCreated": 1, "TablesUpdated": 2},
            {"CrawlerName": failed, "LastRuntimeSeconds": 10.0},
        ]}, {"CrawlerNameList": [ok, failed]})
        states = GlueCrawlers(glue_session, [ok, failed], TABLES_BY_CRAWLER, client=client).list()
    first, second = states
    assert (first.state, first.last_result, first.tables_added, first.tables_updated) == ("READY", "SUCCEEDED", 1, 2)
    assert first.last_finished == started + timedelta(seconds=75)
    assert first.message == "1 table created, 2 tables updated"
    assert (second.state, second.last_result, second.message) == ("RUNNING", "FAILED", "Insufficient Lake Formation")


def test_access_denied_on_the_crawlers_is_a_permission_error(glue_session: boto3.Session) -> None:
    client = glue_session.client("glue")
    with Stubber(client) as stub:
        stub.add_client_error("batch_get_crawlers", "AccessDeniedException", "not authorized")
        with pytest.raises(PermissionDeniedError):
            GlueCrawlers(glue_session, CRAWLERS, TABLES_BY_CRAWLER, client=client).list()
