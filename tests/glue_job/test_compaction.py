"""Compaction of the local lake, checked through the console's real reader (DuckDB over real files).

Every state a crash or a race can leave is built for real (files written, renamed, deleted, copied
back) and read with LocalLake; the answer must be the totals of a pandas reference computed from
the original batch files, so a covered file read twice, a live file skipped or a merge that is not
exact shows up as a wrong sum. coverage_cells (rollups, day pieces) is checked the same way on random
data and random time ranges.
"""

from __future__ import annotations

import os
import random
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core import queries
from core.backends.local import build_local_backend
from core.backends.local_files import LiveFiles, Partition
from core.backends.local_lake import LocalLake
from core.config import Settings
from core.lake_layout import (
    COVERAGE_GRID,
    COVERAGE_GRID_ROLLUP,
    QUARANTINE,
    SIGNAL_STRENGTH_BY_OPERATOR,
    TableSpec,
    current_rollup_name,
    partition_path,
)
from glue_job.compaction import Compactor, compact_lake, merge_rows, plan_partition, span_rows
from glue_job.sink import LakeFiles
from tests.lake_fixtures import write_rows

NOW = datetime(2026, 11, 28, 10, 30, tzinfo=UTC)
WATERMARK = timedelta(minutes=10)
SIGNAL = SIGNAL_STRENGTH_BY_OPERATOR
# Hour 08 and 09 are closed at 10:30 with a 10-minute watermark; hour 10 is open.
H08, H09, H10 = (datetime(2026, 11, 28, h) for h in (8, 9, 10))
# (hour, batch ids written into it): 09 holds late batches of 08's ids range and batch 9, not committed yet.
LAYOUT = ((H08, range(0, 6)), (H09, range(3, 10)), (H10, range(8, 10)))
LAST_COMMITTED = 8
OPERATORS = ("Movistar", "Yoigo", "Orange")
REASONS = ("malformed JSON", "no usable event time")


def signal_rows(hour: datetime, batch_id: int, salt: int = 0) -> list[dict[str, Any]]:
    """Return a batch's partial aggregates in one hour: a few minutes, every operator, distinct numbers."""
    rows = []
    for minute in (batch_id % 7, 30 + batch_id % 11):
        for k, operator in enumerate(OPERATORS):
            start = hour + timedelta(minutes=minute)
            rows.append({"window_start": start, "window_end": start + timedelta(minutes=1), "operator": operator,
                         "network": operator, "signal_sum": float(batch_id * 10 + k + salt), "signal_count": k + 1,
                         "signal_min": float(-batch_id - k - salt), "signal_max": float(batch_id + k + salt)})
    return rows


def quarantine_rows(hour: datetime, batch_id: int, salt: int = 0) -> list[dict[str, Any]]:
    """Return a batch's quarantined records arriving in one hour."""
    return [{"arrival_time": hour + timedelta(minutes=batch_id, seconds=i, milliseconds=salt),
             "stream_seq": f"{batch_id}-{i}", "reason": REASONS[(batch_id + i) % 2], "raw_payload": "{"}
            for i in range(batch_id % 3 + 1)]


def write_batch(lake_root: Path, hour: datetime, batch_id: int, salt: int = 0) -> None:
    write_rows(lake_root, SIGNAL, batch_id, signal_rows(hour, batch_id, salt))
    write_rows(lake_root, QUARANTINE, batch_id, quarantine_rows(hour, batch_id, salt))


def folder_of(lake_root: Path, spec: TableSpec, hour: datetime) -> Path:
    return lake_root / partition_path(spec, hour.strftime("%Y-%m-%d"), hour.strftime("%H"))


def names(folder: Path) -> list[str]:
    return sorted(f.name for f in folder.iterdir())


# --- the reference: pandas over copies of the original batch files --------------------------------

def reference(originals: Path) -> dict[str, Any]:
    """Return signal_by_operator and quarantine_counts computed with pandas from the original files."""
    signal = pd.concat([pd.read_parquet(f) for f in sorted((originals / SIGNAL.name).glob("*.parquet"))])
    per_operator = signal.groupby("operator").agg(s=("signal_sum", "sum"), samples=("signal_count", "sum"),
                                                  min_signal=("signal_min", "min"), max_signal=("signal_max", "max"))
    quarantine = pd.concat([pd.read_parquet(f) for f in sorted((originals / QUARANTINE.name).glob("*.parquet"))])
    return {
        "signal": {op: (r.s / r.samples, int(r.samples), r.min_signal, r.max_signal)
                   for op, r in per_operator.iterrows()},
        "quarantine": quarantine.groupby("reason").size().astype(int).to_dict(),
    }


