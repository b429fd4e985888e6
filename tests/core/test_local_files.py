"""Which files of a partition readers read (the compacted layout's rule), and listing them on disk."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.backends import local_files
from core.backends.local_files import LiveFiles
from core.lake_layout import (
    DataFileName,
    batch_file_name,
    compacted_file_name,
    live_file_names,
    parse_data_file_name,
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
