"""What the fault tests share: a disk that fills up, the CLI, the stream read independently, the lake checked
against the pandas reference, and console pages opened with AppTest."""

from __future__ import annotations

import errno
import io
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from deltalake import DeltaTable
from streamlit.testing.v1 import AppTest

from core.lake_layout import COVERAGE_GRID, GPS_PRECISION_BY_PROVIDER, SIGNAL_STRENGTH_BY_OPERATOR, STATUS_COUNT
from core.records import SOURCE_FIELDS
from tests import reference
from tests.conftest import PROJECT_ROOT

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


# --- the CLI and the sample ----------------------------------------------------------------------


def cli(*args: str, env: dict[str, str], check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run `python -m core.cli ...` as a user does and return the finished process."""
    done = subprocess.run([sys.executable, "-m", "core.cli", *args], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"cli {args} exited {done.returncode}: {done.stderr[-3000:]}")
    return done


def make_csv(path: Path, rows: int, seed: int) -> Path:
    """Write a generated sample CSV of `rows` rows (a seed the rest of the suite does not use)."""
    subprocess.run([sys.executable, str(PROJECT_ROOT / "data" / "generate_sample.py"), "--rows", str(rows),
                    "--seed", str(seed), "--out", str(path)], check=True, capture_output=True)
    return path


def pipeline_env(home: Path, **settings: str) -> dict[str, str]:
    """Return the environment of a CLI run on `home`: this process's, without SIGNAL_* of its own."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("SIGNAL_")}
    return {**base, "SIGNAL_HOME": str(home), "SIGNAL_TRIGGER_SECONDS": "1", **settings}


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


# --- the lake against the reference --------------------------------------------------------------


def lake_matches_reference(lake: Path, rows: pd.DataFrame) -> None:
    """Read every aggregation table with deltalake alone and compare it with pandas over `rows`."""
    signal = DeltaTable(str(lake / SIGNAL_STRENGTH_BY_OPERATOR.prefix)).to_pandas()
    signal["operator"] = signal["operator"].str.lower()
    got = signal.groupby("operator").agg(signal_sum=("signal_sum", "sum"), samples=("signal_count", "sum"))
    got["avg_signal"] = got["signal_sum"] / got["samples"].where(got["samples"] > 0)
    want = reference.signal_by_operator(rows).set_index("operator")
    assert sorted(got.index) == sorted(want.index)
    assert (got["samples"].loc[want.index] == want["samples"]).all()
    assert (got["avg_signal"].loc[want.index] - want["avg_signal"]).abs().max() < 1e-9

    status = DeltaTable(str(lake / STATUS_COUNT.prefix)).to_pandas()
    got_status = status.groupby(["postal_code", "status", "description"])["record_count"].sum()
    want_status = reference.status_by_postal_code(rows).set_index(["postal_code", "status", "description"])["records"]
    assert got_status.sort_index().to_dict() == want_status.sort_index().to_dict()

    gps = DeltaTable(str(lake / GPS_PRECISION_BY_PROVIDER.prefix)).to_pandas()
    got_gps = gps.groupby("provider")["precision_count"].sum()
    want_gps = reference.gps_by_provider(rows).set_index("provider")["samples"]
    assert got_gps.sort_index().to_dict() == want_gps.sort_index().to_dict()

    grid = DeltaTable(str(lake / COVERAGE_GRID.prefix)).to_pandas()
    lat, long = (pd.to_numeric(rows[c].str.strip(), errors="coerce") for c in ("lat", "long"))
    assert int(grid["record_count"].sum()) == int((lat.between(-90, 90) & long.between(-180, 180)).sum())


# --- the console ---------------------------------------------------------------------------------


def open_page(page: str | None = None, **query: str) -> AppTest:
    """Open the console (Home.py) as a browser would, then switch to `page`."""
    at = AppTest.from_file(str(PROJECT_ROOT / "Home.py"), default_timeout=60)
    for key, value in query.items():
        at.query_params[key] = value
    at.run()
    if page:
        at.switch_page(page).run()
    return at


def page_text(at: AppTest) -> str:
    """Return every message, caption and heading the page shows, one per line."""
    parts = [e.value for kind in ("markdown", "caption", "info", "warning", "error", "success", "subheader", "title")
             for e in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)
