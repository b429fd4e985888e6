"""Which files of a partition readers read (the compacted layout's rule), and listing them on disk."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.backends import local_files
from core.backends.local_files import LiveFiles, current_day_pieces
from core.lake_layout import (
    DataFileName,
    batch_file_name,
    compacted_file_name,
    current_rollup_name,
    day_piece_names,
    is_day_piece,
    live_file_names,
    parse_data_file_name,
    rollup_file_name,
)


@pytest.mark.parametrize(("name", "parsed"), [
    ("batch-0.snappy.parquet", DataFileName(0, "batch")),
    ("batch-4320.snappy.parquet", DataFileName(4320, "batch")),
    ("compacted-17.snappy.parquet", DataFileName(17, "compacted")),
    (".batch-3.snappy.parquet.1a2b3c4d.tmp", None),  # a write in progress
    (".compacted-3.snappy.parquet.1a2b3c4d.tmp", None),
    ("batch-03.snappy.parquet", None),  # not a name the job writes
    ("batch--1.snappy.parquet", None),
    ("compacted.snappy.parquet", None),
    ("part-0000.parquet", None),
])
def test_parse_data_file_name(name: str, parsed: DataFileName | None) -> None:
    assert parse_data_file_name(name) == parsed
    if parsed is not None:
        assert parsed.name == name


def test_names_round_trip() -> None:
    assert parse_data_file_name(batch_file_name(12)) == DataFileName(12, "batch")
    assert parse_data_file_name(compacted_file_name(12)) == DataFileName(12, "compacted")


@pytest.mark.parametrize(("names", "live"), [
    (["batch-10.snappy.parquet", "batch-9.snappy.parquet"], ["batch-9.snappy.parquet", "batch-10.snappy.parquet"]),
    # the newest compacted file covers every batch (and compacted file) up to its id
    (["batch-3.snappy.parquet", "batch-5.snappy.parquet", "batch-6.snappy.parquet", "compacted-2.snappy.parquet",
      "compacted-5.snappy.parquet"], ["compacted-5.snappy.parquet", "batch-6.snappy.parquet"]),
    (["compacted-5.snappy.parquet", ".compacted-9.snappy.parquet.1a2b3c4d.tmp", "_SUCCESS"],
     ["compacted-5.snappy.parquet"]),
    ([], []),
])
def test_live_file_names(names: list[str], live: list[str]) -> None:
    assert live_file_names(names) == live


def touch(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"")


def test_live_files_lists_partitions_with_live_files(tmp_path: Path) -> None:
    table = tmp_path / "signal"
    touch(table / "dt=2026-11-28" / "hr=09", "batch-1.snappy.parquet", "compacted-2.snappy.parquet",
          "batch-3.snappy.parquet")
    touch(table / "dt=2026-11-28" / "hr=10", ".batch-4.snappy.parquet.1a2b3c4d.tmp")  # nothing live yet
    touch(table / "dt=2026-11-27" / "hr=23", "batch-0.snappy.parquet")
    partitions = LiveFiles().partitions(table)
    assert [(p.name, p.files) for p in partitions] == [
        ("dt=2026-11-27/hr=23", ("batch-0.snappy.parquet",)),
        ("dt=2026-11-28/hr=09", ("compacted-2.snappy.parquet", "batch-3.snappy.parquet")),
    ]
    assert LiveFiles().files(tmp_path / "missing") == []


def test_a_folder_is_listed_again_when_it_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "signal" / "dt=2026-11-28" / "hr=09"
    touch(folder, "batch-1.snappy.parquet")
    old = 1_700_000_000
    os.utime(folder, (old, old))  # settled: its listing is kept
    files = LiveFiles()
    assert files.partition_files(folder) == ("batch-1.snappy.parquet",)

    touch(folder, "compacted-1.snappy.parquet")
    assert files.partition_files(folder) == ("compacted-1.snappy.parquet",)  # the folder's mtime moved
    (folder / "batch-1.snappy.parquet").unlink()
    os.utime(folder, (old + 5, old + 5))
    assert files.partition_files(folder) == ("compacted-1.snappy.parquet",)

    # A change within the same mtime tick is not missed either: a folder that changed recently is not kept.
    monkeypatch.setattr(local_files, "SETTLING_NS", 10**20)
    recent = LiveFiles()
    assert recent.partition_files(folder) == ("compacted-1.snappy.parquet",)
    touch(folder, "batch-2.snappy.parquet")
    os.utime(folder, (old + 5, old + 5))  # same mtime as when it was listed
    assert recent.partition_files(folder) == ("compacted-1.snappy.parquet", "batch-2.snappy.parquet")


# --- rollups and day pieces -----------------------------------------------------------------------

@pytest.mark.parametrize(("names", "current"), [
    (["compacted-5.snappy.parquet", "rollup-5.snappy.parquet", "batch-6.snappy.parquet"], "rollup-5.snappy.parquet"),
    # a rollup of another id sums other rows: a compacted file that replaced it, or one never renamed
    (["compacted-5.snappy.parquet", "rollup-4.snappy.parquet", "rollup-6.snappy.parquet"], None),
    (["batch-5.snappy.parquet", "rollup-5.snappy.parquet"], None),
    (["compacted-4.snappy.parquet", "compacted-5.snappy.parquet", "rollup-4.snappy.parquet"], None),
])
def test_current_rollup_name(names: list[str], current: str | None) -> None:
    assert current_rollup_name(names) == current
    assert parse_data_file_name(rollup_file_name(5)) is None  # never a data file of the table


def test_day_piece_names_follow_the_rollups_of_their_hours() -> None:
    day = datetime(2026, 11, 27, tzinfo=UTC)
    rollups = {day + timedelta(hours=h): f"rollup-{h}.snappy.parquet" for h in range(24) if h != 3}
    before = day_piece_names(rollups)
    assert set(before) == set(rollups)
    assert all(is_day_piece(head) and is_day_piece(tail) for head, tail in before.values())
    changed = day + timedelta(hours=10)
    after = day_piece_names({**rollups, changed: "rollup-99.snappy.parquet"})
    # Heads from hour 10 on and tails up to hour 10 sum hour 10: their names change, no other does.
    for hour, (head, tail) in before.items():
        assert (after[hour][0] != head) == (hour >= changed), hour
        assert (after[hour][1] != tail) == (hour <= changed), hour
    # An hour without a rollup counts too: one that gets one later changes the names that span it.
    filled = day_piece_names({**rollups, day + timedelta(hours=3): "rollup-3.snappy.parquet"})
    assert filled[day + timedelta(hours=2)][0] == before[day + timedelta(hours=2)][0]
    assert filled[day + timedelta(hours=4)][0] != before[day + timedelta(hours=4)][0]
    # Another day's pieces have other names even over the same rollup names.
    other = day_piece_names({hour + timedelta(days=1): name for hour, name in rollups.items()})
    assert not {n for pair in other.values() for n in pair} & {n for pair in before.values() for n in pair}


def test_listing_sorts_files_into_covered_uncovered_rollup_and_current_day_pieces(tmp_path: Path) -> None:
    table = tmp_path / "coverage"
    nine, ten = table / "dt=2026-11-28" / "hr=09", table / "dt=2026-11-28" / "hr=10"
    day = datetime(2026, 11, 28, tzinfo=UTC)
    names = day_piece_names({day + timedelta(hours=9): "rollup-4.snappy.parquet",
                             day + timedelta(hours=10): None})
    head_nine, tail_nine = names[day + timedelta(hours=9)]
    touch(nine, "compacted-4.snappy.parquet", "rollup-4.snappy.parquet", "batch-5.snappy.parquet", head_nine,
          tail_nine.replace(tail_nine[8:24], "0" * 16))  # a tail of other rollups: stale
    touch(ten, "batch-6.snappy.parquet", names[day + timedelta(hours=10)][0])
    partitions = LiveFiles().partitions(table)
    assert [(p.files, p.rollup) for p in partitions] == [
        (("compacted-4.snappy.parquet", "batch-5.snappy.parquet"), "rollup-4.snappy.parquet"),
        (("batch-6.snappy.parquet",), None)]
    assert partitions[0].covered_paths == [nine / "compacted-4.snappy.parquet"]
    assert partitions[0].uncovered_paths == [nine / "batch-5.snappy.parquet"]
    assert partitions[0].rollup_paths == [nine / "rollup-4.snappy.parquet"]
    assert (partitions[1].covered_paths, partitions[1].uncovered_paths) == ([], [ten / "batch-6.snappy.parquet"])
    assert sorted((p.head, p.hour.hour, p.path.name) for p in current_day_pieces(partitions)) == [
        (True, 9, head_nine), (True, 10, names[day + timedelta(hours=10)][0])]
