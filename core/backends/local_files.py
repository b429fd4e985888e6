"""The live data files of the local lake's tables, listed per dt/hr partition folder.

The rule of which files count is core.lake_layout.live_file_names; this module applies it to the
folders on disk. A folder's answer is kept until the folder changes: adding, renaming or deleting a
file changes the folder's mtime, so a query re-lists only the partitions written since the last one.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from core.lake_layout import live_file_names

# A folder changed within this window may change again within the same mtime tick (file systems
# update mtimes at a coarse clock), so its listing is not kept: the next call lists it again.
SETTLING_NS = 2_000_000_000


@dataclass(frozen=True)
class Partition:
    """One dt/hr partition folder of a table and its live files (names, in batch order)."""

    name: str
    folder: Path
    files: tuple[str, ...]

    @property
    def paths(self) -> list[Path]:
        """Return the live files' paths."""
        return [self.folder / f for f in self.files]


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
        self._known: dict[str, tuple[int, tuple[str, ...]]] = {}
        self._lock = threading.Lock()

    def partition_files(self, folder: Path) -> tuple[str, ...]:
        """Return the live file names of one partition folder (empty when it has none or is gone)."""
        key = str(folder)
        try:
            mtime_ns = folder.stat().st_mtime_ns
        except FileNotFoundError:
            return ()
        with self._lock:
            known = self._known.get(key)
        if known is not None and known[0] == mtime_ns:
            return known[1]
        try:
            with os.scandir(folder) as entries:
                files = tuple(live_file_names(e.name for e in entries))
        except FileNotFoundError:
            return ()
        if time.time_ns() - mtime_ns > SETTLING_NS:
            with self._lock:
                self._known[key] = (mtime_ns, files)
        return files

    def partitions(self, table_folder: Path) -> list[Partition]:
        """Return the table's partitions that hold at least one live file, oldest first."""
        found: list[Partition] = []
        for dt in _subfolders(table_folder, "dt"):
            for hr in _subfolders(Path(dt.path), "hr"):
                folder = Path(hr.path)
                files = self.partition_files(folder)
                if files:
                    found.append(Partition(f"{dt.name}/{hr.name}", folder, files))
        return found

    def files(self, table_folder: Path) -> list[Path]:
        """Return every live file of a table, oldest partition first."""
        return [path for partition in self.partitions(table_folder) for path in partition.paths]