def read_back(lake: LocalLake) -> dict[str, Any]:
    """Return the same figures through the console's reader."""
    signal = lake.query("signal_by_operator").frame
    quarantine = lake.query("quarantine_counts").frame
    return {
        "signal": {r.operator: (r.avg_signal, int(r.samples), r.min_signal, r.max_signal) for r in signal.itertuples()},
        "quarantine": {r.reason: int(r.records) for r in quarantine.itertuples()},
    }


def assert_reads_as(lake: LocalLake, originals: Path) -> None:
    expected, actual = reference(originals), read_back(lake)
    assert actual["quarantine"] == expected["quarantine"]
    assert actual["signal"].keys() == expected["signal"].keys()
    for operator, values in expected["signal"].items():
        assert actual["signal"][operator] == pytest.approx(values), operator


@pytest.fixture
def home(clean_environ: Path) -> Path:
    return clean_environ


@pytest.fixture
def lake_root(home: Path) -> Path:
    root = home / "lake"
    for hour, batch_ids in LAYOUT:
        for batch_id in batch_ids:
            write_batch(root, hour, batch_id)
    return root


@pytest.fixture
def originals(lake_root: Path, tmp_path: Path) -> Path:
    """Copies of every batch file as the job wrote it, per table (the reference's input)."""
    target = tmp_path / "originals"
    for spec in (SIGNAL, QUARANTINE):
        (target / spec.name).mkdir(parents=True)
        for path in (lake_root / spec.prefix).glob("dt=*/hr=*/*.parquet"):
            shutil.copy2(path, target / spec.name / f"{path.parent.name}-{path.name}")
    return target


@pytest.fixture
def reader(home: Path, lake_root: Path) -> LocalLake:
    backend = build_local_backend(Settings.from_env({"SIGNAL_HOME": str(home)}))
    for crawler in ("crawler_signal_strength_by_operator", "crawler_quarantine"):
        assert backend.crawlers.run(crawler).last_result == "SUCCEEDED"
    assert isinstance(backend.lake, LocalLake)
    return backend.lake


def compact(lake_root: Path, last_committed: int = LAST_COMMITTED, now: datetime = NOW) -> Any:
    result = compact_lake(LakeFiles(str(lake_root)), last_committed=last_committed, now=now, watermark=WATERMARK,
                          tables=(SIGNAL, QUARANTINE))
    assert not result.failed
    return result


def restore(originals: Path, lake_root: Path, spec: TableSpec = SIGNAL) -> None:
    """Copy the original batch files back, as if the deletes after the rename never ran."""
    for path in (originals / spec.name).glob("*.parquet"):
        partition, name = path.name.split("-", 1)
        hour = next(h for h, _ in LAYOUT if h.strftime("hr=%H") == partition)
        shutil.copy2(path, folder_of(lake_root, spec, hour) / name)


# --- the plan ---------------------------------------------------------------------------------------

def test_plan_merges_committed_batches_after_the_newest_compacted_file() -> None:
    files = ["compacted-2.snappy.parquet", "compacted-1.snappy.parquet", "batch-1.snappy.parquet",
             "batch-3.snappy.parquet", "batch-5.snappy.parquet", "batch-6.snappy.parquet",
             ".compacted-6.snappy.parquet.1a2b3c4d.tmp", "notes.txt"]
    plan = plan_partition(files, last_committed=5)
    assert plan.merge == ("compacted-2.snappy.parquet", "batch-3.snappy.parquet", "batch-5.snappy.parquet")
    assert plan.output == "compacted-5.snappy.parquet"
    # Everything the output covers, and nothing else: batch 6 is not committed, the others are not data.
    assert set(plan.delete) == {"compacted-1.snappy.parquet", "compacted-2.snappy.parquet", "batch-1.snappy.parquet",
                                "batch-3.snappy.parquet", "batch-5.snappy.parquet"}


def test_plan_without_committed_batches_only_deletes_what_is_already_covered() -> None:
    plan = plan_partition(["compacted-4.snappy.parquet", "batch-4.snappy.parquet", "batch-5.snappy.parquet"],
                          last_committed=4)
    assert (plan.merge, plan.output, plan.delete) == ((), None, ("batch-4.snappy.parquet",))


def test_plan_does_not_copy_a_single_batch_file() -> None:
    plan = plan_partition(["batch-7.snappy.parquet", "batch-8.snappy.parquet"], last_committed=7)
    assert (plan.merge, plan.output, plan.delete) == ((), None, ())


def test_plan_of_an_open_partition_waits_for_enough_committed_batches() -> None:
    files = ["compacted-2.snappy.parquet", *(f"batch-{b}.snappy.parquet" for b in range(3, 8))]
    assert plan_partition(files, last_committed=6, min_batches=5).output is None  # 3 .. 6 committed: four
    plan = plan_partition(files, last_committed=7, min_batches=5)
    assert plan.output == "compacted-7.snappy.parquet" and len(plan.merge) == 6


