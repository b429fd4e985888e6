"""The local reader keeps each table open and brings it up to date; a reader idle past the log's
retention (its commits cleaned up behind a checkpoint) still reads the newest snapshot."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
from deltalake import DeltaTable, Field

from core import queries
from core.backends.local import build_local_backend
from core.compare import NOW, PREVIOUS, kpi_periods
from core.config import Settings
from core.lake_layout import SIGNAL_STRENGTH_BY_OPERATOR
from tests.lake_fixtures import signal_rows, write_rows

T0 = datetime(2026, 3, 1, 10, tzinfo=UTC)


def test_a_reader_idle_past_the_log_retention_reads_the_newest_snapshot(clean_environ: Path) -> None:
    lake = clean_environ / "lake"
    write_rows(lake, SIGNAL_STRENGTH_BY_OPERATOR, 0, signal_rows(T0, "Movistar", 10.0, 1))
    backend = build_local_backend(Settings.from_env({"SIGNAL_HOME": str(clean_environ)}))
    backend.crawlers.run("crawler_signal_strength_by_operator")
    params = {"since": "2026-03-01T00:00", "until": "2026-03-02T00:00"}
    assert backend.lake.query("signal_by_operator", params).frame["samples"].tolist() == [1]

    table = DeltaTable(str(lake / SIGNAL_STRENGTH_BY_OPERATOR.prefix))
    table.alter.set_table_properties({"delta.logRetentionDuration": "interval 0 seconds"})
    for batch in range(1, 205):  # two checkpoints; every commit before the last one is cleaned up
        write_rows(lake, SIGNAL_STRENGTH_BY_OPERATOR, batch, signal_rows(T0, "Movistar", 10.0, 1))
    log = lake / SIGNAL_STRENGTH_BY_OPERATOR.prefix / "_delta_log"
    assert not (log / f"{1:020d}.json").exists()

    assert backend.lake.query("signal_by_operator", params).frame["samples"].tolist() == [205]


def test_files_from_before_a_column_was_added_read_it_as_null(clean_environ: Path) -> None:
    lake = clean_environ / "lake"
    spec = SIGNAL_STRENGTH_BY_OPERATOR
    # A file written before signal_strength_by_operator had record_count (10:00), then the column added (as the
    # job's LakeTables.create_all does) and a file with it (11:00).
    write_rows(lake, spec, 0, signal_rows(T0, "Yoigo", 10.0, 2), without=("record_count",))
    DeltaTable(str(lake / spec.prefix)).alter.add_columns([Field("record_count", "long", nullable=True)])
    write_rows(lake, spec, 1, signal_rows(T0 + timedelta(hours=1), "Movistar", 30.0, 3))
    backend = build_local_backend(Settings.from_env({"SIGNAL_HOME": str(clean_environ)}))
    backend.crawlers.run("crawler_signal_strength_by_operator")
    day = {"since": "2026-03-01T00:00", "until": "2026-03-02T00:00"}
    samples = backend.lake.query("signal_by_operator", day).frame.set_index("operator")["samples"].to_dict()
    assert samples == {"Movistar": 3, "Yoigo": 2}

    # Yoigo's records are unknown: a range that reads its rows has no record count (not 3, which undercounts),
    # while its average and operators stand; the hour after it has its count.
    kpis = backend.lake.query("kpis", day).frame.iloc[0]
    assert pd.isna(kpis["records"]) and (kpis["avg_signal"], kpis["operators"]) == (8.0, 2)
    later = backend.lake.query("kpis", {"since": "2026-03-01T11:00", "until": "2026-03-01T12:00"}).frame.iloc[0]
    assert (later["records"], later["avg_signal"]) == (3, 10.0)
    # A range of old files alone: none has the column, which still reads as NULL.
    before = backend.lake.query("kpis", {"since": "2026-03-01T10:00", "until": "2026-03-01T11:00"}).frame.iloc[0]
    assert pd.isna(before["records"]) and before["avg_signal"] == 5.0

    row = backend.lake.query("kpis_compared", {"since": "2026-03-01T11:00", "until": "2026-03-01T12:00"}).frame
    periods = kpi_periods(row.iloc[0].to_dict())
    assert (periods[NOW]["records"], periods[NOW]["avg_signal"]) == (3, 10.0)
    assert (periods[PREVIOUS]["records"], periods[PREVIOUS]["avg_signal"]) == (None, 5.0)  # the legacy hour


def test_a_table_not_yet_upgraded_reads_its_new_columns_as_null(clean_environ: Path) -> None:
    # The console of a new release opened on a lake the job has not upgraded yet (it adds the columns when
    # it starts): the queries work, and what the table cannot tell is unknown.
    lake = clean_environ / "lake"
    write_rows(lake, SIGNAL_STRENGTH_BY_OPERATOR, 0, signal_rows(T0, "Yoigo", 10.0, 2), without=("record_count",))
    backend = build_local_backend(Settings.from_env({"SIGNAL_HOME": str(clean_environ)}))
    backend.crawlers.run("crawler_signal_strength_by_operator")
    kpis = backend.lake.query("kpis", {"since": "2026-03-01T00:00", "until": "2026-03-02T00:00"}).frame.iloc[0]
    assert pd.isna(kpis["records"]) and (kpis["avg_signal"], kpis["operators"]) == (5.0, 1)


def test_a_comparison_reads_the_files_of_its_three_periods_only(clean_environ: Path) -> None:
    lake = clean_environ / "lake"
    spec = SIGNAL_STRENGTH_BY_OPERATOR
    for batch, (day, hour) in enumerate([(1, 9), (1, 10), (1, 11), (0, 10), (0, 11)]):
        start = datetime(2026, 3, 1 + day, hour, 5, tzinfo=UTC)
        write_rows(lake, spec, batch, signal_rows(start, "Movistar", 10.0, 1))
    # 11:00-12:00 on 2 March, the hour before it, and 11:00-12:00 on 1 March.
    _, _, bounds = queries.bind_with_bounds("kpis_compared", {"since": "2026-03-02T11:00", "until": "2026-03-02T12:00"})

    files = DeltaTable(str(lake / spec.prefix)).file_uris(file_pruning_predicate=bounds.partition_filter())

    assert sorted(Path(f).parent.parent.name + "/" + Path(f).parent.name for f in files) == [
        "dt=2026-03-01/hr=11", "dt=2026-03-02/hr=10", "dt=2026-03-02/hr=11"]
