"""Demo mode: one replay at a time, running in the background of the console process.

The console holds one ReplayManager per process, so a replay survives page changes and browser
reloads and every session sees the same one. Each replay is recorded in
$SIGNAL_HOME/demo/replays.jsonl (a line at start, a line at the end; the last line wins), so time
charts can annotate replays after a restart. Uploaded CSVs are kept under $SIGNAL_HOME/uploads/: the
newest KEEP_UPLOADS, and every one a replay is reading (it holds a shared lock on the file for the whole
replay, every pass of a loop included, so the clean-up of another session or console process skips it).
"""

# No `from __future__ import annotations`: this module defines a function of that name.
import contextlib
import fcntl
import json
import logging
import os
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Generator, Iterable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from core.backends.base import Stream
from core.errors import ConfigError, ConflictError, InputError
from core.replay import ReplayOptions, ReplayProgress, iter_rows, new_replay_id, open_input, replay

log = logging.getLogger(__name__)

KEEP_UPLOADS = 10
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
# Files the replays of this process read (resolved paths, counted): flock alone would not do within one
# process on file systems that emulate it with per-process POSIX locks (NFS).
_IN_USE: Counter[Path] = Counter()
_IN_USE_LOCK = threading.Lock()


@dataclass(frozen=True)
class ReplayRecord:
    """One replay as the history shows it; ended_at is None while running or if its process died."""

    replay_id: str
    source_name: str
    started_by: str
    started_at: datetime
    ended_at: datetime | None
    sent: int
    rejected: int
    failed: int
    stopped: bool
    time_mode: str
    rate: float | None
    error: str | None = None


def _record_to_line(record: ReplayRecord) -> str:
    data = asdict(record)
    data["started_at"] = record.started_at.astimezone(UTC).isoformat()
    data["ended_at"] = record.ended_at.astimezone(UTC).isoformat() if record.ended_at else None
    return json.dumps(data) + "\n"


def _record_from_line(line: str) -> ReplayRecord | None:
    try:
        data = json.loads(line)
        data["started_at"] = datetime.fromisoformat(data["started_at"])
        data["ended_at"] = datetime.fromisoformat(data["ended_at"]) if data["ended_at"] else None
        return ReplayRecord(**data)
    except (ValueError, KeyError, TypeError):
        # A process killed mid-write leaves a partial last line; the other replays stay readable.
        return None


def _check_csv(path: Path) -> None:
    """Raise InputError when the CSV cannot be read, is empty or has the wrong header."""
    rows = iter_rows(path)
    # Started, the generator owns the file and closes it in close(); unstarted, it would leak it.
    next(rows, None)
    if isinstance(rows, Generator):
        rows.close()


class _InUse:
    """Marks a CSV as read by a replay until closed: a shared lock on the file, and an entry in _IN_USE."""

    def __init__(self, path: Path) -> None:
        handle: BinaryIO = open_input(path, "rb")
        with contextlib.ExitStack() as on_failure:  # closed unless the file is ours to keep open
            on_failure.callback(handle.close)
            fcntl.flock(handle, fcntl.LOCK_SH)  # waits for a clean-up deleting it right now
            if os.fstat(handle.fileno()).st_nlink == 0:
                raise InputError(f"{path}: no such file (an older upload, removed meanwhile)",
                                 next_step="upload it again")
            on_failure.pop_all()
        self._handle: BinaryIO | None = handle
        self._key = path.resolve()
        with _IN_USE_LOCK:
            _IN_USE[self._key] += 1

    def close(self) -> None:
        """Release the file (once)."""
        if self._handle is None:
            return
        with _IN_USE_LOCK:
            _IN_USE[self._key] -= 1
            if _IN_USE[self._key] <= 0:
                del _IN_USE[self._key]
        self._handle.close()  # releases the lock
        self._handle = None


def _copy(progress: ReplayProgress) -> ReplayProgress:
    return replace(progress, rejections=list(progress.rejections), failures=dict(progress.failures),
                   nulled=dict(progress.nulled))