def test_plan_writes_the_rollup_of_its_output_and_deletes_every_other() -> None:
    files = ["compacted-2.snappy.parquet", "rollup-2.snappy.parquet", "rollup-9.snappy.parquet",
             "batch-3.snappy.parquet", "batch-4.snappy.parquet"]
    plan = plan_partition(files, last_committed=4, rollup=True)
    assert (plan.output, plan.rollup) == ("compacted-4.snappy.parquet", "rollup-4.snappy.parquet")
    # rollup-9 was left by a run that died before its compacted file: it sums rows nobody reads as such.
    assert set(plan.delete) == {"compacted-2.snappy.parquet", "batch-3.snappy.parquet", "batch-4.snappy.parquet",
                                "rollup-2.snappy.parquet", "rollup-9.snappy.parquet"}
    # Nothing to merge, but the compacted file has no rollup (a run died between them): write it.
    missing = plan_partition(["compacted-4.snappy.parquet", "batch-5.snappy.parquet"], last_committed=4, rollup=True)
    assert (missing.output, missing.rollup, missing.delete) == (None, "rollup-4.snappy.parquet", ())
    current = plan_partition(["compacted-4.snappy.parquet", "rollup-4.snappy.parquet"], last_committed=4, rollup=True)
    assert (current.output, current.rollup, current.delete) == (None, None, ())


# --- compaction on real files ---------------------------------------------------------------------

def test_compaction_merges_exactly_the_committed_batches_of_closed_partitions(lake_root: Path) -> None:
    # The open hour holds two batch files, fewer than an open partition waits for.
    open_folder = folder_of(lake_root, SIGNAL, H10)
    open_before = {f.name: (f.stat().st_mtime_ns, f.read_bytes()) for f in open_folder.iterdir()}
    inputs = folder_of(lake_root, SIGNAL, H09)
    newest_input = max(f.stat().st_mtime_ns for f in inputs.iterdir() if f.name != "batch-9.snappy.parquet")

    result = compact(lake_root)

    assert names(folder_of(lake_root, SIGNAL, H08)) == ["compacted-5.snappy.parquet"]
    assert names(inputs) == ["batch-9.snappy.parquet", "compacted-8.snappy.parquet"]  # 9 is not committed
    assert names(folder_of(lake_root, QUARANTINE, H09)) == ["batch-9.snappy.parquet", "compacted-8.snappy.parquet"]
    # The open hour is untouched, even its committed batch 8.
    assert {f.name: (f.stat().st_mtime_ns, f.read_bytes()) for f in open_folder.iterdir()} == open_before

    merged = pq.read_table(inputs / "compacted-8.snappy.parquet")
    assert merged.schema.equals(SIGNAL.schema, check_metadata=False)
    # Batches 3 .. 8 share no (window, operator): no rows to sum, each keeps its batch id.
    assert sorted(set(merged["batch_id"].to_pylist())) == [3, 4, 5, 6, 7, 8]
    assert merged.num_rows == sum(len(signal_rows(H09, b)) for b in range(3, 9))
    assert (inputs / "compacted-8.snappy.parquet").stat().st_mtime_ns == newest_input
    quarantine = pq.read_table(folder_of(lake_root, QUARANTINE, H08) / "compacted-5.snappy.parquet")
    assert quarantine.schema.equals(QUARANTINE.schema, check_metadata=False)
    assert (result.partitions_compacted, result.files_merged) == (4, 6 + 6 + 6 + 6)
    assert (result.files_before, result.files_after) == (2 * (6 + 7 + 2), 2 * (1 + 2 + 2))

    again = compact(lake_root)  # nothing left to do
    assert (again.partitions_compacted, again.files_deleted) == (0, 0)


