"""Demo replays in the background: one at a time, stop, progress, history on disk, errors kept, uploads."""

from __future__ import annotations

import fcntl
import json
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

# `annotations` by module: the name clashes with `from __future__ import annotations`.
from core import demo
from core.backends.local_stream import LocalStream
from core.demo import KEEP_UPLOADS, ReplayManager, ReplayRecord, save_upload
from core.domain import PutResult, StreamHealth
from core.errors import ConflictError, InputError
from core.records import SOURCE_FIELDS
from core.replay import ReplayOptions, ReplayProgress

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_CSV = PROJECT_ROOT / "data" / "mobile_logs.csv"
HEADER = ",".join(SOURCE_FIELDS)
ROW = "10:00:{s:02d},40.470261,-3.692826,12,Orange,Vodafone DE,0,STATE_IN_SERVICE,0.62,,1046.1,network,ON_FOOT,28047.0"


def write_csv(folder: Path, rows: int, name: str = "logs.csv", header: str = HEADER) -> Path:
    path = folder / name
    path.write_text("\n".join([header, *(ROW.format(s=i % 60) for i in range(rows))]) + "\n", encoding="utf-8")
    return path


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


class BrokenStream:
    """A stream whose disk is gone: every put raises until it is repaired."""

    def __init__(self) -> None:
        self.broken = True

    def put_records(self, records: Sequence[Mapping[str, Any]]) -> PutResult:
        if self.broken:
            raise OSError(28, "No space left on device")
        return PutResult(sent=len(records))

    def health(self) -> StreamHealth:
        return StreamHealth("broken", exists=True)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def manager(tmp_path: Path, home: Path) -> Iterator[ReplayManager]:
    manager = ReplayManager(LocalStream(tmp_path / "stream", "test"), home)
    yield manager
    manager.stop(timeout=5)


def test_a_second_start_while_running_is_a_conflict_naming_who_started(manager: ReplayManager) -> None:
    manager.start(SAMPLE_CSV, ReplayOptions(rate=200, loop=True), started_by="alice", source_name="sample")
    wait_until(lambda: (p := manager.current()) is not None and p.sent > 0)

    with pytest.raises(ConflictError, match=r"already running, started by alice at \d{4}-\d\d-\d\d"):
        manager.start(SAMPLE_CSV, ReplayOptions(), started_by="bob", source_name="sample")

    assert manager.running()
    assert [r.started_by for r in manager.history()] == ["alice"]


def test_stop_ends_a_looping_replay_promptly(manager: ReplayManager) -> None:
    manager.start(SAMPLE_CSV, ReplayOptions(rate=200, loop=True), started_by="alice", source_name="sample")
    wait_until(lambda: (p := manager.current()) is not None and p.sent > 0)

    started = time.monotonic()
    final = manager.stop(timeout=5)

    assert time.monotonic() - started < 2
    assert not manager.running()
    assert final is not None and final.stopped and final.done
    [record] = manager.history()
    assert record.stopped and record.ended_at is not None and record.sent == final.sent
    assert manager.last_error() is None


def test_progress_snapshots_grow_while_running_and_are_copies(manager: ReplayManager) -> None:
    first = manager.start(SAMPLE_CSV, ReplayOptions(rate=2000, loop=True), started_by="alice", source_name="sample")
    assert first.sent == 0 and not first.done

    wait_until(lambda: (p := manager.current()) is not None and p.sent > 0)
    earlier = manager.current()
    assert earlier is not None
    earlier.sent = -1  # a caller's copy, not the manager's state
    wait_until(lambda: (p := manager.current()) is not None and p.sent > 500)

    later = manager.current()
    assert later is not None and not later.done and later.total_rows == 4000
    assert manager.history()[0].sent > 0  # the running replay's live counts


