"""The AWS job and crawlers: Glue job runs and Glue crawlers, with the job's status document on S3.

Same semantics as the local twins (core/backends/local_job.py, local_catalog.py): one run of the
streaming job at a time, a crawler refuses to start while it runs, and every AWS error reaches the
caller as the project's error (core/backends/aws/errors.py), never as a raw botocore exception.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from botocore.exceptions import ClientError

from core import wording
from core.backends.aws.clients import new_client
from core.backends.aws.errors import aws_errors
from core.backends.job_status import job_status_from_document
from core.domain import CrawlerState, JobStatus
from core.errors import BackendError, ConflictError, NotFoundError
from core.lake_layout import JOB_STATE_PREFIX, JOB_STATUS_FILE

# Glue JobRunState -> JobStatus.state. STOPPING still holds the run (a start now would be a second
# run), so it shows as RUNNING; WAITING is a run queued for capacity.
JOB_STATES = {
    "STARTING": "STARTING",
    "WAITING": "STARTING",
    "RUNNING": "RUNNING",
    "STOPPING": "RUNNING",
    "STOPPED": "STOPPED",
    "SUCCEEDED": "STOPPED",
    "FAILED": "FAILED",
    "TIMEOUT": "FAILED",
    "ERROR": "FAILED",
}
ACTIVE_RUN_STATES = frozenset({"STARTING", "WAITING", "RUNNING", "STOPPING"})
RECENT_RUNS = 25  # runs looked at by stop(): a streaming job has one, a misconfigured one a few

# Glue crawler State (READY, RUNNING, STOPPING) -> CrawlerState.state.
CRAWLER_STATES = {"READY": "READY", "RUNNING": "RUNNING", "STOPPING": "RUNNING"}
# LastCrawl.Status (SUCCEEDED, FAILED, CANCELLED), plus the crawl-history names of the same results.
CRAWL_RESULTS = {"SUCCEEDED": "SUCCEEDED", "COMPLETED": "SUCCEEDED", "FAILED": "FAILED",
                 "CANCELLED": "CANCELLED", "STOPPED": "CANCELLED"}


def _utc(moment: Any) -> datetime | None:
    if not isinstance(moment, datetime):
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


class GlueJob:
    """The streaming Glue job: its latest run plus the status document the job writes to S3."""

    def __init__(self, session: boto3.Session, job_name: str, bucket: str, prefix: str, *,
                 client: Any = None, s3: Any = None) -> None:
        """Use `client` (Glue) / `s3` when given (tests), else build them from `session` on first use."""
        self.session = session
        self.job_name = job_name
        self.bucket = bucket
        self.status_key = "/".join(p for p in (prefix.strip("/"), JOB_STATE_PREFIX, JOB_STATUS_FILE) if p)
        self._glue = client
        self._s3 = s3

    @property
    def glue(self) -> Any:
        """Return the Glue client, created from the session on first use."""
        if self._glue is None:
            self._glue = new_client(self.session, "glue")
        return self._glue

    @property
    def s3(self) -> Any:
        """Return the S3 client, created from the session on first use."""
        if self._s3 is None:
            self._s3 = new_client(self.session, "s3")
        return self._s3

    def _runs(self, max_results: int) -> list[dict[str, Any]]:
        with aws_errors(f"read the runs of Glue job {self.job_name}"):
            response = self.glue.get_job_runs(JobName=self.job_name, MaxResults=max_results)
        return list(response.get("JobRuns") or [])  # newest first

    def _latest_run(self) -> dict[str, Any] | None:
        runs = self._runs(1)
        return runs[0] if runs else None

    def _document(self) -> dict[str, Any] | None:
        with aws_errors(f"read the job status s3://{self.bucket}/{self.status_key}"):
            try:
                body = self.s3.get_object(Bucket=self.bucket, Key=self.status_key)["Body"].read()
            except ClientError as error:
                if _error_code(error) in ("NoSuchKey", "404"):
                    return None  # the job has not written it yet
                raise
        try:
            document = json.loads(body)
        except ValueError:
            return None  # same as the local twin: a half-written or foreign file is no status
        return document if isinstance(document, dict) else None

    def _status(self, run: dict[str, Any] | None) -> JobStatus:
        document = self._document()
        if run is None:
            return job_status_from_document(self.job_name, document, state="STOPPED")
        glue_state = str(run.get("JobRunState", ""))
        state = JOB_STATES.get(glue_state, "FAILED")
        error = None
        if state == "FAILED":
            error = str(run.get("ErrorMessage") or f"the job run ended with {glue_state or 'an unknown state'}")
        status = job_status_from_document(self.job_name, document, state=state, error=error,
                                          restarts=int(run.get("Attempt") or 0))
        return dataclasses.replace(status, started_at=_utc(run.get("StartedOn")) or status.started_at)

    def status(self) -> JobStatus:
        """Return the state of the latest run merged with the job's own progress document."""
        return self._status(self._latest_run())

    def start(self, *, reset_checkpoint: bool = False) -> JobStatus:
        """Start a run, unless one is already active: a streaming job has exactly one run."""
        run = self._latest_run()
        if run is not None and run.get("JobRunState") in ACTIVE_RUN_STATES:
            return self._status(run)
        # The reset applies to this run only: the job's default arguments never carry it.
        arguments = {"--reset_checkpoint": "true"} if reset_checkpoint else {}
        with aws_errors(f"start Glue job {self.job_name}"):
            self.glue.start_job_run(JobName=self.job_name, Arguments=arguments)
        return self.status()

    def stop(self) -> JobStatus:
        """Ask Glue to stop every active run (the current micro-batch is cut short)."""
        active = [str(r["Id"]) for r in self._runs(RECENT_RUNS) if r.get("JobRunState") in ACTIVE_RUN_STATES]
        if active:
            with aws_errors(f"stop Glue job {self.job_name}"):
                response = self.glue.batch_stop_job_run(JobName=self.job_name, JobRunIds=active)
            for failure in response.get("Errors") or []:
                detail = failure.get("ErrorDetail") or {}
                raise BackendError(f"stop Glue job {self.job_name}: run {failure.get('JobRunId')}: "
                                   f"{detail.get('ErrorCode')}: {detail.get('ErrorMessage')}")
        return self.status()