def test_reader_totals_at_every_step_of_the_swap(lake_root: Path, originals: Path, reader: LocalLake,
                                                 tmp_path: Path) -> None:
    assert_reads_as(reader, originals)  # batch files only

    # A compaction that died before its rename leaves a hidden temporary file: never read.
    h08 = folder_of(lake_root, SIGNAL, H08)
    temporary = h08 / ".compacted-5.snappy.parquet.1a2b3c4d.tmp"
    shutil.copy2(h08 / "batch-0.snappy.parquet", temporary)
    assert_reads_as(reader, originals)

    # An earlier run merged batches up to 4 only; keep its file to put it back later.
    compact(lake_root, last_committed=4)
    assert names(h08) == [".compacted-5.snappy.parquet.1a2b3c4d.tmp", "batch-5.snappy.parquet",
                          "compacted-4.snappy.parquet"]
    assert_reads_as(reader, originals)
    older = tmp_path / "compacted-4.snappy.parquet"
    shutil.copy2(h08 / "compacted-4.snappy.parquet", older)

    compact(lake_root)
    assert_reads_as(reader, originals)

    # The crash between the rename and the deletes: the compacted file and every file it covers.
    restore(originals, lake_root)
    shutil.copy2(older, h08 / older.name)  # and an older compacted file, also covered
    assert names(h08)[1:] == [f"batch-{b}.snappy.parquet" for b in range(6)] + [
        "compacted-4.snappy.parquet", "compacted-5.snappy.parquet"]
    assert_reads_as(reader, originals)
    fresh = {t.table: t for t in reader.freshness()}[SIGNAL.name]
    assert fresh.files == 1 + 2 + 2  # live files only: 08 compacted; 09 compacted + batch 9; the open hour's two

    # The next run deletes what is covered (and the stale temporary file), merging nothing.
    os.utime(temporary, (0, 0))
    cleanup = compact(lake_root)
    assert (cleanup.partitions_compacted, cleanup.rows_written) == (0, 0)
    assert names(h08) == ["compacted-5.snappy.parquet"]
    assert_reads_as(reader, originals)

    # Late data after compaction lands as a new batch file next to the compacted one and is read once.
    write_batch(lake_root, H08, 11)
    shutil.copy2(folder_of(lake_root, SIGNAL, H08) / "batch-11.snappy.parquet",
                 originals / SIGNAL.name / "hr=08-batch-11.snappy.parquet")
    shutil.copy2(folder_of(lake_root, QUARANTINE, H08) / "batch-11.snappy.parquet",
                 originals / QUARANTINE.name / "hr=08-batch-11.snappy.parquet")
    assert_reads_as(reader, originals)
    compact(lake_root, last_committed=11)
    assert names(h08) == ["compacted-11.snappy.parquet"]
    assert_reads_as(reader, originals)


def test_a_retried_uncommitted_batch_is_read_as_rewritten(lake_root: Path, originals: Path,
                                                          reader: LocalLake) -> None:
    compact(lake_root)
    # Batch 9 was not committed: after a crash the job runs it again, and it rewrites its own file.
    write_batch(lake_root, H09, 9, salt=100)
    for spec in (SIGNAL, QUARANTINE):
        shutil.copy2(folder_of(lake_root, spec, H09) / "batch-9.snappy.parquet",
                     originals / spec.name / "hr=09-batch-9.snappy.parquet")
    assert_reads_as(reader, originals)
    compact(lake_root, last_committed=9)
    merged = pq.read_table(folder_of(lake_root, SIGNAL, H09) / "compacted-9.snappy.parquet")
    assert 109.0 in merged["signal_max"].to_pylist()  # the retry's rows, not the first attempt's
    assert_reads_as(reader, originals)


def test_a_query_racing_a_compaction_reads_every_row_once(lake_root: Path, originals: Path, home: Path,
                                                          reader: LocalLake) -> None:
    class CompactAfterListing(LiveFiles):
        """Lists the files, then lets a compaction delete them before DuckDB opens them (once)."""

        raced = False

        def partitions(self, table_folder: Path) -> list[Partition]:
            listed = super().partitions(table_folder)
            if not self.raced:
                type(self).raced = True
                compact(lake_root)
            return listed

    reader.live_files = CompactAfterListing()
    assert_reads_as(reader, originals)
    assert CompactAfterListing.raced


def test_the_job_compacts_at_most_once_per_interval(lake_root: Path) -> None:
    now = [NOW]
    compactor = Compactor(LakeFiles(str(lake_root)), watermark_minutes=10, clock=lambda: now[0])
    assert compactor.maybe_run(last_committed=-1) is None  # the very first batch: nothing committed
    first = compactor.maybe_run(last_committed=4)
    assert first is not None and first.partitions_compacted == 4  # 08 and 09, both tables
    now[0] += timedelta(seconds=30)
    assert compactor.maybe_run(last_committed=8) is None
    now[0] += timedelta(seconds=30)
    second = compactor.maybe_run(last_committed=8)
    assert second is not None and second.partitions_compacted == 4
    assert names(folder_of(lake_root, SIGNAL, H09)) == ["batch-9.snappy.parquet", "compacted-8.snappy.parquet"]


def test_a_failed_merge_leaves_no_file_and_the_lake_readable(lake_root: Path, originals: Path,
                                                             reader: LocalLake) -> None:
    broken = folder_of(lake_root, SIGNAL, H08) / "batch-6.snappy.parquet"
    broken.write_bytes(b"not parquet")  # committed, but unreadable: the partition is skipped
    result = compact_lake(LakeFiles(str(lake_root)), last_committed=LAST_COMMITTED, now=NOW, watermark=WATERMARK,
                          tables=(SIGNAL,))
    assert len(result.failed) == 1 and "hr=08" in result.failed[0]
    assert names(folder_of(lake_root, SIGNAL, H08)) == [f"batch-{b}.snappy.parquet" for b in range(7)]
    assert names(folder_of(lake_root, SIGNAL, H09)) == ["batch-9.snappy.parquet", "compacted-8.snappy.parquet"]
    broken.unlink()
    assert_reads_as(reader, originals)


