"""Local crawlers and the DuckDB lake over files written with pyarrow (no Spark needed)."""

from __future__ import annotations

import os
import threading
import time
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.backends.local import build_local_backend
from core.cli import main
from core.config import Settings
from core.errors import BackendError, ConflictError, NotFoundError
from core.lake_layout import COVERAGE_GRID
from tests.lake_fixtures import SIGNAL, signal_rows, write_rows

T0 = datetime(2026, 11, 28, 10, 15)


@pytest.fixture
def backend(clean_environ: Path):
    return build_local_backend(Settings.from_env({"SIGNAL_HOME": str(clean_environ)}))


def lake(clean_environ: Path) -> Path:
    return clean_environ / "lake"


def test_crawler_registers_table_columns_and_partitions(backend, clean_environ: Path) -> None:
    write_rows(lake(clean_environ), SIGNAL, 0, signal_rows(T0, "Movistar", 30.0, 2))
    write_rows(lake(clean_environ), SIGNAL, 1, signal_rows(T0.replace(hour=11), "Yoigo", 10.0, 1))
    state = backend.crawlers.run("crawler_signal_strength_by_operator")
    assert (state.state, state.last_result, state.tables_added, state.partitions_added) == ("READY", "SUCCEEDED", 1, 2)
    table = backend.crawlers.catalog.tables()["signal_strength_by_operator"]
    assert table["partitions"] == ["dt=2026-11-28/hr=10", "dt=2026-11-28/hr=11"]
    assert ["signal_count", "bigint"] in table["columns"]
    assert ["window_start", "timestamp"] in table["columns"]

    again = backend.crawlers.run("crawler_signal_strength_by_operator")
    assert (again.tables_added, again.tables_updated, again.partitions_added) == (0, 0, 0)


def test_new_data_in_a_catalogued_table_is_queryable_without_a_crawl(backend, clean_environ: Path) -> None:
    write_rows(lake(clean_environ), SIGNAL, 0, signal_rows(T0, "Movistar", 30.0, 2))
    backend.crawlers.run("crawler_signal_strength_by_operator")
    first = backend.lake.query("signal_by_operator").frame
    assert first.set_index("operator")["samples"].to_dict() == {"Movistar": 2}

    write_rows(lake(clean_environ), SIGNAL, 1, signal_rows(T0.replace(hour=12), "Movistar", 20.0, 3))
    second = backend.lake.query("signal_by_operator").frame.set_index("operator")
    assert second.loc["Movistar", "samples"] == 5
    assert second.loc["Movistar", "avg_signal"] == pytest.approx(50.0 / 5)
    fresh = {t.table: t for t in backend.lake.freshness()}["signal_strength_by_operator"]
    assert (fresh.catalogued, fresh.partitions, fresh.uncatalogued_partitions) == (True, 2, 1)


def test_uncrawled_table_with_data_is_reported_not_silently_empty(backend, clean_environ: Path) -> None:
    assert backend.lake.query("signal_by_operator").frame.empty  # no data at all: an empty answer
    write_rows(lake(clean_environ), SIGNAL, 0, signal_rows(T0, "Movistar", 30.0, 2))
    with pytest.raises(NotFoundError, match="not in the catalog"):
        backend.lake.query("signal_by_operator")


def test_second_start_while_running_is_refused(backend, clean_environ: Path) -> None:
    write_rows(lake(clean_environ), SIGNAL, 0, signal_rows(T0, "Movistar", 30.0, 2))
    crawlers = backend.crawlers
    gate = threading.Event()
    original = crawlers._crawl

    def slow_crawl(spec):
        gate.wait(10)
        return original(spec)

    crawlers._crawl = slow_crawl
    started = crawlers.start("crawler_signal_strength_by_operator")
    assert started.state == "RUNNING"
    with pytest.raises(ConflictError, match="already running"):
        crawlers.start("crawler_signal_strength_by_operator")
    gate.set()
    deadline = time.monotonic() + 10
    while crawlers.list()[0].state == "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.02)
    final = crawlers.list()[0]
    assert final.state == "READY" and final.last_result == "SUCCEEDED" and final.tables_added == 1
    assert crawlers.run("crawler_signal_strength_by_operator").last_result == "SUCCEEDED"  # free again