class GlueCrawlers:
    """The Glue crawlers of the lake tables, one per table."""

    def __init__(self, session: boto3.Session, names: Sequence[str], tables_by_crawler: Mapping[str, str], *,
                 client: Any = None) -> None:
        """Use `client` (Glue) when given (tests), else build it from `session` on first use."""
        self.session = session
        self.names = list(names)
        self.tables_by_crawler = dict(tables_by_crawler)
        self._glue = client

    @property
    def glue(self) -> Any:
        """Return the Glue client, created from the session on first use."""
        if self._glue is None:
            self._glue = new_client(self.session, "glue")
        return self._glue

    def _check_known(self, name: str) -> None:
        if name not in self.names:
            raise NotFoundError(f"no crawler named {name!r}", next_step=f"crawlers: {', '.join(sorted(self.names))}")

    def _states(self, names: Sequence[str]) -> list[CrawlerState]:
        with aws_errors("read the Glue crawlers"):
            response = self.glue.batch_get_crawlers(CrawlerNames=list(names))
        found = {c["Name"]: c for c in response.get("Crawlers") or []}
        missing = [n for n in names if n not in found]  # Glue lists them in CrawlersNotFound
        if missing:
            raise NotFoundError(f"Glue crawler {missing[0]} does not exist",
                                next_step="deploy the stack (infra/template.yaml) or fix the crawler names")
        with aws_errors("read the Glue crawler metrics"):
            metrics_response = self.glue.get_crawler_metrics(CrawlerNameList=list(names))
        metrics = {m["CrawlerName"]: m for m in metrics_response.get("CrawlerMetricsList") or []}
        return [self._state(found[n], metrics.get(n)) for n in names]

    def _state(self, crawler: Mapping[str, Any], metrics: Mapping[str, Any] | None) -> CrawlerState:
        name = str(crawler["Name"])
        state = CRAWLER_STATES.get(str(crawler.get("State", "")), "READY")
        last = crawler.get("LastCrawl") or {}
        result = CRAWL_RESULTS.get(str(last.get("Status", "")))  # None while that crawl is still running
        started = _utc(last.get("StartTime"))
        finished = None
        created = updated = 0
        message = str(last.get("ErrorMessage") or "")
        if metrics is not None:
            created, updated = int(metrics.get("TablesCreated") or 0), int(metrics.get("TablesUpdated") or 0)
            runtime = metrics.get("LastRuntimeSeconds")
            if started is not None and result is not None and runtime is not None:
                finished = started + timedelta(seconds=float(runtime))
            if state == "RUNNING" and not metrics.get("StillEstimating") and metrics.get("TimeLeftSeconds"):
                message = message or f"about {float(metrics['TimeLeftSeconds']):.0f} s left"
            elif result == "SUCCEEDED" and not message:
                deleted = int(metrics.get("TablesDeleted") or 0)
                message = wording.changes({"table created": created, "table updated": updated,
                                           "table deleted": deleted})
        return CrawlerState(
            name=name,
            table=self.tables_by_crawler.get(name, ""),
            state=state,
            last_started=started,
            last_finished=finished,
            last_result=result,
            tables_added=created,
            tables_updated=updated,
            message=message,
        )

    def list(self) -> list[CrawlerState]:
        """Return every crawler's state, in the order of the names given."""
        return self._states(self.names)

    def start(self, name: str) -> CrawlerState:
        """Start a crawler; refuse when it is already running."""
        self._check_known(name)
        with aws_errors(f"start Glue crawler {name}"):
            try:
                self.glue.start_crawler(Name=name)
            except ClientError as error:
                if _error_code(error) == "CrawlerRunningException":
                    raise ConflictError(f"crawler {name} is already running",
                                        next_step="wait for it to finish, then start it again") from error
                raise
        return self._states([name])[0]