# --- open partitions ------------------------------------------------------------------------------

def test_an_open_partition_is_compacted_once_it_holds_enough_committed_batches(lake_root: Path, originals: Path,
                                                                               reader: LocalLake) -> None:
    for batch_id in range(10, 15):  # the open hour now holds batches 8 .. 14
        write_batch(lake_root, H10, batch_id)
        for spec in (SIGNAL, QUARANTINE):
            shutil.copy2(folder_of(lake_root, spec, H10) / f"batch-{batch_id}.snappy.parquet",
                         originals / spec.name / f"hr=10-batch-{batch_id}.snappy.parquet")
    open_folder = folder_of(lake_root, SIGNAL, H10)
    lake = LakeFiles(str(lake_root))

    # Batches 8 .. 12 committed: five, fewer than six.
    waiting = compact_lake(lake, last_committed=12, now=NOW, watermark=WATERMARK, tables=(SIGNAL,), open_batches=6)
    assert waiting.open_partitions_compacted == 0
    assert names(open_folder) == sorted(f"batch-{b}.snappy.parquet" for b in range(8, 15))

    # Batches 8 .. 13: six. 14 runs now (not committed): it stays a batch file whatever its number.
    merged = compact_lake(lake, last_committed=13, now=NOW, watermark=WATERMARK, tables=(SIGNAL, QUARANTINE),
                          open_batches=6)
    assert merged.open_partitions_compacted == 2 and not merged.failed
    assert names(open_folder) == ["batch-14.snappy.parquet", "compacted-13.snappy.parquet"]
    assert_reads_as(reader, originals)

    # The next open merge starts from the compacted file, again once six batches follow it.
    for batch_id in range(15, 21):
        write_batch(lake_root, H10, batch_id)
        for spec in (SIGNAL, QUARANTINE):
            shutil.copy2(folder_of(lake_root, spec, H10) / f"batch-{batch_id}.snappy.parquet",
                         originals / spec.name / f"hr=10-batch-{batch_id}.snappy.parquet")
    again = compact_lake(lake, last_committed=19, now=NOW, watermark=WATERMARK, tables=(SIGNAL, QUARANTINE),
                         open_batches=6)
    assert again.open_partitions_compacted == 2
    assert names(open_folder) == ["batch-20.snappy.parquet", "compacted-19.snappy.parquet"]
    assert_reads_as(reader, originals)


def test_the_job_compacts_open_partitions_at_most_once_per_interval(lake_root: Path) -> None:
    for batch_id in range(10, 30):
        write_batch(lake_root, H10, batch_id)
    now = [NOW]
    compactor = Compactor(LakeFiles(str(lake_root)), watermark_minutes=10, clock=lambda: now[0])
    first = compactor.maybe_run(last_committed=28)
    assert first is not None and first.open_partitions_compacted == 2  # 8 .. 28: 21 batches, both tables
    write_batch(lake_root, H10, 30)
    now[0] += timedelta(seconds=30)
    assert compactor.maybe_run(last_committed=29) is None


# --- merging rows with equal keys -----------------------------------------------------------------

def overlapping_rows(hour: datetime, batch_id: int) -> list[dict[str, Any]]:
    """Return a batch's partial aggregates in minutes every batch shares (two merge blocks), with its own numbers."""
    rows = []
    for minute in (0, 1, 25):
        for k, operator in enumerate(OPERATORS[: 1 + (batch_id + minute) % 3]):
            start = hour + timedelta(minutes=minute)
            rows.append({"window_start": start, "window_end": start + timedelta(minutes=1), "operator": operator,
                         "network": operator, "signal_sum": float(batch_id * 7 - k), "signal_count": batch_id + k,
                         "signal_min": float(batch_id - 3 * k), "signal_max": float(batch_id * 2 + k)})
    return rows


