"""Reading the job's status document (`_job/status.json`, written by glue_job/status.py).

A document that cannot be read (not JSON, or JSON of another shape) gives the state UNKNOWN with a
message, never an exception: every page and `job status` read it, and the job rewrites it whole when
it starts and after each batch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from core.domain import BatchProgress, JobStatus
from core.lake_layout import MaintenanceRun


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def batch_from_dict(data: Mapping[str, Any]) -> BatchProgress:
    """Return one batch's progress from its JSON form."""
    return BatchProgress(
        batch_id=int(data["batch_id"]),
        time=_time(data["time"]) or datetime.min,
        input_rows=int(data.get("input_rows", 0)),
        aggregated_rows=int(data.get("aggregated_rows", 0)),
        quarantined_rows=int(data.get("quarantined_rows", 0)),
        late_rows=int(data.get("late_rows", 0)),
        duplicate_rows=int(data.get("duplicate_rows", 0)),
        input_rows_per_second=float(data.get("input_rows_per_second", 0.0)),
        processed_rows_per_second=float(data.get("processed_rows_per_second", 0.0)),
        duration_ms=int(data.get("duration_ms", 0)),
        watermark=_time(data.get("watermark")),
    )


def maintenance_from_dict(data: Mapping[str, Any]) -> MaintenanceRun:
    """Return one maintenance run from its JSON form."""
    return MaintenanceRun(
        kind=str(data["kind"]),
        at=_time(data["at"]) or datetime.min,
        seconds=float(data.get("seconds", 0.0)),
        partitions=int(data.get("partitions", 0)),
        files_removed=int(data.get("files_removed", 0)),
        files_added=int(data.get("files_added", 0)),
        files_deleted=int(data.get("files_deleted", 0)),
        error=data.get("error"),
    )


UNKNOWN = "UNKNOWN"
REWRITTEN = "the job rewrites it when it starts (python -m core.cli job start) and after each batch"


class UnreadableDocument(ValueError):
    """The status document is not a JSON object."""


def parse_status_document(data: bytes | str) -> dict[str, Any]:
    """Return the status document from its bytes; UnreadableDocument when it is not a JSON object."""
    try:
        document = json.loads(data)
    except ValueError as error:  # UnicodeDecodeError too
        raise UnreadableDocument(f"not JSON: {error}") from error
    if not isinstance(document, dict):
        raise UnreadableDocument(f"a JSON {type(document).__name__}, not an object")
    return document


def unknown_job_status(name: str, where: str, problem: object, *, restarts: int = 0,
                       next_step: str = REWRITTEN) -> JobStatus:
    """Return the UNKNOWN state of a job whose state file at `where` cannot be read, saying how to recover."""
    return JobStatus(name=name, state=UNKNOWN, restarts=restarts,
                     error=f"the job's state file {where} is unreadable ({problem}); {next_step}")


def job_status_from_document(name: str, document: Mapping[str, Any] | None, *, state: str,
                             restarts: int = 0, error: str | None = None, where: str = "_job/status.json") -> JobStatus:
    """Return the JobStatus for a status document and the state the backend observed (UNKNOWN when malformed)."""
    document = document or {}
    try:
        last = document.get("last_batch")
        return JobStatus(
            name=name,
            state=state,
            started_at=_time(document.get("started_at")),
            last_batch=batch_from_dict(last) if last else None,
            recent_batches=tuple(batch_from_dict(b) for b in document.get("recent_batches") or []),
            totals={k: int(v) for k, v in (document.get("totals") or {}).items()},
            error=error if error is not None else _optional_text(document.get("error")),
            restarts=restarts,
            maintenance={kind: maintenance_from_dict(run)
                         for kind, run in (document.get("maintenance") or {}).items()},
        )
    except (AttributeError, KeyError, TypeError, ValueError) as problem:  # JSON, but not of the job's shape
        return unknown_job_status(name, where, f"{type(problem).__name__}: {problem}", restarts=restarts)


def _optional_text(value: Any) -> str | None:
    return None if value is None else str(value)


def job_status_to_dict(status: JobStatus) -> dict[str, Any]:
    """Return a JobStatus as JSON-ready data."""

    def batch(b: BatchProgress) -> dict[str, Any]:
        return {**b.__dict__, "time": b.time.isoformat(),
                "watermark": b.watermark.isoformat() if b.watermark else None}

    return {
        "name": status.name,
        "state": status.state,
        "started_at": status.started_at.isoformat() if status.started_at else None,
        "last_batch": batch(status.last_batch) if status.last_batch else None,
        "totals": dict(status.totals),
        "error": status.error,
        "restarts": status.restarts,
        "maintenance": {kind: run.to_dict() for kind, run in status.maintenance.items()},
    }
