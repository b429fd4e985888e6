"""SQL over the local lake with DuckDB: views over the catalogued tables' live Parquet files.

One DuckDB connection per process and one cursor per query (a connection refuses concurrent
calls). Each query lists its tables' live files (core.lake_layout.live_file_names: a partition's
newest compacted file and the batch files after it) and reads exactly those through views of its
own cursor, so new files and partitions of a catalogued table are visible without a crawl, a
compaction never makes a query count a row twice, and concurrent queries do not share file lists.
A table the catalog does not know reads as empty. A table with an hourly rollup (core.lake_layout.
Rollup) also gets the rollup's three views from the same listing; queries run in their local
variant (core.queries.LOCAL_QUERIES), which reads them.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from core import queries
from core.backends.base import QueryResult, TableFreshness
from core.backends.local_catalog import LocalCatalog, partitions_on_disk, sql_type
from core.backends.local_files import LiveFiles, Partition, current_day_pieces
from core.errors import NotFoundError, QueryError
from core.lake_layout import ROLLUPS, TABLES, TABLES_BY_NAME


def _sql_string(text: str) -> str:
    # DDL cannot take bound parameters; the only literals here are paths under the lake root, escaped.
    return "'" + text.replace("'", "''") + "'"


# A compaction may delete a listed file between the listing and the read: the query is run again on
# a new listing (the compacted file that replaced it is then listed), at most this many times.
ATTEMPTS = 3


class LocalLake:
    """Named queries on DuckDB over the catalogued local lake."""

    def __init__(self, catalog: LocalCatalog, lake_root: Path) -> None:
        self.catalog = catalog
        self.lake_root = lake_root
        self.live_files = LiveFiles()
        self._connection: duckdb.DuckDBPyConnection | None = None
        self._lock = threading.Lock()

    def _new_cursor(self) -> duckdb.DuckDBPyConnection:
        with self._lock:
            if self._connection is None:
                self._connection = duckdb.connect(":memory:")
                self._create_empty_views(self._connection)
            return self._connection.cursor()

    def _create_views(self, cursor: duckdb.DuckDBPyConnection, tables: Iterable[str],
                      listed: list[Path]) -> queries.DayPieces:
        """Point the tables' names, in this cursor, at their live files now; add the files to `listed`.

        The views are TEMP views: they belong to this cursor alone and hide the connection's empty
        views of the same names. A table the catalog does not know, or one without files, keeps the
        empty view. Return the current day pieces the views hold (one listing decides both).
        """
        catalogued = self.catalog.tables()
        pieces = queries.DayPieces()
        for name in tables:
            if name not in catalogued:
                continue
            partitions = self.live_files.partitions(self.lake_root / catalogued[name]["location"])
            views = {name: [path for p in partitions for path in p.paths]}
            rollup = ROLLUPS.get(name)
            if rollup is not None:
                days = current_day_pieces(partitions)
                views[rollup.name] = [path for p in partitions for path in p.rollup_paths]
                views[rollup.covered] = [path for p in partitions for path in p.covered_paths]
                views[rollup.uncovered] = [path for p in partitions for path in p.uncovered_paths]
                views[rollup.days] = [piece.path for piece in days]
                pieces = queries.DayPieces(frozenset(d.hour for d in days if d.head),
                                           frozenset(d.hour for d in days if not d.head))
            for view, files in views.items():
                if not files:
                    continue
                listed += files
                # Every file of a view has one schema (core/lake_layout.py), so no union_by_name: it would
                # read every file's footer before each query.
                paths = ", ".join(_sql_string(str(f)) for f in files)
                cursor.execute(
                    f"CREATE TEMP VIEW {view} AS SELECT * FROM read_parquet([{paths}], "
                    "hive_partitioning = true, hive_types = {'dt': VARCHAR, 'hr': VARCHAR})"
                )
        return pieces

    def _cursor(self, tables: Iterable[str] | None = None) -> tuple[duckdb.DuckDBPyConnection, queries.DayPieces]:
        """Return a cursor whose views read the tables' (default: every table's) live files now,
        and the day pieces they hold (for queries.bind)."""
        cursor = self._new_cursor()
        with contextlib.ExitStack() as unless_returned:
            unless_returned.callback(cursor.close)  # a cursor whose views failed is closed, not leaked
            pieces = self._create_views(cursor, [t.name for t in TABLES] if tables is None else tables, [])
            unless_returned.pop_all()
        return cursor, pieces

    @staticmethod
    def _create_empty_views(connection: duckdb.DuckDBPyConnection) -> None:
        # A known table with no data yet reads as empty, with its columns, rather than failing.
        empty = [(spec.name, spec.schema) for spec in TABLES] + [
            (view, schema) for r in ROLLUPS.values()
            for view, schema in ((r.name, r.schema), (r.days, r.schema), (r.covered, r.table.schema),
                                 (r.uncovered, r.table.schema))]
        for view, schema in empty:
            columns = ", ".join(f"CAST(NULL AS {sql_type(f.type).upper()}) AS {f.name}" for f in schema)
            connection.execute(
                f"CREATE OR REPLACE VIEW {view} AS SELECT {columns}, "
                "CAST(NULL AS VARCHAR) AS dt, CAST(NULL AS VARCHAR) AS hr WHERE false"
            )

    def query(self, name: str, params: Mapping[str, Any] | None = None) -> QueryResult:
        """Run a named query; raise NotFoundError when its table has not been crawled yet."""
        query, values = queries.bind(name, params, local=True)  # bad input fails before any listing
        catalogued = self.catalog.tables()
        missing = [t for t in query.tables
                   if t not in catalogued and partitions_on_disk(self.lake_root / TABLES_BY_NAME[t].prefix)]
        if missing:
            raise NotFoundError(f"table {missing[0]} is not in the catalog yet",
                                next_step="run the crawlers once data has arrived: python -m core.cli crawl")
        as_of = self._as_of(query.tables)
        started = time.perf_counter()
        for attempt in range(1, ATTEMPTS + 1):
            cursor = self._new_cursor()
            listed: list[Path] = []
            try:
                pieces = self._create_views(cursor, query.tables, listed)
                query, values = queries.bind(name, params, local=True, day_pieces=pieces)
                frame = cursor.execute(query.sql, list(values)).df()
                break
            except duckdb.Error as error:
                if attempt < ATTEMPTS and any(not f.exists() for f in listed):
                    continue  # a compaction replaced files since they were listed: list them again
                raise QueryError(f"query {name} failed: {str(error).splitlines()[0]}") from error
            finally:
                cursor.close()
        return QueryResult(
            name=name,
            frame=frame,
            as_of=as_of,
            sql=query.sql,
            params=values,
            query_id=f"local-{uuid.uuid4().hex[:12]}",
            bytes_scanned=None,
            duration_ms=(time.perf_counter() - started) * 1000,
        )

    def _as_of(self, tables: tuple[str, ...]) -> datetime | None:
        newest = [self._newest_file_at(self.lake_root / t.prefix) for t in TABLES if t.name in tables]
        known = [n for n in newest if n is not None]
        return min(known) if known else None

    def _newest_file_at(self, folder: Path, partitions: list[Partition] | None = None) -> datetime | None:
        # Late data lands at most one watermark behind, so the two newest partitions hold the newest file.
        # Compaction keeps the newest mtime of the files it merged, so it does not move this time.
        newest = 0.0
        for partition in (self.live_files.partitions(folder) if partitions is None else partitions)[-2:]:
            for path in partition.paths:
                try:
                    newest = max(newest, path.stat().st_mtime)
                except FileNotFoundError:
                    continue  # covered by a compaction since it was listed: its rows are in a newer file
        return datetime.fromtimestamp(newest, UTC) if newest else None

    def freshness(self) -> list[TableFreshness]:
        """Return every table's newest file, live files and partitions, and catalog coverage."""
        catalogued = self.catalog.tables()
        result = []
        for table in TABLES:
            folder = self.lake_root / table.prefix
            partitions = self.live_files.partitions(folder)
            known = set(catalogued.get(table.name, {}).get("partitions", []))
            result.append(TableFreshness(
                table=table.name,
                newest_file_at=self._newest_file_at(folder, partitions),
                files=sum(len(p.files) for p in partitions),
                partitions=len(partitions),
                catalogued=table.name in catalogued,
                uncatalogued_partitions=len([p for p in partitions if p.name not in known]),
            ))
        return result