def test_merging_sums_rows_with_equal_keys_and_keeps_quarantine_rows(home: Path, tmp_path: Path) -> None:
    root = home / "lake"
    written = []
    for batch_id in range(20, 26):
        rows = overlapping_rows(H08, batch_id)
        write_rows(root, SIGNAL, batch_id, rows)
        write_rows(root, QUARANTINE, batch_id, quarantine_rows(H08, batch_id))
        written += [{**r, "batch_id": batch_id} for r in rows]
    quarantined = sum(len(quarantine_rows(H08, b)) for b in range(20, 26))
    compact(root, last_committed=25)

    merged = pq.read_table(folder_of(root, SIGNAL, H08) / "compacted-25.snappy.parquet").to_pandas()
    keys = ["window_start", "window_end", "operator", "network"]
    expected = pd.DataFrame(written).groupby(keys).agg(
        signal_sum=("signal_sum", "sum"), signal_count=("signal_count", "sum"), signal_min=("signal_min", "min"),
        signal_max=("signal_max", "max"), batch_id=("batch_id", "max")).reset_index()
    assert len(merged) == len(expected) == 9  # three minutes x three operators, out of 6 batches' rows
    assert len(written) > len(merged)
    actual = merged.sort_values(keys).reset_index(drop=True)[expected.columns]
    pd.testing.assert_frame_equal(actual, expected.sort_values(keys).reset_index(drop=True), check_dtype=False)
    # Quarantine rows are raw records: all of them, one row each.
    assert pq.read_table(folder_of(root, QUARANTINE, H08) / "compacted-25.snappy.parquet").num_rows == quarantined


def test_merge_rows_groups_null_keys_and_leaves_nan_extremes_alone() -> None:
    start = datetime(2026, 11, 28, 8)
    rows = [{"window_start": start, "window_end": start + timedelta(minutes=1), "operator": op, "network": None,
             "signal_sum": s, "signal_count": 1, "signal_min": lo, "signal_max": 9.0, "batch_id": b}
            for b, (op, s, lo) in enumerate([(None, 1.0, 1.0), (None, None, 2.0), ("Yoigo", 3.0, 3.0)])]
    table = pa.Table.from_pylist(rows, schema=SIGNAL.schema)
    merged = merge_rows(table, SIGNAL).to_pylist()
    # SQL groups null with null and skips null in SUM and MIN: so does the merge.
    by_operator = {r["operator"]: (r["signal_sum"], r["signal_count"], r["signal_min"], r["batch_id"]) for r in merged}
    assert by_operator == {None: (1.0, 2, 1.0, 1), "Yoigo": (3.0, 1, 3.0, 2)}
    # MIN over a NaN differs between pyarrow (skips it) and SQL (does not): such a table is not merged.
    with_nan = pa.Table.from_pylist([{**rows[0], "signal_min": float("nan")}, rows[1]], schema=SIGNAL.schema)
    assert merge_rows(with_nan, SIGNAL).num_rows == 2
    raw = pa.Table.from_pylist([{**r, "batch_id": 1} for r in quarantine_rows(H08, 1) * 2], schema=QUARANTINE.schema)
    assert merge_rows(raw, QUARANTINE) is raw  # no merge rule: raw records, even identical ones, stay


# --- coverage_cells: rollups and day pieces against the minute rows --------------------------------

CELLS = ((40.41, -3.71), (40.42, -3.7), (41.38, 2.17), (-0.01, 0.0))
GRID_KEYS = ["lat_cell", "lon_cell", "operator"]
# 39 hours over three UTC days; the last one (10:00 on the 28th) is open at NOW. No data at 03:00 on the 27th.
GRID_HOURS = [datetime(2026, 11, 26, 20) + timedelta(hours=h) for h in range(39)
              if h != 7]


def grid_rows(rng: random.Random, hour: datetime, count: int) -> list[dict[str, Any]]:
    """Return partial aggregates of coverage_grid in random minutes of one hour (integer sums: exact)."""
    rows = []
    for _ in range(count):
        start = hour + timedelta(minutes=rng.randrange(60))
        (lat, lon), operator = rng.choice(CELLS), rng.choice(OPERATORS)
        signal_count = rng.randrange(0, 5)
        rows.append({"window_start": start, "window_end": start + timedelta(minutes=1), "lat_cell": lat,
                     "lon_cell": lon, "operator": operator, "signal_sum": float(rng.randrange(0, 31) * signal_count),
                     "signal_count": signal_count, "record_count": signal_count + rng.randrange(1, 3)})
    return rows


class GridLake:
    """A coverage_grid lake written batch by batch, with every row kept for the reference."""

    def __init__(self, root: Path, seed: int) -> None:
        self.root, self.rng = root, random.Random(seed)
        self.rows: list[dict[str, Any]] = []
        self.next_batch = 0

    def batch(self, hour: datetime, count: int) -> int:
        batch_id, self.next_batch = self.next_batch, self.next_batch + 1
        rows = grid_rows(self.rng, hour, count)
        write_rows(self.root, COVERAGE_GRID, batch_id, rows)
        self.rows += rows
        return batch_id

    def reference(self, since: datetime, until: datetime) -> list[tuple[Any, ...]]:
        """Return coverage_cells over [since, until) computed with pandas from every row written."""
        since, until = (t.astimezone(UTC).replace(tzinfo=None) if t.tzinfo else t for t in (since, until))
        frame = pd.DataFrame(self.rows)
        chosen = frame[(frame.window_start >= since) & (frame.window_start < until)]
        if chosen.empty:
            return []
        cells = chosen.groupby(GRID_KEYS).agg(signal_sum=("signal_sum", "sum"), signal_count=("signal_count", "sum"),
                                              records=("record_count", "sum")).reset_index()
        cells = cells.sort_values(["records", *GRID_KEYS], ascending=[False, True, True, True])
        return [tuple(r) for r in cells.itertuples(index=False)]


