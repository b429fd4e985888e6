"""The ports every backend provides: small Protocols, and the Backend that bundles one of each.

The console and the CLI only use these, so they work the same on the local and the AWS backend. The
values they return are in core/domain.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from core.audit import AuditEntry
from core.domain import CrawlerState, JobStatus, PutResult, QueryResult, StreamHealth, TableFreshness


class Stream(Protocol):
    """The stream the producer writes to."""

    def put_records(self, records: Sequence[Mapping[str, Any]]) -> PutResult: ...

    def health(self) -> StreamHealth: ...


class Job(Protocol):
    """The streaming job."""

    def status(self) -> JobStatus: ...

    def start(self, *, reset_checkpoint: bool = False) -> JobStatus:
        """Start the job; `reset_checkpoint` starts it on a new checkpoint when the lake refused the old
        one (see glue_job/app_identity.py)."""
        ...

    def stop(self) -> JobStatus: ...


class Crawlers(Protocol):
    """The crawlers that register lake tables and partitions in the catalog."""

    def list(self) -> list[CrawlerState]: ...

    def start(self, name: str) -> CrawlerState: ...


class Lake(Protocol):
    """SQL over the catalogued lake."""

    def query(self, name: str, params: Mapping[str, Any] | None = None) -> QueryResult: ...

    def freshness(self) -> list[TableFreshness]: ...


class AuditTrail(Protocol):
    """Where operator actions are recorded (append-only)."""

    def append(self, entry: AuditEntry) -> None: ...

    def recent(self, limit: int = 200) -> list[AuditEntry]: ...


@dataclass(frozen=True)
class Backend:
    """One implementation of every capability, chosen by SIGNAL_BACKEND."""

    kind: str
    stream: Stream
    job: Job
    crawlers: Crawlers
    lake: Lake
    audit: AuditTrail