class ReplayManager:
    """Runs at most one replay at a time in a background thread and records every replay."""

    def __init__(self, stream: Stream, home: Path) -> None:
        self._stream = stream
        self._path = home / "demo" / "replays.jsonl"
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._progress: ReplayProgress | None = None
        self._record: ReplayRecord | None = None
        self._error: str | None = None

    def start(self, path: Path, options: ReplayOptions, *, started_by: str, source_name: str) -> ReplayProgress:
        """Start replaying a CSV in the background; return its first progress.

        Raises ConflictError while another replay runs, InputError for an unreadable, empty or
        wrongly headed CSV, both before anything is sent.
        """
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                assert self._record is not None
                current = self._record
                raise ConflictError(
                    f"replay {current.replay_id} of {current.source_name} is already running, started by "
                    f"{current.started_by} at {current.started_at:%Y-%m-%d %H:%M:%S} UTC",
                    next_step="stop it first",
                )
            in_use = _InUse(path)  # first: the clean-up of older uploads skips the file from now on
            with contextlib.ExitStack() as on_failure:  # releases the file unless the replay thread took it
                on_failure.callback(in_use.close)
                _check_csv(path)
                replay_id = new_replay_id()
                record = ReplayRecord(
                    replay_id=replay_id, source_name=source_name, started_by=started_by,
                    started_at=datetime.now(UTC), ended_at=None, sent=0, rejected=0, failed=0, stopped=False,
                    time_mode=options.time_mode, rate=options.rate,
                )
                stop = threading.Event()
                progress = ReplayProgress(replay_id=replay_id, path=str(path))
                thread = threading.Thread(
                    target=self._run, args=(path, options, stop, record, in_use), name=f"replay-{replay_id}",
                    daemon=True,
                )
                self._append(record)
                thread.start()
                on_failure.pop_all()
            self._stop, self._progress, self._record, self._error = stop, progress, record, None
            self._thread = thread
            return _copy(progress)

    def current(self) -> ReplayProgress | None:
        """Return a snapshot of the running replay's progress, or of the last one this process ran."""
        with self._lock:
            return _copy(self._progress) if self._progress else None

    def running(self) -> bool:
        """Return True while a replay started by this process is running."""
        with self._lock:
            return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> ReplayProgress | None:
        """Ask the running replay to stop and wait up to `timeout` seconds; return its progress."""
        with self._lock:
            thread, stop = self._thread, self._stop
        if thread is not None:
            stop.set()
            # Not under the lock: the replay thread needs it to report its last progress.
            thread.join(timeout)
        return self.current()

    def last_error(self) -> str | None:
        """Return why the last replay failed, if it did."""
        with self._lock:
            return self._error

    def history(self, limit: int = 50) -> list[ReplayRecord]:
        """Return recorded replays, newest first; the running one with its live counts."""
        folded: dict[str, ReplayRecord] = {}
        try:
            with self._path.open(encoding="utf-8") as handle:
                for line in handle:
                    record = _record_from_line(line)
                    if record is not None:
                        folded[record.replay_id] = record
        except FileNotFoundError:
            pass
        with self._lock:
            live = self._progress if self._thread is not None and self._thread.is_alive() else None
        if live is not None and live.replay_id in folded:
            folded[live.replay_id] = replace(folded[live.replay_id], sent=live.sent, rejected=live.rejected,
                                             failed=live.failed)
        records = sorted(folded.values(), key=lambda r: (r.started_at, r.replay_id), reverse=True)
        return records[:limit]

    def _on_progress(self, progress: ReplayProgress) -> None:
        snapshot = _copy(progress)
        with self._lock:
            self._progress = snapshot

    def _run(self, path: Path, options: ReplayOptions, stop: threading.Event, record: ReplayRecord,
             in_use: _InUse) -> None:
        error: str | None = None
        final: ReplayProgress | None = None
        try:
            final = replay(path, self._stream, options, progress=self._on_progress, stop=stop,
                           replay_id=record.replay_id)
        except Exception as exc:
            # Nobody waits on this thread: keep the error for the page instead of losing it.
            log.exception("replay %s failed", record.replay_id)
            error = f"{type(exc).__name__}: {exc}"
        finally:
            in_use.close()
        with self._lock:
            if final is None:
                last = self._progress or ReplayProgress(replay_id=record.replay_id, path=str(path))
                final = replace(_copy(last), done=True, stopped=stop.is_set())
            progress = self._progress = _copy(final)
        ended = replace(record, ended_at=datetime.now(UTC), sent=progress.sent, rejected=progress.rejected,
                        failed=progress.failed, stopped=progress.stopped, error=error)
        try:
            self._append(ended)
        except ConfigError as exc:
            log.error("%s", exc)
            error = error or str(exc)
        with self._lock:
            self._error = error

    def _append(self, record: ReplayRecord) -> None:
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            with self._path.open("a", encoding="utf-8") as handle:
                # Another console process may share SIGNAL_HOME: keep each line whole.
                fcntl.flock(handle, fcntl.LOCK_EX)
                handle.write(_record_to_line(record))
                handle.flush()
        except OSError as exc:
            raise ConfigError(f"{self._path}: cannot record the replay ({exc.strerror or exc})",
                              next_step="check that SIGNAL_HOME is writable") from exc