def test_stale_lock_of_a_dead_process_does_not_block_the_crawler(backend, clean_environ: Path) -> None:
    folder = clean_environ / "catalog" / "crawlers"
    folder.mkdir(parents=True)
    dead_pid = 2**22 + 12345  # above any pid this machine hands out
    (folder / "crawler_status_count.lock").write_text(f"{dead_pid} 2026-11-28T10:00:00+00:00")
    assert {c.name: c.state for c in backend.crawlers.list()}["crawler_status_count"] == "READY"
    assert backend.crawlers.run("crawler_status_count").last_result == "SUCCEEDED"


def test_unknown_crawler_is_not_found(backend) -> None:
    with pytest.raises(NotFoundError, match="crawler_nope"):
        backend.crawlers.start("crawler_nope")


def test_crawler_reads_the_schema_of_data_files_only(backend, clean_environ: Path) -> None:
    """A compaction's rollups and day pieces (another schema) are not the table's files, even the newest."""
    path = write_rows(lake(clean_environ), COVERAGE_GRID, 0, [{
        "window_start": T0, "window_end": T0, "lat_cell": 40.41, "lon_cell": -3.71, "operator": "Movistar",
        "signal_sum": 3.0, "signal_count": 1, "record_count": 1}])
    rollup = pa.table({"span_start": [T0], "span_minutes": [60]})
    for name in ("rollup-0.snappy.parquet", "dayhead-0123456789abcdef.snappy.parquet"):
        pq.write_table(rollup, path.parent / name)
        os.utime(path.parent / name, (time.time() + 60, time.time() + 60))  # newer than the data file
    lonely = path.parent.parent / "hr=11"
    lonely.mkdir()
    pq.write_table(rollup, lonely / "rollup-1.snappy.parquet")  # no data file: not a partition
    assert backend.crawlers.run(COVERAGE_GRID.crawler).last_result == "SUCCEEDED"
    table = backend.crawlers.catalog.tables()[COVERAGE_GRID.name]
    assert [c[0] for c in table["columns"]] == COVERAGE_GRID.schema.names
    assert table["partitions"] == ["dt=2026-11-28/hr=10"]


@pytest.mark.parametrize("content", [b'{"database": "x", "tables": {"signal_str', b"[]", b'{"tables": []}', b"\xff"])
def test_a_corrupt_catalog_is_a_clear_error_and_a_crawl_rebuilds_it(
        backend, clean_environ: Path, content: bytes) -> None:
    write_rows(lake(clean_environ), SIGNAL, 0, signal_rows(T0, "Movistar", 30.0, 2))
    backend.crawlers.run("crawler_signal_strength_by_operator")
    catalog = backend.crawlers.catalog
    catalog.path.write_bytes(content)

    with pytest.raises(BackendError, match="corrupt") as error:
        backend.lake.query("signal_by_operator")
    assert error.value.next_step == "re-crawl: python -m core.cli crawl"
    assert str(catalog.path) in str(error.value)

    assert backend.crawlers.run("crawler_signal_strength_by_operator").last_result == "SUCCEEDED"
    assert backend.lake.query("signal_by_operator").frame.set_index("operator")["samples"].to_dict() == {"Movistar": 2}
    kept = [p.read_bytes() for p in catalog.folder.glob(f"{catalog.path.name}.corrupt-*")]
    assert kept == [content]  # the broken file is kept aside for a look


def test_a_corrupt_catalog_is_one_line_from_the_cli(backend, clean_environ: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    catalog = backend.crawlers.catalog
    catalog.folder.mkdir(parents=True)
    catalog.path.write_text("{")
    assert main(["query", "signal_by_operator"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "corrupt" in err and "re-crawl: python -m core.cli crawl" in err


@pytest.mark.parametrize("content", ['{"last_result": "SUCC', '{"tables_added": "one"}', '"done"'])
def test_an_unreadable_crawler_state_says_to_run_it_again(backend, clean_environ: Path, content: str) -> None:
    crawlers = backend.crawlers
    crawlers.state_folder.mkdir(parents=True)
    crawlers._state_path("crawler_status_count").write_text(content)
    state = {c.name: c for c in crawlers.list()}["crawler_status_count"]
    assert (state.state, state.last_result) == ("READY", None)
    assert "unreadable" in state.message and "run it again" in state.message
    assert crawlers.run("crawler_status_count").last_result == "SUCCEEDED"  # which rewrites it
