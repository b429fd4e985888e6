"""What the fault tests share: a disk that fills up and the stream read independently (the CLI, the lake
against the reference and the pages are in tests/harness.py)."""

from __future__ import annotations

import errno
import io
import json
import os
import stat
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from core.records import SOURCE_FIELDS

# --- a full disk ---------------------------------------------------------------------------------


class DiskFull:
    """The disk holding `folder` has `free` bytes left; past them it refuses with ENOSPC, as the OS does.

    Injected at the OS edge of Python's file I/O, for files under `folder` only: `fail="write"` makes the
    file objects io.open returns (Path.open, and os.fdopen, which core/durable.py writes through) write
    what still fits and then raise; `fail="fsync"` makes os.fsync raise once the file's size no longer
    fits (ext4's delayed allocation reports a full disk there). Native writers (pyarrow's C++ streams,
    delta-rs) bypass Python's file objects; the fsync that core/durable.py adds after them does not.
    """

    def __init__(self, folder: Path, *, free: int = 0, fail: str = "write") -> None:
        if fail not in ("write", "fsync"):
            raise ValueError(f"fail must be write or fsync, not {fail!r}")
        self.folder = folder.resolve()
        self.free = free
        self.fail = fail
        self.used = 0
        self.refusals = 0

    def install(self, monkeypatch: pytest.MonkeyPatch) -> DiskFull:
        """Patch io.open and os.fsync for the rest of the test; return self."""
        real_open, real_fsync = io.open, os.fsync

        def open_(file: Any, *args: Any, **kwargs: Any) -> Any:
            handle = real_open(file, *args, **kwargs)
            if self.fail == "write" and _writable(handle) and self.holds(handle.fileno()):
                return _FillingFile(handle, self)
            return handle

        def fsync(descriptor: int) -> None:
            if self.fail == "fsync" and self.holds(descriptor):
                info = os.fstat(descriptor)
                if not stat.S_ISDIR(info.st_mode):
                    if self.used + info.st_size > self.free:
                        self.refuse()
                    self.used += info.st_size
            real_fsync(descriptor)

        monkeypatch.setattr(io, "open", open_)
        monkeypatch.setattr(os, "fsync", fsync)
        return self

    def holds(self, descriptor: int) -> bool:
        """Return whether the open file is on this disk (under the folder)."""
        try:
            path = Path(os.readlink(f"/proc/self/fd/{descriptor}"))
        except OSError:
            return False
        return path.is_relative_to(self.folder)

    def refuse(self) -> None:
        """Raise the OS's error for a full disk."""
        self.refusals += 1
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _writable(handle: Any) -> bool:
    try:
        return bool(handle.writable())
    except (OSError, ValueError, AttributeError):
        return False


class _FillingFile:
    """A file object on a DiskFull: writes what still fits, then raises ENOSPC (a torn write, as a real one)."""

    def __init__(self, handle: Any, disk: DiskFull) -> None:
        self._handle = handle
        self._disk = disk

    def write(self, data: Any) -> int:
        room = self._disk.free - self._disk.used
        if len(data) <= room:
            self._disk.used += len(data)
            return int(self._handle.write(data))
        if room > 0:
            self._handle.write(data[:room])
        self._handle.flush()
        self._disk.used = self._disk.free
        self._disk.refuse()
        return 0  # not reached

    def __enter__(self) -> _FillingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)


def temporaries(folder: Path) -> list[str]:
    """Return the hidden temporary files core/durable.py writes before its rename, anywhere under folder."""
    return sorted(p.name for p in folder.rglob(".*.tmp")) if folder.exists() else []


# --- the stream, read without the project's code -------------------------------------------------


def stream_files(folder: Path) -> list[Path]:
    """Return the stream files a reader sees: `*.jsonl`, not hidden (the job's file source skips dot files)."""
    return sorted(p for p in folder.glob("*.jsonl") if not p.name.startswith((".", "_")))


def read_stream(folder: Path, files: list[Path] | None = None) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Return the records of the stream files (all of the folder's by default; source fields as text) and
    their envelopes.

    Asserts what a whole file is: every line ends with a newline and is one JSON envelope whose `data`
    is one JSON object, and the file holds as many lines as its name says (`...-n<count>.jsonl`).
    """
    envelopes: list[dict[str, Any]] = []
    for path in stream_files(folder) if files is None else files:
        raw = path.read_bytes()
        assert raw.endswith(b"\n"), f"{path.name}: its last line is not whole"
        lines = raw.decode("utf-8").splitlines()
        declared = path.stem.rsplit("-n", 1)[-1]
        assert declared.isdigit() and len(lines) == int(declared), f"{path.name}: {len(lines)} lines"
        for number, line in enumerate(lines, 1):
            try:
                envelope = json.loads(line)
                envelope["record"] = json.loads(envelope["data"])
            except (ValueError, KeyError, TypeError) as error:
                raise AssertionError(f"{path.name} line {number} is not a whole record: {error}") from None
            envelopes.append(envelope)
    return source_rows([e["record"] for e in envelopes]), envelopes


def source_rows(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Return records' source fields as text, the shape tests/reference.py reads a CSV into."""
    return pd.DataFrame([{field: str(r.get(field, "")) for field in SOURCE_FIELDS} for r in records],
                        columns=list(SOURCE_FIELDS), dtype=str)
