"""The lake's Delta tables through delta-rs: open them, and read what a snapshot and its log say.

Shared by the job (which writes, glue_job/sink.py) and the local readers (SQL, crawlers). A table's
state is its Delta log: readers take a snapshot (a version's file list), so a compaction or vacuum
never makes them miss or double-count rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from core.lake_layout import PARTITION_KEYS, TableSpec, partition_name, table_uri


def storage_options(uri: str) -> dict[str, str] | None:
    """Return delta-rs's storage options for a lake URI (credentials and endpoint come from AWS_*)."""
    if uri.startswith("s3://"):
        # The job is the lake's one writer (one run at a time), so no lock table is needed: without this,
        # delta-rs refuses to commit to S3, whose plain PUT cannot refuse an existing commit file.
        return {"AWS_S3_ALLOW_UNSAFE_RENAME": "true"}
    return None


def open_table(lake_uri: str, spec: TableSpec) -> DeltaTable | None:
    """Return the table's newest snapshot, or None when the table does not exist yet."""
    uri = table_uri(lake_uri, spec)
    try:
        return DeltaTable(uri, storage_options=storage_options(uri))
    except TableNotFoundError:
        return None


@dataclass(frozen=True)
class Commit:
    """A table version as the log records it."""

    version: int
    time: datetime
    operation: str


def newest_commit(table: DeltaTable) -> Commit:
    """Return the snapshot's newest commit (one read of the log, whatever the table's age)."""
    entry = table.history(1)[0]
    return Commit(int(entry["version"]), datetime.fromtimestamp(int(entry["timestamp"]) / 1000, UTC),
                  str(entry.get("operation", "")))


def partition_files(table: DeltaTable) -> dict[str, int]:
    """Return the snapshot's live data files per partition (`dt=.../hr=...`)."""
    actions = table.get_add_actions(flatten=True)
    keys = zip(*(actions.column(f"partition.{key}").to_pylist() for key in PARTITION_KEYS), strict=True)
    counts: dict[str, int] = {}
    for dt, hr in keys:
        name = partition_name(dt, hr)
        counts[name] = counts.get(name, 0) + 1
    return counts
