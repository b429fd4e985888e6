"""Local crawlers and catalog: read each Delta table's schema and partitions into a local catalog.

The catalog is one JSON document under $SIGNAL_HOME/catalog, the local stand-in for the Glue Data
Catalog (whose crawlers register the same Delta tables natively on AWS). Crawlers are for new tables
and schema changes: new data in a catalogued table is queryable without a crawl (queries read the
table's current snapshot).
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
from deltalake.exceptions import DeltaError

from core import wording
from core.backends.processes import pid_alive
from core.delta_lake import open_table
from core.domain import CrawlerState
from core.durable import write_text_atomically
from core.errors import BackendError, ConflictError, NotFoundError
from core.lake_layout import PARTITION_KEYS, TABLES, TableSpec, partition_name

RUNNING = "RUNNING"
READY = "READY"
RECRAWL = "re-crawl: python -m core.cli crawl"


def sql_type(arrow_type: pa.DataType) -> str:
    """Return the catalog (Hive/Glue) type name of an Arrow type."""
    if pa.types.is_timestamp(arrow_type):
        return "timestamp"
    if pa.types.is_floating(arrow_type):
        return "double"
    if pa.types.is_integer(arrow_type):
        return "bigint"
    if pa.types.is_boolean(arrow_type):
        return "boolean"
    return "string"


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _parse(moment: Any) -> datetime | None:
    return datetime.fromisoformat(moment) if moment else None


def table_partitions(lake_root: Path, spec: TableSpec) -> list[str]:
    """Return the `dt=.../hr=...` partitions of the table's current snapshot that hold rows."""
    table = open_table(str(lake_root), spec)
    if table is None:
        return []
    return sorted(partition_name(p["dt"], p["hr"]) for p in table.partitions())


