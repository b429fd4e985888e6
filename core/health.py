"""Pipeline health: the freshness chain hop by hop, with green/amber/red rules, and a JSON snapshot.

Pure functions over what the backends report, so the console, the CLI and the tests agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from core.backends.base import Backend
from core.backends.job_status import job_status_to_dict
from core.domain import JobStatus, StreamHealth, TableFreshness
from core.lake_layout import QUARANTINE_TABLE


class Level(StrEnum):
    """How healthy a hop is; GREY means there is nothing to judge yet."""

    GREEN = "green"
    AMBER = "amber"
    RED = "red"
    GREY = "grey"


_ORDER = {Level.GREEN: 0, Level.GREY: 1, Level.AMBER: 2, Level.RED: 3}


@dataclass(frozen=True)
class Thresholds:
    """Ages (seconds) after which a hop turns amber, then red."""

    stale_after: float
    dead_after: float


@dataclass(frozen=True)
class Hop:
    """One link of the freshness chain from producer to query."""

    key: str
    label: str
    level: Level
    at: datetime | None
    detail: str


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def describe_age(seconds: float) -> str:
    """Return an age like '12 s', '4 min' or '3 h'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"


def age_level(at: datetime | None, now: datetime, thresholds: Thresholds) -> Level:
    """Return the level of a timestamp's age: GREY when there is none."""
    moment = _utc(at)
    if moment is None:
        return Level.GREY
    age = (now - moment).total_seconds()
    if age > thresholds.dead_after:
        return Level.RED
    if age > thresholds.stale_after:
        return Level.AMBER
    return Level.GREEN


def worst(levels: Sequence[Level]) -> Level:
    """Return the most severe level (GREY only when every level is GREY)."""
    judged = [level for level in levels if level is not Level.GREY]
    if not judged:
        return Level.GREY
    return max(judged, key=lambda level: _ORDER[level])


def freshness_chain(
    stream: StreamHealth,
    job: JobStatus,
    tables: Sequence[TableFreshness],
    query_as_of: datetime | None,
    *,
    now: datetime,
    thresholds: Thresholds,
    partitions_need_crawl: bool,
) -> list[Hop]:
    """Return the hops from the last record sent to the as-of time of the console's queries."""
    hops: list[Hop] = []
    sent_at = _utc(stream.last_record_at)
    hops.append(Hop(
        "sent", "Last record sent", age_level(sent_at, now, thresholds), sent_at,
        f"{describe_age((now - sent_at).total_seconds())} ago" if sent_at else "nothing sent yet: start a replay",
    ))

    pending = stream.pending_records or 0
    oldest = _utc(stream.oldest_pending_at) if pending else None
    lag = (now - oldest).total_seconds() if oldest else 0.0
    backlog_level = age_level(oldest, now, thresholds) if oldest else (Level.GREEN if stream.exists else Level.GREY)
    hops.append(Hop("backlog", "Stream backlog", backlog_level, oldest,
                    f"{pending:,} records waiting, oldest {describe_age(lag)}" if pending else "nothing waiting"))

    last = job.last_batch
    batch_at = _utc(last.time) if last else None
    if job.state == "FAILED":
        job_level = Level.RED
    elif job.state in ("STOPPED", "RESTARTING", "STARTING", "UNKNOWN"):  # UNKNOWN: its state file is unreadable
        job_level = Level.RED if job.state == "STOPPED" and pending else Level.AMBER
    else:
        job_level = backlog_level if pending else Level.GREEN
    batch_text = f"last batch #{last.batch_id} {describe_age((now - batch_at).total_seconds())} ago" if (
        last and batch_at) else "no batch yet"
    hops.append(Hop("job", "Streaming job", job_level, batch_at,
                    f"{job.state.lower()}, {batch_text}" + (f": {job.error}" if job.error else "")))

    aggregates = [t for t in tables if t.table != QUARANTINE_TABLE]
    newest_times = [t for t in (_utc(t.newest_file_at) for t in aggregates) if t is not None]
    newest = max(newest_times) if newest_times else None
    files, partitions = sum(t.files for t in aggregates), sum(t.partitions for t in aggregates)
    lake_detail = (f"{describe_age((now - newest).total_seconds())} ago; {files:,} files in {partitions:,} partitions"
                   if newest else "no data in the lake yet")
    hops.append(Hop("lake", "Newest lake commit", age_level(newest, now, thresholds), newest, lake_detail))

    missing = [t.table for t in tables if t.files and not t.catalogued]
    new_partitions = sum(t.uncatalogued_partitions for t in tables if t.catalogued)
    if missing:
        catalog = Hop("catalog", "Catalog", Level.RED, None,
                      f"not catalogued: {', '.join(missing)}; run the crawlers")
    elif new_partitions and partitions_need_crawl:
        catalog = Hop("catalog", "Catalog", Level.AMBER, None,
                      f"{new_partitions} new partitions are not queryable until the crawlers run")
    elif any(t.catalogued for t in tables):
        detail = f"{new_partitions} new partitions, queryable without a crawl" if new_partitions else "up to date"
        catalog = Hop("catalog", "Catalog", Level.GREEN, None, detail)
    else:
        catalog = Hop("catalog", "Catalog", Level.GREY, None, "no tables yet")
    hops.append(catalog)

    as_of = _utc(query_as_of)
    hops.append(Hop("query", "Query as of", age_level(as_of, now, thresholds), as_of,
                    f"data {describe_age((now - as_of).total_seconds())} old" if as_of else "no query result yet"))
    return hops


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def snapshot(backend: Backend, thresholds: Thresholds | None = None) -> dict[str, Any]:
    """Return stream, job, crawler and lake state, and the freshness chain, as one JSON-ready document."""
    stream = backend.stream.health()
    job = backend.job.status()
    tables = backend.lake.freshness()
    now = datetime.now(UTC)
    chain = freshness_chain(
        stream, job, tables, max((t.newest_file_at for t in tables if t.newest_file_at), default=None),
        now=now, thresholds=thresholds or Thresholds(60, 300), partitions_need_crawl=backend.kind == "aws",
    )
    return {
        "backend": backend.kind,
        "overall": worst([hop.level for hop in chain]).value,
        "chain": [_jsonable({**asdict(hop), "level": hop.level.value}) for hop in chain],
        "stream": _jsonable(asdict(stream)),
        "job": job_status_to_dict(job),
        "crawlers": [_jsonable(asdict(c)) for c in backend.crawlers.list()],
        "lake": [_jsonable(asdict(t)) for t in tables],
    }
