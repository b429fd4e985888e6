"""Durable local file writes: a file the product later trusts is there whole, or as it was, even after a crash.

A rename alone makes a write atomic for readers, not durable: after a power loss the new name can
point at a file whose data never reached the disk (a zero-length batch, a truncated catalog). So the
data is written to a hidden temporary file in the same folder, fsync'ed, renamed over the target,
and the folder is fsync'ed so the rename itself is on disk. Some inputs are deleted right after such
a write (the job deletes stream files once their batch commits), so this ordering is what keeps a
crash from losing them.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path


def temporary_path(path: Path) -> Path:
    """Return a fresh hidden temporary name next to path (readers skip dot files)."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")


def _fsync(path: Path) -> None:
    """Flush a file's data, or a folder's entries (creations, renames, deletions), to disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fsync_folder(folder: Path) -> None:
    """Flush a folder's entries (creations, renames, deletions) to disk."""
    _fsync(folder)


@contextlib.contextmanager
def _replacing(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write; once the block is done, put it at path and flush the folder.

    A block that raises (an interrupt included) leaves the target as it was and no temporary file.
    """
    temporary = temporary_path(path)
    with contextlib.ExitStack() as unless_replaced:
        unless_replaced.callback(temporary.unlink, missing_ok=True)
        yield temporary
        os.replace(temporary, path)
        fsync_folder(path.parent)
        unless_replaced.pop_all()


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Have write(temporary) write the file, then put it at path durably; a failed write changes nothing.

    For writers that need a path of their own (pyarrow's file system); plain bytes go through
    write_bytes_atomically, which fsyncs through the descriptor it wrote with.
    """
    with _replacing(path) as temporary:
        write(temporary)
        _fsync(temporary)


def write_bytes_atomically(path: Path, data: bytes) -> None:
    """Write data at path durably: readers and a crash see the old file or the new one, never a part."""
    with _replacing(path) as temporary:
        # O_EXCL: the name is ours alone. 0o666 before the umask: the permissions a plain open() gives.
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())


def write_text_atomically(path: Path, text: str) -> None:
    """Write UTF-8 text at path durably (see write_bytes_atomically)."""
    write_bytes_atomically(path, text.encode("utf-8"))