def cells_of(frame: pd.DataFrame) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in frame[[*GRID_KEYS, "signal_sum", "signal_count", "records"]].itertuples(index=False)]


def edge_ranges(rng: random.Random, count: int) -> list[tuple[datetime, datetime]]:
    """Return time ranges on and around hour, block, minute and day edges, and random ones."""
    first, last = GRID_HOURS[0] - timedelta(hours=1), GRID_HOURS[-1] + timedelta(hours=2)
    fixed = [(datetime(2026, 11, 27), datetime(2026, 11, 28)), (datetime(2026, 11, 27), datetime(2026, 11, 27, 10)),
             (datetime(2026, 11, 27, 20), datetime(2026, 11, 28)), (first, last),
             (datetime(2026, 11, 27, 0, 0, 0, 1000), datetime(2026, 11, 28, 9, 59, 59, 999000)),
             (datetime(2026, 11, 26, 22, 30), datetime(2026, 11, 28, 9, 20)), (NOW - timedelta(hours=24), NOW),
             (NOW - timedelta(hours=1), NOW), (datetime(2026, 11, 27, 3), datetime(2026, 11, 27, 4))]

    def moment() -> datetime:
        at = first + timedelta(seconds=rng.randrange(int((last - first).total_seconds())))
        edge = rng.choice(["hour", "block", "minute", "ms", "free"])
        if edge == "hour":
            return at.replace(minute=0, second=0)
        if edge == "block":
            return at.replace(minute=at.minute // 10 * 10, second=0)
        if edge == "minute":
            return at.replace(second=0)
        if edge == "ms":
            return at.replace(second=0) + timedelta(milliseconds=rng.choice([-1, 1]))
        return at

    ranges = list(fixed)
    while len(ranges) < len(fixed) + count:
        a, b = sorted((moment(), moment()))
        if a < b:
            ranges.append((a, b))
    return ranges


def assert_cells_exact(lake: LocalLake, grid: GridLake, ranges: list[tuple[datetime, datetime]]) -> None:
    """The local query (rollups), the portable minute-level query on the same live files, and pandas agree."""
    for since, until in ranges:
        params = {"since": since, "until": until}
        local = cells_of(lake.query("coverage_cells", params).frame)
        cursor, _pieces = lake._cursor([COVERAGE_GRID.name])
        try:
            portable, values = queries.bind("coverage_cells", params)
            minute_level = cells_of(cursor.execute(portable.sql, list(values)).df())
        finally:
            cursor.close()
        expected = grid.reference(since, until)
        assert local == minute_level == expected, (since, until)


def test_span_rows_sum_the_minute_rows_of_each_span() -> None:
    rng = random.Random(3)
    hour = datetime(2026, 11, 27, 5)
    rows = [{**r, "batch_id": i} for i, r in enumerate(grid_rows(rng, hour, 400))]
    spans = span_rows(pa.Table.from_pylist(rows, schema=COVERAGE_GRID.schema), COVERAGE_GRID_ROLLUP)
    frame = pd.DataFrame(rows)
    block = COVERAGE_GRID_ROLLUP.block_minutes
    expected_spans = {(0, k * block) for k in range(1, 60 // block + 1)} | {(k * block, 60 - k * block)
                                                                           for k in range(1, 60 // block)}
    found = set()
    for span in spans:
        starts, lengths = set(span["span_start"].to_pylist()), set(span["span_minutes"].to_pylist())
        assert len(starts) == len(lengths) == 1  # one span per table, written as one row group
        start, minutes = starts.pop(), lengths.pop()
        found.add((int((start - hour).total_seconds()) // 60, minutes))
        inside = frame[(frame.window_start >= start) & (frame.window_start < start + timedelta(minutes=minutes))]
        expected = inside.groupby(GRID_KEYS).agg(signal_sum=("signal_sum", "sum"), signal_count=("signal_count", "sum"),
                                                 record_count=("record_count", "sum"), batch_id=("batch_id", "max"))
        actual = span.to_pandas().set_index(GRID_KEYS)[expected.columns].sort_index()
        pd.testing.assert_frame_equal(actual, expected.sort_index(), check_dtype=False)
    assert found == expected_spans


def test_local_coverage_cells_equals_the_minute_level_query(home: Path) -> None:
    grid = GridLake(home / "lake", seed=11)
    for hour in GRID_HOURS:
        for _ in range(grid.rng.randrange(2, 6)):
            grid.batch(hour, grid.rng.randrange(1, 12))
            if grid.rng.random() < 0.2 and hour - timedelta(hours=1) in GRID_HOURS:
                grid.batch(hour - timedelta(hours=1), 3)  # late rows for the previous hour, a file of their own
    backend = build_local_backend(Settings.from_env({"SIGNAL_HOME": str(home)}))
    assert backend.crawlers.run(COVERAGE_GRID.crawler).last_result == "SUCCEEDED"
    reader = backend.lake
    assert isinstance(reader, LocalLake)
    rng = random.Random(5)
    assert_cells_exact(reader, grid, edge_ranges(rng, 10))  # batch files only: every row is a minute row

    lake = LakeFiles(str(home / "lake"))
    result = compact_lake(lake, last_committed=grid.next_batch - 2, now=NOW, watermark=WATERMARK,
                          tables=(COVERAGE_GRID,), open_batches=2)
    assert not result.failed and result.open_partitions_compacted == 1 and result.day_pieces_written > 0
    cursor, pieces = reader._cursor([COVERAGE_GRID.name])
    cursor.close()
    # The 27th is complete: a head and a tail in each of its partitions; the 28th, still running, heads only.
    assert len(pieces.tails) == 23 + 4 and len(pieces.heads) == 38
    day = queries.rollup_spans(datetime(2026, 11, 26, 22, 30, tzinfo=UTC), datetime(2026, 11, 28, 9, 20, tzinfo=UTC),
                               COVERAGE_GRID_ROLLUP.block_minutes, pieces)
    assert (day.day_tail_minutes, day.days, day.day_head_minutes) == (
        60, (datetime(2026, 11, 27, tzinfo=UTC), datetime(2026, 11, 28, tzinfo=UTC)), 9 * 60)
    assert_cells_exact(reader, grid, edge_ranges(rng, 30))

    # The open hour's next merge changes its rollup: one day piece (its head) is written again.
    opened = [grid.batch(GRID_HOURS[-1], 5) for _ in range(3)]
    step = compact_lake(lake, last_committed=opened[-2], now=NOW, watermark=WATERMARK, tables=(COVERAGE_GRID,),
                        open_batches=2)
    assert (step.open_partitions_compacted, step.partitions_compacted, step.day_pieces_written) == (1, 1, 1)
    assert_cells_exact(reader, grid, edge_ranges(rng, 10))

    # Late batch files after compaction: read as minute rows next to the rollups.
    late_hours = rng.sample(GRID_HOURS[:-2], 4)
    late = [grid.batch(hour, 4) for hour in late_hours]
    assert_cells_exact(reader, grid, edge_ranges(rng, 15))

    # Missing rollups (removed, or a run that died between the compacted file and its rollup): the
    # compacted files are read as minute rows, and the day pieces that summed them no longer count.
    folder = home / "lake" / COVERAGE_GRID.prefix
    removed = sorted(folder.glob("dt=2026-11-27/hr=1[45]/rollup-*.snappy.parquet"))
    assert len(removed) == 2
    for path in removed:
        path.unlink()
    stale_pieces = {p: p.read_bytes() for p in folder.glob("dt=2026-11-27/hr=*/day*.snappy.parquet")}
    assert_cells_exact(reader, grid, edge_ranges(rng, 15))

    # A rollup of a compacted file that was never written (a run died between the two): never read.
    orphan = folder / "dt=2026-11-27" / "hr=16" / "rollup-9999.snappy.parquet"
    shutil.copy2(next(orphan.parent.glob("rollup-*.snappy.parquet")), orphan)
    assert_cells_exact(reader, grid, edge_ranges(rng, 5))

    # The next run merges the late files, writes the missing rollups and the day pieces again.
    again = compact_lake(lake, last_committed=max(late), now=NOW, watermark=WATERMARK, tables=(COVERAGE_GRID,),
                         open_batches=2)
    assert not again.failed and again.partitions_compacted == len(set(late_hours)) and again.day_pieces_written > 0
    for partition in folder.glob("dt=*/hr=*"):
        assert current_rollup_name(p.name for p in partition.iterdir()) is not None, partition
    assert not orphan.exists()
    assert_cells_exact(reader, grid, edge_ranges(rng, 15))

    # Day pieces left over from before (a reader may still list them): their names no longer match.
    for path, data in stale_pieces.items():
        if not path.exists():
            path.write_bytes(data)
    assert_cells_exact(reader, grid, edge_ranges(rng, 15))