class LocalCatalog:
    """The catalog document: read it whole, change it under a file lock."""

    def __init__(self, folder: Path, database: str, lake_root: Path) -> None:
        self.folder = folder
        self.database = database
        self.lake_root = lake_root
        self.path = folder / f"{database}.json"

    def _empty(self) -> dict[str, Any]:
        return {"database": self.database, "tables": {}}

    def read(self) -> dict[str, Any]:
        """Return the catalog document (empty when nothing was crawled yet); BackendError when it is corrupt."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return self._empty()
        try:
            document = json.loads(data)
        except ValueError as error:  # bytes that are not UTF-8 too
            raise self._corrupt(str(error)) from error
        if not isinstance(document, dict) or not isinstance(document.get("tables", {}), dict):
            raise self._corrupt("not a catalog document")
        return document

    def _corrupt(self, reason: str) -> BackendError:
        # Every query and freshness check reads the catalog: name the broken file and how to rebuild it.
        return BackendError(f"the local catalog {self.path} is corrupt ({reason})", next_step=RECRAWL)

    def version(self) -> float:
        """Return a value that changes whenever the catalog is rewritten."""
        try:
            return self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return 0.0

    def tables(self) -> dict[str, dict[str, Any]]:
        """Return the catalogued tables by name."""
        return dict(self.read().get("tables", {}))

    @contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        self.folder.mkdir(parents=True, exist_ok=True)
        with (self.folder / ".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                document = self.read()
            except BackendError:
                # A crawl is the way to recover: start from an empty catalog, keeping the broken file for a
                # look. Each crawler registers its table again; the others show as not catalogued meanwhile.
                os.replace(self.path, self.path.with_name(f"{self.path.name}.corrupt-{_now():%Y%m%dT%H%M%S%f}"))
                document = self._empty()
            yield document
            write_text_atomically(self.path, json.dumps(document, indent=1))

    def register(self, spec: TableSpec, columns: list[tuple[str, str]], partitions: list[str]) -> dict[str, int]:
        """Add or update a table and its partitions; return what changed."""
        with self._locked() as document:
            tables = document.setdefault("tables", {})
            existing = tables.get(spec.name)
            now = _iso(_now())
            changes = {"tables_added": 0, "tables_updated": 0, "partitions_added": 0}
            if existing is None:
                changes["tables_added"] = 1
                changes["partitions_added"] = len(partitions)
                tables[spec.name] = {
                    "location": spec.prefix,
                    "columns": [list(c) for c in columns],
                    "partition_keys": list(PARTITION_KEYS),
                    "partitions": partitions,
                    "created_at": now,
                    "updated_at": now,
                }
                return changes
            known = set(existing.get("partitions", []))
            changes["partitions_added"] = len([p for p in partitions if p not in known])
            if [list(c) for c in columns] != existing.get("columns"):
                changes["tables_updated"] = 1
                existing["columns"] = [list(c) for c in columns]
            existing["partitions"] = sorted(known | set(partitions))
            if changes["tables_updated"] or changes["partitions_added"]:
                existing["updated_at"] = now
            return changes


class LocalCrawlers:
    """One crawler per lake table; each runs in a background thread, one run at a time."""

    def __init__(self, catalog: LocalCatalog, state_folder: Path) -> None:
        self.catalog = catalog
        self.state_folder = state_folder
        self.specs = {spec.crawler: spec for spec in TABLES}

    def _state_path(self, name: str) -> Path:
        return self.state_folder / f"{name}.json"

    def _lock_path(self, name: str) -> Path:
        return self.state_folder / f"{name}.lock"

    def _spec(self, name: str) -> TableSpec:
        try:
            return self.specs[name]
        except KeyError:
            known = ", ".join(sorted(self.specs))
            raise NotFoundError(f"no crawler named {name!r}", next_step=f"crawlers: {known}") from None

    def _read_state(self, name: str) -> CrawlerState:
        spec = self._spec(name)
        state = RUNNING if self._running_since(name) else READY
        path = self._state_path(name)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raw = {}
        except ValueError as error:
            return self._unreadable_state(name, spec, state, error)
        try:
            return CrawlerState(
                name=name,
                table=spec.name,
                state=state,
                last_started=_parse(raw.get("last_started")),
                last_finished=_parse(raw.get("last_finished")),
                last_result=raw.get("last_result"),
                tables_added=int(raw.get("tables_added", 0)),
                tables_updated=int(raw.get("tables_updated", 0)),
                partitions_added=int(raw.get("partitions_added", 0)),
                message=str(raw.get("message", "")),
            )
        except (AttributeError, TypeError, ValueError) as error:  # valid JSON of another shape
            return self._unreadable_state(name, spec, state, error)

    def _unreadable_state(self, name: str, spec: TableSpec, state: str, error: Exception) -> CrawlerState:
        # The last run's outcome is lost, not the catalog: the next run rewrites the file.
        return CrawlerState(name=name, table=spec.name, state=state,
                            message=f"its state file {self._state_path(name)} is unreadable ({error}): run it again")

    def _running_since(self, name: str) -> str | None:
        try:
            pid_text, started = self._lock_path(name).read_text().split(" ", 1)
        except (FileNotFoundError, ValueError):
            return None
        if not pid_text.isdigit() or not pid_alive(int(pid_text)):
            self._lock_path(name).unlink(missing_ok=True)  # left by a process that died mid-crawl
            return None
        return started

    def list(self) -> list[CrawlerState]:
        """Return every crawler's state."""
        return [self._read_state(name) for name in self.specs]

    def start(self, name: str) -> CrawlerState:
        """Start a crawler in the background; refuse when it is already running."""
        self._spec(name)
        self.state_folder.mkdir(parents=True, exist_ok=True)
        self._running_since(name)  # clears a stale lock
        started = _now()
        try:
            descriptor = os.open(self._lock_path(name), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            since = self._running_since(name) or "just now"
            raise ConflictError(f"crawler {name} is already running (since {since})",
                                next_step="wait for it to finish, then start it again") from None
        with os.fdopen(descriptor, "w") as lock:
            lock.write(f"{os.getpid()} {_iso(started)}")
        thread = threading.Thread(target=self._run, args=(name, started), name=name, daemon=True)
        thread.start()
        return self._read_state(name)

    def run(self, name: str, timeout: float = 600.0) -> CrawlerState:
        """Start a crawler and wait for it to finish; return its final state."""
        self.start(name)
        deadline = time.monotonic() + timeout
        while self._running_since(name) and time.monotonic() < deadline:
            time.sleep(0.05)
        return self._read_state(name)

    def _run(self, name: str, started: datetime) -> None:
        spec = self.specs[name]
        outcome: dict[str, Any] = {"last_started": _iso(started)}
        try:
            outcome.update(self._crawl(spec))
            outcome["last_result"] = "SUCCEEDED"
        except (OSError, pa.ArrowException, DeltaError) as error:
            outcome.update(last_result="FAILED", message=f"{type(error).__name__}: {error}")
        finally:
            outcome["last_finished"] = _iso(_now())
            try:
                write_text_atomically(self._state_path(name), json.dumps(outcome))
            finally:  # a failed state write must not leave the crawler "running" for the process's lifetime
                self._lock_path(name).unlink(missing_ok=True)

    def _crawl(self, spec: TableSpec) -> dict[str, Any]:
        table = open_table(str(self.catalog.lake_root), spec)
        partitions = sorted(partition_name(p["dt"], p["hr"]) for p in table.partitions()) if table else []
        if table is None or not partitions:
            return {"message": f"no data in {spec.prefix} yet", "tables_added": 0, "tables_updated": 0,
                    "partitions_added": 0}
        schema = pa.schema(table.schema().to_arrow())
        columns = [(field.name, sql_type(field.type)) for field in schema if field.name not in PARTITION_KEYS]
        changes = self.catalog.register(spec, columns, partitions)
        summary = wording.changes({"table added": changes["tables_added"], "table updated": changes["tables_updated"],
                                   "partition added": changes["partitions_added"]})
        return {**changes, "message": summary}


def crawler_state_to_dict(state: CrawlerState) -> dict[str, Any]:
    """Return a crawler state as plain JSON-ready data."""
    data = asdict(state)
    for key in ("last_started", "last_finished"):
        data[key] = _iso(data[key])
    return data
