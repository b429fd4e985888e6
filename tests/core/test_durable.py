"""Durable local writes: fsync'ed file, rename, fsync'ed folder; a failed write changes nothing."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from core import durable
from core.backends.local_catalog import LocalCatalog, LocalCrawlers
from core.backends.local_stream import LocalStream
from core.batching import encode
from core.durable import write_atomically, write_bytes_atomically
from core.lake_layout import SIGNAL_STRENGTH_BY_OPERATOR
from glue_job.lake_files import LakeFiles

Synced = list[tuple[str, int]]


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> Synced:
    """Record what each os.fsync flushed: ("file" | "folder", its inode), in order."""
    calls: Synced = []
    real_fsync = os.fsync

    def recording_fsync(descriptor: int) -> None:
        info = os.fstat(descriptor)
        calls.append(("folder" if stat.S_ISDIR(info.st_mode) else "file", info.st_ino))
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    return calls


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(".tmp"))


def written_durably(synced: Synced, final: Path) -> bool:
    """Whether the file now at `final` was fsync'ed (as its temporary: a rename keeps the inode), then its folder."""
    mine = ("file", final.stat().st_ino)
    return mine in synced and ("folder", final.parent.stat().st_ino) in synced[synced.index(mine):]


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_the_data_and_then_the_rename_reach_the_disk(tmp_path: Path, synced: Synced) -> None:
    target = tmp_path / "state.json"
    write_bytes_atomically(target, b'{"v": 1}')

    assert target.read_bytes() == b'{"v": 1}'
    assert synced == [("file", target.stat().st_ino), ("folder", tmp_path.stat().st_ino)]
    assert leftovers(tmp_path) == []
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~current_umask()  # as a plain open() makes it


def test_a_writer_with_its_own_path_is_fsynced_too(tmp_path: Path, synced: Synced) -> None:
    write_atomically(tmp_path / "doc.json", lambda temporary: temporary.write_text("{}"))
    assert written_durably(synced, tmp_path / "doc.json")
    assert (tmp_path / "doc.json").read_text() == "{}"


@pytest.mark.parametrize("fail_at", ["write", "fsync"])
def test_a_failed_write_leaves_the_target_unchanged_and_no_temporary(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail_at: str) -> None:
    target = tmp_path / "catalog.json"
    write_bytes_atomically(target, b"old")

    def disk_full(*_args: object) -> None:
        raise OSError(28, "No space left on device")

    if fail_at == "fsync":
        monkeypatch.setattr(os, "fsync", disk_full)
        with pytest.raises(OSError, match="No space"):
            write_bytes_atomically(target, b"new")
        with pytest.raises(OSError, match="No space"):
            write_bytes_atomically(tmp_path / "fresh.json", b"new")
    else:
        def half_then_fail(temporary: Path) -> None:
            temporary.write_bytes(b"ne")
            disk_full()

        with pytest.raises(OSError, match="No space"):
            write_atomically(target, half_then_fail)
        with pytest.raises(OSError, match="No space"):
            write_atomically(tmp_path / "fresh.json", half_then_fail)

    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["catalog.json"]


def _stream_batch(home: Path) -> Path:
    stream = LocalStream(home / "stream" / "s", "s")
    assert stream.put_records([{"hour": "10:00:00"}]).sent == 1
    return next((home / "stream" / "s").glob("*.jsonl"))


def _catalog(home: Path) -> Path:
    catalog = LocalCatalog(home / "catalog", "db", home / "lake")
    catalog.register(SIGNAL_STRENGTH_BY_OPERATOR, [("operator", "string")], ["dt=2026-11-28/hr=10"])
    return catalog.path


def _crawler_state(home: Path) -> Path:
    crawlers = LocalCrawlers(LocalCatalog(home / "catalog", "db", home / "lake"), home / "catalog" / "crawlers")
    assert crawlers.run(SIGNAL_STRENGTH_BY_OPERATOR.crawler).last_result == "SUCCEEDED"
    return crawlers._state_path(SIGNAL_STRENGTH_BY_OPERATOR.crawler)


def _job_status(home: Path) -> Path:
    LakeFiles(str(home / "lake")).write_json("_job/status.json", {"state": "RUNNING"})
    return home / "lake" / "_job" / "status.json"


WRITERS: dict[str, Callable[[Path], Path]] = {
    "stream batch": _stream_batch, "catalog": _catalog, "crawler state": _crawler_state, "job status": _job_status,
}


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_every_trusted_local_file_is_written_durably(name: str, tmp_path: Path, synced: Synced) -> None:
    final = WRITERS[name](tmp_path)
    assert written_durably(synced, final), synced
    assert leftovers(tmp_path) == []


def test_a_stream_batch_that_cannot_reach_the_disk_is_not_reported_sent(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def disk_full(*_args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(durable.os, "fsync", disk_full)
    results = LocalStream(tmp_path / "s", "s")._write_batch([encode({"hour": "10:00:00"})])
    assert [r.code if r else None for r in results] == ["LocalWriteFailed"]
    assert [p.name for p in (tmp_path / "s").iterdir()] == []  # no batch file, no temporary