@pytest.mark.parametrize(
    ("content", "message"),
    [("hour,lat\n1,2\n", "wrong header"), ("", "empty"), (None, "no such file")],
)
def test_a_bad_file_is_refused_by_start_and_nothing_runs(
    manager: ReplayManager, tmp_path: Path, home: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "bad.csv"
    if content is not None:
        path.write_text(content, encoding="utf-8")

    with pytest.raises(InputError, match=message):
        manager.start(path, ReplayOptions(), started_by="alice", source_name="bad.csv")

    assert not manager.running()
    assert manager.current() is None
    assert manager.history() == []
    assert not (tmp_path / "stream").exists()


def test_history_persists_across_managers_newest_first(tmp_path: Path, home: Path) -> None:
    stream = LocalStream(tmp_path / "stream", "test")
    first = ReplayManager(stream, home)
    for rows, who in ((3, "alice"), (5, "bob")):
        first.start(write_csv(tmp_path, rows, f"{who}.csv"), ReplayOptions(), started_by=who, source_name=who)
        wait_until(lambda: not first.running())

    history = ReplayManager(stream, home).history()

    assert [(r.started_by, r.sent, r.stopped) for r in history] == [("bob", 5, False), ("alice", 3, False)]
    assert all(r.ended_at is not None and r.ended_at >= r.started_at for r in history)
    assert history[0].started_at.tzinfo is not None
    assert history[0].time_mode == "live" and history[0].rate is None
    assert first.current() is not None and first.current().done  # type: ignore[union-attr]
    assert len(ReplayManager(stream, home).history(limit=1)) == 1


def test_a_replay_whose_process_died_is_not_running_for_a_new_manager(tmp_path: Path, home: Path) -> None:
    started = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
    line = {"replay_id": "r20260501T090000-abcdef", "source_name": "sample", "started_by": "alice",
            "started_at": started.isoformat(), "ended_at": None, "sent": 0, "rejected": 0, "failed": 0,
            "stopped": False, "time_mode": "live", "rate": 50.0}
    (home / "demo").mkdir(parents=True)
    # The second line is what a process killed mid-write leaves behind.
    (home / "demo" / "replays.jsonl").write_text(json.dumps(line) + '\n{"replay_id": "r2026', encoding="utf-8")

    manager = ReplayManager(LocalStream(tmp_path / "stream", "test"), home)

    assert not manager.running() and manager.current() is None
    [record] = manager.history()
    assert record.replay_id == line["replay_id"] and record.ended_at is None and record.started_at == started
    manager.start(write_csv(tmp_path, 2), ReplayOptions(), started_by="bob", source_name="logs.csv")
    wait_until(lambda: not manager.running())
    assert [r.started_by for r in manager.history()] == ["bob", "alice"]


def test_an_error_inside_the_replay_thread_is_kept_and_the_replay_ended(tmp_path: Path, home: Path) -> None:
    manager = ReplayManager(BrokenStream(), home)

    manager.start(write_csv(tmp_path, 3), ReplayOptions(), started_by="alice", source_name="logs.csv")
    wait_until(lambda: not manager.running())

    error = manager.last_error()
    assert error is not None and "No space left on device" in error and "OSError" in error
    progress = manager.current()
    assert progress is not None and progress.done and progress.sent == 0
    [record] = ReplayManager(BrokenStream(), home).history()
    assert record.ended_at is not None and record.error == error
    assert demo.replay_marks([record], record.started_at, record.ended_at)[-1][1].endswith("failed")


def test_a_new_start_clears_the_last_error(tmp_path: Path, home: Path) -> None:
    stream = BrokenStream()
    manager = ReplayManager(stream, home)
    manager.start(write_csv(tmp_path, 3), ReplayOptions(), started_by="alice", source_name="logs.csv")
    wait_until(lambda: not manager.running())
    assert manager.last_error() is not None
    stream.broken = False

    manager.start(write_csv(tmp_path, 3), ReplayOptions(), started_by="alice", source_name="logs.csv")
    wait_until(lambda: not manager.running())

    assert manager.last_error() is None


def test_save_upload_refuses_too_large_and_empty_files(home: Path) -> None:
    with pytest.raises(InputError, match=r"big\.csv: 2\.0 MB is larger than the 1.5 MB limit"):
        save_upload(b"x" * (2 * 1024 * 1024), "big.csv", home, 1.5)
    with pytest.raises(InputError, match="empty"):
        save_upload(b"", "nothing.csv", home, 1)
    assert not (home / "uploads").exists() or not any((home / "uploads").iterdir())


@pytest.mark.parametrize(
    ("filename", "suffix"),
    [("../../etc/pass wd.CSV", "-pass_wd.csv"), ("C:\\Users\\me\\logs (1).csv", "-logs_1_.csv"),
     ("..", "-upload.csv"), (".hidden", "-hidden.csv"), ("données.txt", "-donn_es.txt.csv")],
)
def test_save_upload_sanitises_the_name(home: Path, filename: str, suffix: str) -> None:
    path = save_upload(HEADER.encode() + b"\n", filename, home, 1)

    assert path.parent == home / "uploads"
    assert re.fullmatch(r"[0-9a-f]{32}-[A-Za-z0-9._-]+\.csv", path.name)
    assert path.name.endswith(suffix)
    assert path.read_bytes() == HEADER.encode() + b"\n"


def test_save_upload_keeps_the_newest_ten_and_the_one_in_use(home: Path) -> None:
    saved = [save_upload(f"{HEADER}\n{i}\n".encode(), f"u{i}.csv", home, 1) for i in range(12)]
    assert sorted((home / "uploads").iterdir()) == sorted(saved[2:])

    in_use = saved[2]
    newer = save_upload(b"data", "u12.csv", home, 1, keep=[in_use])

    # The newest ten, and the one in use although older.
    assert sorted((home / "uploads").iterdir()) == sorted([in_use, *saved[3:], newer])


def record(started_at: datetime, ended_at: datetime | None, *, stopped: bool = False,
           rate: float | None = 50.0) -> ReplayRecord:
    return ReplayRecord(f"r{started_at:%Y%m%dT%H%M%S}-abcdef", "sample", "alice", started_at, ended_at,
                        10, 0, 0, stopped, "live", rate)


def test_annotations_mark_starts_and_ends_within_the_range() -> None:
    t0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
    history = [
        record(t0 - timedelta(hours=2), t0 - timedelta(hours=1)),  # entirely before
        record(t0 - timedelta(minutes=5), t0 + timedelta(minutes=5), stopped=True),  # ends inside
        record(t0 + timedelta(minutes=10), t0 + timedelta(minutes=20), rate=None),  # inside
        record(t0 + timedelta(minutes=50), None),  # started inside, still running (or died)
        record(t0 + timedelta(hours=3), t0 + timedelta(hours=4)),  # after
    ]

    marks = demo.replay_marks(history, t0, t0 + timedelta(hours=1))

    assert [(t - t0, label) for t, label in marks] == [
        (timedelta(minutes=5), "replay r20260501T085500-abcdef stopped"),
        (timedelta(minutes=10), "replay r20260501T091000-abcdef started (sample, max rate)"),
        (timedelta(minutes=20), "replay r20260501T091000-abcdef finished"),
        (timedelta(minutes=50), "replay r20260501T095000-abcdef started (sample, 50/s)"),
    ]
    assert demo.replay_marks(history, t0 + timedelta(hours=5), t0 + timedelta(hours=6)) == []


def test_ten_newer_uploads_never_delete_the_csv_a_looping_replay_reads(manager: ReplayManager, home: Path) -> None:
    in_use = save_upload(write_csv(home.parent, 20).read_bytes(), "looped.csv", home, 1)
    manager.start(in_use, ReplayOptions(rate=2000, loop=True), started_by="alice", source_name="looped.csv")

    newer = [save_upload(f"{HEADER}\n{i}\n".encode(), f"u{i}.csv", home, 1) for i in range(KEEP_UPLOADS + 2)]

    assert in_use.exists()
    assert sorted((home / "uploads").iterdir()) == sorted([in_use, *newer[2:]])
    passes = (manager.current() or ReplayProgress("", "")).passes
    wait_until(lambda: (p := manager.current()) is not None and p.passes > passes + 2)  # it reads the file again
    assert manager.running() and manager.last_error() is None

    manager.stop(timeout=5)
    save_upload(b"data", "later.csv", home, 1)
    assert not in_use.exists()  # once the replay ended, the clean-up deletes it as any older upload


def test_an_upload_locked_by_another_process_replay_is_not_deleted(home: Path) -> None:
    saved = [save_upload(f"{HEADER}\n{i}\n".encode(), f"u{i}.csv", home, 1) for i in range(KEEP_UPLOADS)]
    with saved[0].open("rb") as other:  # what a replay of another console process holds on the file
        fcntl.flock(other, fcntl.LOCK_SH)
        newer = save_upload(b"data", "new.csv", home, 1)
        assert saved[0].exists()
    save_upload(b"data", "newer.csv", home, 1)
    assert not saved[0].exists()
    assert newer.exists()


def test_a_replay_of_an_upload_removed_meanwhile_is_refused(manager: ReplayManager, home: Path) -> None:
    path = save_upload(write_csv(home.parent, 3).read_bytes(), "gone.csv", home, 1)
    path.unlink()
    with pytest.raises(InputError, match="no such file"):
        manager.start(path, ReplayOptions(), started_by="alice", source_name="gone.csv")
    assert not manager.running() and not demo._IN_USE
