"""The health snapshot of the pipeline, hop by hop, as plain data for the CLI and the console."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from core.backends.base import Backend
from core.backends.job_status import job_status_to_dict


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def snapshot(backend: Backend) -> dict[str, Any]:
    """Return stream, job, crawler and lake state in one JSON-ready document."""
    return {
        "backend": backend.kind,
        "stream": _jsonable(asdict(backend.stream.health())),
        "job": job_status_to_dict(backend.job.status()),
        "crawlers": [_jsonable(asdict(c)) for c in backend.crawlers.list()],
        "lake": [_jsonable(asdict(t)) for t in backend.lake.freshness()],
    }
