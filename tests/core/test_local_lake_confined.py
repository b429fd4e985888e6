"""The local lake's DuckDB connection reads the lake root and nothing else, and cannot be talked out of it."""

from __future__ import annotations

import contextlib
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.backends.local import build_local_backend
from core.backends.local_lake import LocalLake
from core.config import Settings
from tests.lake_fixtures import SIGNAL, signal_rows, write_rows

T0 = datetime(2026, 11, 28, 10, 15)


@pytest.fixture
def lake(clean_environ: Path) -> LocalLake:
    """Return the local backend's lake over one catalogued Delta table."""
    backend: Any = build_local_backend(Settings.from_env({"SIGNAL_HOME": str(clean_environ)}))
    write_rows(clean_environ / "lake", SIGNAL, 0, signal_rows(T0, "Movistar", 30.0, 2))
    backend.crawlers.run("crawler_signal_strength_by_operator")
    assert isinstance(backend.lake, LocalLake)
    return backend.lake


def run(lake: LocalLake, sql: str) -> list[tuple[object, ...]]:
    """Run `sql` on a cursor of the lake's own connection, as a named query would."""
    with contextlib.closing(lake._new_cursor()) as cursor:
        return cursor.execute(sql).fetchall()


def parquet(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"secret": ["do not read"]}), path)
    return str(path)


def test_named_queries_still_read_the_lake(lake: LocalLake) -> None:
    frame = lake.query("signal_by_operator").frame
    assert frame.set_index("operator")["samples"].to_dict() == {"Movistar": 2}
    for name in ("signal_per_minute", "gps_by_provider", "status_by_postal_code", "coverage_cells", "kpis",
                 "quarantine_counts"):
        lake.query(name)  # every named query runs (empty tables read as empty)
    inside = next((lake.lake_root / SIGNAL.prefix).rglob("*.parquet"))
    assert run(lake, f"SELECT count(*) FROM read_parquet('{inside}')") == [(1,)]


def test_a_file_outside_the_lake_cannot_be_read(lake: LocalLake, clean_environ: Path, tmp_path: Path) -> None:
    lake.query("signal_by_operator")  # the connection exists and is locked
    outside = [
        parquet(tmp_path / "elsewhere" / "secret.parquet"),
        parquet(clean_environ / "secret.parquet"),  # next to the lake, in SIGNAL_HOME
        parquet(clean_environ / "lake2" / "secret.parquet"),  # a sibling whose name starts like the lake's
        f"{lake.lake_root}/../secret.parquet",  # out of the lake with ..
    ]
    for path in outside:
        with pytest.raises(duckdb.PermissionException):
            run(lake, f"SELECT * FROM read_parquet('{path}')")
    for sql in ("SELECT * FROM read_csv('/etc/passwd')", "SELECT * FROM read_text('/etc/hostname')",
                f"ATTACH '{tmp_path / 'other.db'}' AS other",
                f"COPY (SELECT 1) TO '{tmp_path / 'out.csv'}'", "INSTALL httpfs"):
        with pytest.raises(duckdb.PermissionException):
            run(lake, sql)


def test_no_statement_can_widen_the_access_again(lake: LocalLake, tmp_path: Path) -> None:
    lake.query("signal_by_operator")
    for sql in ("SET enable_external_access = true", f"SET allowed_directories = ['{tmp_path}/']",
                "SET lock_configuration = false", "RESET enable_external_access"):
        with pytest.raises(duckdb.Error, match="locked"):
            run(lake, sql)
    with pytest.raises(duckdb.PermissionException):
        run(lake, f"SELECT * FROM read_parquet('{parquet(tmp_path / 'secret.parquet')}')")
