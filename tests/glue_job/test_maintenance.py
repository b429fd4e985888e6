"""The job's compaction and vacuum of the Delta tables: fewer files, the same numbers, snapshots intact."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from core.delta_lake import partition_files
from core.lake_layout import COVERAGE_GRID, QUARANTINE, SIGNAL_STRENGTH_BY_OPERATOR, TABLES
from glue_job.maintenance import (
    OPEN_PARTITION_FILES,
    PARTITIONS_PER_RUN,
    LakeMaintenance,
    merge_rows,
    partition_predicate,
    partitions_to_rewrite,
)
from glue_job.sink import LakeTables
from tests.lake_fixtures import signal_rows, write_rows

HOUR = datetime(2026, 3, 1, 10, tzinfo=UTC)
WATERMARK = timedelta(minutes=10)


def _signal_batches(root: Path, hour: datetime, batches: int, seed: int = 1) -> pd.DataFrame:
    """Append `batches` commits of random partial rows in one hour; return every row written."""
    rng = random.Random(seed)
    written = []
    for batch in range(batches):
        rows = []
        for _ in range(rng.randint(1, 4)):
            start = hour + timedelta(minutes=rng.randrange(60))
            rows += signal_rows(start, rng.choice(["Movistar", "Yoigo", "Orange"]), float(rng.randint(-90, 30)),
                                rng.randint(1, 5))
            rows[-1].update(signal_min=float(rng.randint(-90, 0)), signal_max=float(rng.randint(0, 30)),
                            record_count=rows[-1]["signal_count"] + rng.randint(0, 3))
        write_rows(root, SIGNAL_STRENGTH_BY_OPERATOR, batch, rows)
        written += rows
    return pd.DataFrame(written)


def _by_key(frame: pd.DataFrame) -> pd.DataFrame:
    keys = ["window_start", "operator", "network"]
    frame = frame.assign(window_start=pd.to_datetime(frame["window_start"], utc=True))
    return frame.groupby(keys).agg(signal_sum=("signal_sum", "sum"), signal_count=("signal_count", "sum"),
                                   signal_min=("signal_min", "min"), signal_max=("signal_max", "max"),
                                   record_count=("record_count", "sum")).sort_index()


def _signal(root: Path) -> DeltaTable:
    return DeltaTable(str(root / SIGNAL_STRENGTH_BY_OPERATOR.prefix))


def test_merge_rows_sums_equal_keys_exactly_like_pandas(tmp_path: Path) -> None:
    written = _signal_batches(tmp_path, HOUR, 30)
    rows = _signal(tmp_path).to_pyarrow_table()

    merged = merge_rows(rows, SIGNAL_STRENGTH_BY_OPERATOR.merge, SIGNAL_STRENGTH_BY_OPERATOR.delta_schema)  # type: ignore[arg-type]

    assert merged.schema.equals(SIGNAL_STRENGTH_BY_OPERATOR.delta_schema)
    assert merged.num_rows < rows.num_rows
    assert max(merged["batch_id"].to_pylist()) == 29
    got = merged.to_pandas().set_index(["window_start", "operator", "network"]).sort_index()
    pd.testing.assert_frame_equal(got[list(_by_key(written).columns)], _by_key(written))


def test_partitions_due_are_closed_ones_with_several_files_and_full_open_ones() -> None:
    now = datetime(2026, 3, 1, 12, 5, tzinfo=UTC)  # 10:00 closed at 11:10; 11:00 closes at 12:10
    files = {"dt=2026-03-01/hr=09": 1, "dt=2026-03-01/hr=10": 3, "dt=2026-03-01/hr=11": OPEN_PARTITION_FILES - 1,
             "dt=2026-03-01/hr=12": OPEN_PARTITION_FILES}
    assert partitions_to_rewrite(files, now, WATERMARK) == ["dt=2026-03-01/hr=10", "dt=2026-03-01/hr=12"]
    backlog = {f"dt=2026-02-{day:02d}/hr=00": 5 for day in range(1, 10)}
    assert len(partitions_to_rewrite(backlog, now, WATERMARK)) == PARTITIONS_PER_RUN


def test_partition_names_that_are_not_ours_never_reach_a_predicate() -> None:
    assert partition_predicate("dt=2026-03-01/hr=10")[2] == "dt = '2026-03-01' AND hr = '10'"
    with pytest.raises(ValueError, match="not a dt/hr partition"):
        partition_predicate("dt=2026-03-01' OR '1'='1/hr=10")


def test_compaction_leaves_one_file_per_closed_hour_and_the_same_numbers(tmp_path: Path) -> None:
    written = _signal_batches(tmp_path, HOUR, 40)
    write_rows(tmp_path, QUARANTINE, 1, [{"arrival_time": HOUR, "stream_seq": "a", "reason": "r", "raw_payload": "{"}])
    write_rows(tmp_path, QUARANTINE, 2, [{"arrival_time": HOUR, "stream_seq": "b", "reason": "r", "raw_payload": "["}])
    table = _signal(tmp_path)
    before_version = table.version()
    snapshot_files = table.file_uris()
    maintenance = LakeMaintenance(LakeTables(str(tmp_path)), 10, clock=lambda: HOUR + timedelta(hours=2))

    runs = maintenance.maybe_run()

    compaction = next(r for r in runs if r.kind == "compaction")
    assert compaction.error is None and compaction.partitions == 2
    assert compaction.files_removed == 40 + 2 and compaction.files_added == 2
    after = _signal(tmp_path)
    assert after.version() == before_version + 1  # one commit replaced the partition
    assert partition_files(after) == {"dt=2026-03-01/hr=10": 1}
    got = after.to_pandas().set_index(["window_start", "operator", "network"]).sort_index()
    pd.testing.assert_frame_equal(got[list(_by_key(written).columns)], _by_key(written))
    quarantine = DeltaTable(str(tmp_path / QUARANTINE.prefix))
    assert len(quarantine.file_uris()) == 1 and sorted(quarantine.to_pandas()["stream_seq"]) == ["a", "b"]
    # A reader that took its snapshot before the compaction still reads every file it listed.
    assert all(Path(f).exists() for f in snapshot_files)
    assert DeltaTable(str(tmp_path / SIGNAL_STRENGTH_BY_OPERATOR.prefix), version=before_version).to_pandas()[
        "signal_count"].sum() == written["signal_count"].sum()
    # Nothing is due until the interval has passed.
    assert maintenance.maybe_run() == []


def test_an_open_hour_is_merged_once_it_holds_enough_files(tmp_path: Path) -> None:
    _signal_batches(tmp_path, HOUR, OPEN_PARTITION_FILES - 1)
    now = [HOUR + timedelta(minutes=30)]
    maintenance = LakeMaintenance(LakeTables(str(tmp_path)), 10, clock=lambda: now[0], interval=timedelta(0))
    maintenance.compact(now[0])
    assert partition_files(_signal(tmp_path)) == {"dt=2026-03-01/hr=10": OPEN_PARTITION_FILES - 1}

    write_rows(tmp_path, SIGNAL_STRENGTH_BY_OPERATOR, 99, signal_rows(HOUR, "Movistar", 1.0, 1))
    maintenance.tables = LakeTables(str(tmp_path))  # the job's writer keeps its tables current itself
    maintenance.compact(now[0])
    assert partition_files(_signal(tmp_path)) == {"dt=2026-03-01/hr=10": 1}


def test_vacuum_deletes_replaced_files_only_after_the_retention(tmp_path: Path) -> None:
    _signal_batches(tmp_path, HOUR, 5)
    replaced = _signal(tmp_path).file_uris()
    maintenance = LakeMaintenance(LakeTables(str(tmp_path)), 10, clock=lambda: HOUR + timedelta(hours=2))
    maintenance.compact(HOUR + timedelta(hours=2))

    fresh = maintenance.vacuum(HOUR + timedelta(hours=2))
    assert fresh.files_deleted == 0 and all(Path(f).exists() for f in replaced)  # replaced seconds ago

    # The same table once its retention has passed (here: set to none, as an hour is long for a test).
    _signal(tmp_path).alter.set_table_properties({"delta.deletedFileRetentionDuration": "interval 0 hours"})
    old = LakeMaintenance(LakeTables(str(tmp_path)), 10).vacuum(HOUR)
    assert old.files_deleted == len(replaced) and not any(Path(f).exists() for f in replaced)
    assert _signal(tmp_path).to_pandas()["signal_count"].sum() > 0  # the live file stays


def test_a_failed_run_is_reported_not_raised(tmp_path: Path) -> None:
    class Broken(LakeTables):
        def table(self, spec):  # type: ignore[no-untyped-def]
            raise OSError("disk full")

    runs = LakeMaintenance(Broken(str(tmp_path)), 10).maybe_run()
    assert [(r.kind, r.error) for r in runs] == [("compaction", "OSError: disk full"), ("vacuum", "OSError: disk full")]


def test_every_table_is_maintained(tmp_path: Path) -> None:
    tables = LakeTables(str(tmp_path))
    tables.create_all()
    write_rows(tmp_path, COVERAGE_GRID, 1, [{
        "window_start": HOUR, "window_end": HOUR + timedelta(minutes=15), "lat_cell": 40.41, "lon_cell": -3.71,
        "operator": "Movistar", "signal_sum": 3.0, "signal_count": 1, "record_count": 1}])
    write_rows(tmp_path, COVERAGE_GRID, 2, [{
        "window_start": HOUR, "window_end": HOUR + timedelta(minutes=15), "lat_cell": 40.41, "lon_cell": -3.71,
        "operator": "Movistar", "signal_sum": 4.0, "signal_count": 1, "record_count": 2}])
    LakeMaintenance(LakeTables(str(tmp_path)), 10).compact(HOUR + timedelta(hours=3))
    grid = DeltaTable(str(tmp_path / COVERAGE_GRID.prefix)).to_pyarrow_table()
    assert grid.num_rows == 1 and grid["record_count"].to_pylist() == [3]
    assert all(DeltaTable(str(tmp_path / spec.prefix)).version() >= 0 for spec in TABLES)
    assert isinstance(grid.schema.field("window_start").type, pa.TimestampType)
