"""The job's status document (`_job/status.json`), read by the console through Job.status(), and its metrics.

Merges what foreachBatch wrote (rows aggregated, quarantined) with Spark's progress of the same
batch (rates, duration, watermark, late and duplicate rows). Totals carry over restarts. On AWS each
batch's figures and a heartbeat also go to CloudWatch (MetricsPublisher), where the template's alarms
watch them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from core.lake_layout import JOB_STATE_PREFIX, JOB_STATUS_FILE, MaintenanceRun
from glue_job.lake_files import LakeFiles
from glue_job.sink import BatchOutput

STATUS_PATH = f"{JOB_STATE_PREFIX}/{JOB_STATUS_FILE}"
RECENT_BATCHES = 120
TOTAL_KEYS = ("batches", "input_rows", "aggregated_rows", "quarantined_rows", "late_rows", "duplicate_rows")


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _state_operator_metrics(progress: dict[str, Any]) -> tuple[int, int]:
    late = duplicates = 0
    for operator in progress.get("stateOperators") or []:
        late += int(operator.get("numRowsDroppedByWatermark") or 0)
        duplicates += int((operator.get("customMetrics") or {}).get("numDroppedDuplicateRows") or 0)
    return late, duplicates


def _spark_time(value: str | None) -> str | None:
    if not value:
        return None
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return None if moment.timestamp() <= 0 else moment.isoformat()


class StatusTracker:
    """Keeps `_job/status.json` up to date for one run of the job; `on_batch` sees each new batch's figures."""

    def __init__(self, lake: LakeFiles, job_name: str,
                 on_batch: Callable[[Mapping[str, Any]], None] | None = None) -> None:
        self.lake = lake
        self.on_batch = on_batch
        previous = lake.read_json(STATUS_PATH)
        if not isinstance(previous, dict):  # unreadable or of another shape: this run writes it anew
            previous = {}
        self.document: dict[str, Any] = {
            "job_name": job_name,
            "state": "STARTING",
            "pid": os.getpid(),
            "started_at": _now(),
            "updated_at": _now(),
            "error": None,
            "last_batch": None,
            "app_id": None,
            "maintenance": dict(previous.get("maintenance") or {}),
            "recent_batches": list(previous.get("recent_batches") or [])[-RECENT_BATCHES:],
            "totals": {key: int((previous.get("totals") or {}).get(key, 0)) for key in TOTAL_KEYS},
        }
        self.outputs: dict[int, BatchOutput] = {}
        self.seen_progress: set[str] = set()
        self.write()

    def write(self) -> None:
        """Write the document now."""
        self.document["updated_at"] = _now()
        self.lake.write_json(STATUS_PATH, self.document)

    def record_app(self, app_id: str) -> None:
        """Record which app (job and checkpoint identity) writes the lake in this run."""
        self.document["app_id"] = app_id
        self.write()

    def record_maintenance(self, runs: Iterable[MaintenanceRun]) -> None:
        """Keep the newest compaction and vacuum run (the health page shows them)."""
        runs = list(runs)
        for run in runs:
            self.document["maintenance"][run.kind] = run.to_dict()
        if runs:
            self.write()

    def record_output(self, output: BatchOutput) -> None:
        """Remember what foreachBatch wrote, until Spark reports that batch's progress."""
        self.outputs[output.batch_id] = output

    def absorb(self, progresses: Iterable[dict[str, Any]], state: str = "RUNNING") -> None:
        """Fold Spark's progress reports of finished batches into the document."""
        changed = self.document["state"] != state
        self.document["state"] = state
        for progress in progresses:
            run_batch = f"{progress.get('runId')}:{progress.get('batchId')}"
            if run_batch in self.seen_progress:
                continue
            self.seen_progress.add(run_batch)
            batch_id = int(progress["batchId"])
            output = self.outputs.pop(batch_id, None)
            late, duplicates = _state_operator_metrics(progress)
            input_rows = int(progress.get("numInputRows") or 0)
            if input_rows == 0 and output is None and late == 0:
                continue  # an idle trigger: nothing to show
            batch = {
                "batch_id": batch_id,
                "time": _spark_time(progress.get("timestamp")) or _now(),
                "input_rows": input_rows,
                "aggregated_rows": output.aggregated_rows if output else 0,
                "quarantined_rows": output.quarantined_rows if output else 0,
                "late_rows": late,
                "duplicate_rows": duplicates,
                "input_rows_per_second": float(progress.get("inputRowsPerSecond") or 0.0),
                "processed_rows_per_second": float(progress.get("processedRowsPerSecond") or 0.0),
                "duration_ms": int((progress.get("durationMs") or {}).get("triggerExecution") or 0),
                "phases_ms": {k: int(v) for k, v in (progress.get("durationMs") or {}).items()},
                "watermark": _spark_time((progress.get("eventTime") or {}).get("watermark")),
            }
            totals = self.document["totals"]
            totals["batches"] += 1
            for key in ("input_rows", "aggregated_rows", "quarantined_rows", "late_rows", "duplicate_rows"):
                totals[key] += batch[key]
            self.document["last_batch"] = batch
            self.document["recent_batches"] = (self.document["recent_batches"] + [batch])[-RECENT_BATCHES:]
            changed = True
            if self.on_batch is not None:
                self.on_batch(batch)
        if changed:
            self.write()

    def finish(self, error: str | None) -> None:
        """Record that the run ended, with its error if it failed."""
        self.document["state"] = "FAILED" if error else "STOPPED"
        self.document["error"] = error
        self.write()


