"""The live data files of the local lake's tables, listed per dt/hr partition folder.

The rule of which files count is core.lake_layout.live_file_names (and current_rollup_name for a
table's hourly rollup); this module applies it to the folders on disk. A folder's answer is kept
until the folder changes: adding, renaming or deleting a file changes the folder's mtime, so a
query re-lists only the partitions written since the last one.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from core.lake_layout import (
    DAY_HEAD,
    current_rollup_name,
    day_piece_names,
    is_day_piece,
    live_file_names,
    partition_hour,
)

# A folder changed within this window may change again within the same mtime tick (file systems
# update mtimes at a coarse clock), so its listing is not kept: the next call lists it again.
SETTLING_NS = 2_000_000_000


@dataclass(frozen=True)
class PartitionFiles:
    """A partition folder's live files (names, in batch order), the current rollup of the first one,
    and the day pieces in the folder (current or not: that depends on other partitions)."""

    files: tuple[str, ...]
    rollup: str | None = None
    day_pieces: tuple[str, ...] = ()


@dataclass(frozen=True)
class Partition:
    """One dt/hr partition folder of a table, its live files and the current rollup (if any)."""

    name: str
    folder: Path
    files: tuple[str, ...]
    rollup: str | None = None
    day_pieces: tuple[str, ...] = ()

    @property
    def paths(self) -> list[Path]:
        """Return the live files' paths."""
        return [self.folder / f for f in self.files]

    @property
    def covered_paths(self) -> list[Path]:
        """Return the live files the current rollup sums: the compacted file, or none without a rollup."""
        return [self.folder / self.files[0]] if self.rollup is not None else []

    @property
    def uncovered_paths(self) -> list[Path]:
        """Return the live files no current rollup sums."""
        return [self.folder / f for f in (self.files[1:] if self.rollup is not None else self.files)]

    @property
    def rollup_paths(self) -> list[Path]:
        """Return the current rollup's path, or nothing."""
        return [self.folder / self.rollup] if self.rollup is not None else []


def _subfolders(folder: Path, key: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as entries:
            found = [e for e in entries if e.name.startswith(f"{key}=") and e.is_dir()]
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(found, key=lambda e: e.name)


class LiveFiles:
    """Live files of lake tables, each partition re-listed only when its folder changed."""

    def __init__(self) -> None:
        self._known: dict[str, tuple[int, PartitionFiles]] = {}
        self._lock = threading.Lock()

    def listing(self, folder: Path) -> PartitionFiles:
        """Return the live files and current rollup of one partition folder (none when it is gone)."""
        key = str(folder)
        try:
            mtime_ns = folder.stat().st_mtime_ns
        except FileNotFoundError:
            return PartitionFiles(())
        with self._lock:
            known = self._known.get(key)
        if known is not None and known[0] == mtime_ns:
            return known[1]
        try:
            with os.scandir(folder) as entries:
                names = [e.name for e in entries]
        except FileNotFoundError:
            return PartitionFiles(())
        # One listing decides both, so a rollup is only ever paired with the compacted file it sums.
        found = PartitionFiles(tuple(live_file_names(names)), current_rollup_name(names),
                               tuple(sorted(n for n in names if is_day_piece(n))))
        if time.time_ns() - mtime_ns > SETTLING_NS:
            with self._lock:
                self._known[key] = (mtime_ns, found)
        return found

    def partition_files(self, folder: Path) -> tuple[str, ...]:
        """Return the live file names of one partition folder (empty when it has none or is gone)."""
        return self.listing(folder).files

    def partitions(self, table_folder: Path) -> list[Partition]:
        """Return the table's partitions that hold at least one live file, oldest first."""
        found: list[Partition] = []
        for dt in _subfolders(table_folder, "dt"):
            for hr in _subfolders(Path(dt.path), "hr"):
                folder = Path(hr.path)
                listed = self.listing(folder)
                if listed.files:
                    found.append(Partition(f"{dt.name}/{hr.name}", folder, listed.files, listed.rollup,
                                           listed.day_pieces))
        return found

    def files(self, table_folder: Path) -> list[Path]:
        """Return every live file of a table, oldest partition first."""
        return [path for partition in self.partitions(table_folder) for path in partition.paths]


@dataclass(frozen=True)
class DayPiece:
    """A current day piece: a head (hours 0 .. hour of its day) or a tail (hours hour .. 23)."""

    head: bool
    hour: datetime
    path: Path


def current_day_pieces(partitions: list[Partition]) -> list[DayPiece]:
    """Return the day pieces that sum exactly the current rollups of their hours (core.lake_layout)."""
    hours = {start: p for p in partitions if (start := partition_hour(p.name)) is not None}
    expected = day_piece_names({start: p.rollup for start, p in hours.items()})
    found: list[DayPiece] = []
    for start, partition in hours.items():
        for name in partition.day_pieces:
            if name in expected[start]:
                found.append(DayPiece(name.startswith(DAY_HEAD), start, partition.folder / name))
    return found
