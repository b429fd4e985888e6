"""Compaction of the local lake, checked through the console's real reader (DuckDB over real files).

Every state a crash or a race can leave is built for real (files written, renamed, deleted, copied
back) and read with LocalLake; the answer must be the totals of a pandas reference computed from
the original batch files, so a covered file read twice or a live file skipped shows up as a wrong sum.
"""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

from core.backends.local import build_local_backend
from core.backends.local_files import LiveFiles
from core.backends.local_lake import LocalLake
from core.config import Settings
from core.lake_layout import QUARANTINE, SIGNAL_STRENGTH_BY_OPERATOR, TableSpec, partition_path
from glue_job.compaction import Compactor, compact_lake, plan_partition
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


# --- compaction on real files ---------------------------------------------------------------------

def test_compaction_merges_exactly_the_committed_batches_of_closed_partitions(lake_root: Path) -> None:
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
    assert sorted(set(merged["batch_id"].to_pylist())) == [3, 4, 5, 6, 7, 8]  # each row keeps its batch id
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

        def files(self, table_folder: Path) -> list[Path]:
            listed = super().files(table_folder)
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