def _safe_name(filename: str) -> str:
    base = re.split(r"[/\\]", filename)[-1]
    stem = base[:-4] if base.lower().endswith(".csv") else base
    # Leading dots would make hidden files or "..": drop them with the unsafe characters.
    stem = _UNSAFE.sub("_", stem).lstrip("._-")[:80]
    return f"{stem or 'upload'}.csv"


def save_upload(data: bytes, filename: str, home: Path, limit_mb: float, *, keep: Iterable[Path] = ()) -> Path:
    """Store an uploaded CSV under home/uploads and return its path; keep the newest 10 uploads.

    Older uploads are deleted, except those `keep` names and those a replay is reading (in this process
    or in another one sharing the folder).
    """
    size_mb = len(data) / (1024 * 1024)
    if not data:
        raise InputError(f"{filename}: the file is empty", next_step="upload a CSV with a header and rows")
    if size_mb > limit_mb:
        raise InputError(f"{filename}: {size_mb:.1f} MB is larger than the {limit_mb:g} MB limit",
                         next_step="upload a smaller file or raise SIGNAL_UPLOAD_LIMIT_MB")
    folder = home / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{uuid.uuid4().hex}-{_safe_name(filename)}"
    temporary = folder / f".{target.name}.tmp"
    # Whole files only: a replay started meanwhile never reads half an upload.
    temporary.write_bytes(data)
    now = time.time_ns()
    # File times can be coarser than the gap between two uploads; set a fine one to order them.
    os.utime(temporary, ns=(now, now))
    os.replace(temporary, target)
    _prune_uploads(folder, {target, *keep})
    return target


def _prune_uploads(folder: Path, keep: set[Path]) -> None:
    uploads = sorted(
        (p for p in folder.glob("*.csv") if not p.name.startswith(".")),
        key=lambda p: (p.stat().st_mtime_ns, p.name),
        reverse=True,
    )
    kept = {p.resolve() for p in keep}
    for old in uploads[KEEP_UPLOADS:]:
        if old.resolve() not in kept:
            _delete_unless_in_use(old)


def _delete_unless_in_use(path: Path) -> None:
    """Delete an upload unless a replay reads it (it holds a shared lock on it, or is one of this process's)."""
    try:
        handle = path.open("rb")
    except OSError:
        return  # gone already, or unreadable: nothing to check the lock with, so left alone
    with handle:
        try:
            # Exclusive while deleting: a replay starting now waits, then sees the file is gone.
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # a replay, maybe of another console process, reads it
        with _IN_USE_LOCK:
            if path.resolve() in _IN_USE:
                return
            path.unlink(missing_ok=True)


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def replay_marks(history: Iterable[ReplayRecord], since: datetime, until: datetime) -> list[tuple[datetime, str]]:
    """Return (time, label) marks for replays that started or ended within [since, until], oldest first."""
    since, until = _utc(since), _utc(until)
    marks: list[tuple[datetime, str]] = []
    for record in history:
        if since <= record.started_at <= until:
            pace = f"{record.rate:g}/s" if record.rate is not None else "max rate"
            marks.append((record.started_at, f"replay {record.replay_id} started ({record.source_name}, {pace})"))
        if record.ended_at is not None and since <= record.ended_at <= until:
            outcome = "failed" if record.error else "stopped" if record.stopped else "finished"
            marks.append((record.ended_at, f"replay {record.replay_id} {outcome}"))
    return sorted(marks, key=lambda mark: mark[0])