# --- CloudWatch metrics (AWS) ---------------------------------------------------------------------------

# Metric name -> the batch figure it carries (Sum per period; the alarms divide them into shares of input).
BATCH_METRICS = {
    "InputRows": "input_rows",
    "AggregatedRows": "aggregated_rows",
    "QuarantinedRows": "quarantined_rows",
    "LateRows": "late_rows",
    "DuplicateRows": "duplicate_rows",
}
HEARTBEAT_METRIC = "Heartbeat"
# The heartbeat goes out at least this often while the query runs, idle or not: its absence is the
# "job not running" alarm, whatever the job's last state said.
HEARTBEAT_SECONDS = 60.0


def metric_data(job_name: str, batch: Mapping[str, Any] | None, *, heartbeat: bool) -> list[dict[str, Any]]:
    """Return PutMetricData entries: one batch's figures (when given) and a heartbeat (when asked)."""
    dimensions = [{"Name": "JobName", "Value": job_name}]
    data = [{"MetricName": name, "Dimensions": dimensions, "Value": float(batch[field]), "Unit": "Count"}
            for name, field in BATCH_METRICS.items()] if batch is not None else []
    if heartbeat:
        data.append({"MetricName": HEARTBEAT_METRIC, "Dimensions": dimensions, "Value": 1.0, "Unit": "Count"})
    return data


class MetricsPublisher:
    """Publishes the job's figures as CloudWatch metrics (one PutMetricData per batch, a heartbeat a minute).

    The client is given (a boto3 CloudWatch client). A call that fails is printed and dropped: metrics
    never stop the job, and a job that cannot publish shows as missing heartbeats, which alarm.
    """

    def __init__(self, client: Any, job_name: str, namespace: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.job_name = job_name
        self.namespace = namespace
        self.clock = clock
        self.last_heartbeat: float | None = None
        self.failures = 0

    def batch(self, batch: Mapping[str, Any]) -> None:
        """Publish one batch's figures, with a heartbeat."""
        self._put(metric_data(self.job_name, batch, heartbeat=True))

    def heartbeat(self) -> None:
        """Publish a heartbeat unless one went out within HEARTBEAT_SECONDS (called on every trigger)."""
        if self.last_heartbeat is None or self.clock() - self.last_heartbeat >= HEARTBEAT_SECONDS:
            self._put(metric_data(self.job_name, None, heartbeat=True))

    def _put(self, data: list[dict[str, Any]]) -> None:
        self.last_heartbeat = self.clock()  # a failed call is not retried at once: the next trigger tries
        try:
            self.client.put_metric_data(Namespace=self.namespace, MetricData=data)
        except (BotoCoreError, ClientError) as error:
            self.failures += 1
            print(f"metrics: PutMetricData to {self.namespace} failed ({error}); the job goes on", flush=True)
