"""The local backend: file stream, supervised PySpark job, pyarrow crawlers, DuckDB SQL."""

from __future__ import annotations

from core.audit import FileAuditLog
from core.backends.base import Backend
from core.backends.local_catalog import LocalCatalog, LocalCrawlers
from core.backends.local_job import LocalJob
from core.backends.local_lake import LocalLake
from core.backends.local_stream import LocalStream
from core.config import Settings


def build_local_backend(settings: Settings) -> Backend:
    """Return the local implementation of every capability, rooted at SIGNAL_HOME."""
    home = settings.home.resolve()
    lake_root = home / "lake"
    catalog = LocalCatalog(home / "catalog", settings.database, lake_root)
    return Backend(
        kind="local",
        stream=LocalStream(home / "stream" / settings.stream_name, settings.stream_name),
        job=LocalJob(settings),
        crawlers=LocalCrawlers(catalog, home / "catalog" / "crawlers"),
        lake=LocalLake(catalog, lake_root),
        audit=FileAuditLog(home / "audit" / "audit.jsonl"),
    )
