"""Which app writes the lake: the identity of the job *and its checkpoint*, checked before every start.

Each batch commit records (app_id, batch_id) in the Delta log (glue_job/sink.py), and a batch the
app already committed is skipped. Batch ids live in Spark's checkpoint: a new checkpoint starts
again at batch 0. So the app id is tied to the checkpoint, in a file inside it
(`checkpoints/<job>/signal_stream_app.json`), and the lake records the app that writes it
(`_job/app.json`). The job refuses to start when the lake already has commits and
- the checkpoint is missing (deleted, or never written under this job name), or
- the checkpoint lost Spark's own state while its app committed batches (a corrupt checkpoint), or
- the checkpoint belongs to another app than the one that writes the lake.
Starting anyway would re-read the stream from its start and count what the lake already holds, or
skip new batches whose ids the old app used. The operator chooses instead: restore the checkpoint,
or reset (`--reset-checkpoint`): the old checkpoint is moved aside, a new app id is written to the
lake with the reset's time and the previous app, and the job starts from the stream's starting
position.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from core.lake_layout import CHECKPOINTS_PREFIX, JOB_STATE_PREFIX, LAKE_APP_FILE, TABLES
from glue_job.lake_files import LakeFiles
from glue_job.sink import LakeTables

IDENTITY_FILE = "signal_stream_app.json"
LAKE_APP_PATH = f"{JOB_STATE_PREFIX}/{LAKE_APP_FILE}"
SPARK_METADATA = "metadata"  # written by Spark when a query first starts on a checkpoint
RESET_HISTORY = 20


class CheckpointRefused(Exception):
    """The job must not start on this checkpoint and lake; the message says why and what to do."""


@dataclass(frozen=True)
class AppIdentity:
    """The app that will write the lake in this run."""

    app_id: str
    checkpoint: str  # relative to the lake root
    reset_from: str | None = None  # the app a reset replaced


def checkpoint_folder(job_name: str) -> str:
    """Return the job's checkpoint folder, relative to the lake root."""
    return f"{CHECKPOINTS_PREFIX}/{job_name}"


def _last_commit(lake: LakeFiles, tables: LakeTables, app_id: str | None) -> str:
    newest: datetime | None = None
    for spec in TABLES:
        table = tables.table(spec)
        if table.version() > 0:
            moment = datetime.fromtimestamp(int(table.history(1)[0]["timestamp"]) / 1000, UTC)
            newest = moment if newest is None else max(newest, moment)
    writer = f"app {app_id}" if app_id else "an app of unknown id"
    when = newest.isoformat(timespec="seconds") if newest else "an unknown time"
    return f"the lake at {lake.uri} was last written by {writer} at {when}"


def _how_to_proceed(checkpoint: str) -> str:
    return (f"restore the checkpoint folder {checkpoint}/ if you have it, or start once with "
            "--reset-checkpoint (Glue: --reset_checkpoint true): the stream is then read again from its "
            "starting position, so records the lake already counted and that are still in the stream are "
            "counted again (on Kinesis, pass --starting_position with the last commit's time to avoid that)")


def resolve(lake: LakeFiles, tables: LakeTables, job_name: str, *, reset: bool = False,
            now: datetime | None = None) -> AppIdentity:
    """Return the app id for this run, after checking the checkpoint against the lake; raise
    CheckpointRefused when starting would lose or double-count data (see the module docstring)."""
    now = now or datetime.now(UTC)
    tables.refresh()
    checkpoint = checkpoint_folder(job_name)
    identity: dict[str, Any] | None = lake.read_json(f"{checkpoint}/{IDENTITY_FILE}")
    lake_app: dict[str, Any] = lake.read_json(LAKE_APP_PATH) or {}
    writer = lake_app.get("app_id")
    if reset:
        moved = lake.move_aside(checkpoint, f".reset-{now:%Y%m%dT%H%M%SZ}")
        return _new_app(lake, job_name, checkpoint, now, lake_app, reset_from=writer or "(unknown)", moved=moved)
    if identity is None or not identity.get("app_id"):
        if tables.has_commits():
            raise CheckpointRefused(
                f"refusing to start {job_name}: its checkpoint {checkpoint}/ is missing, but "
                f"{_last_commit(lake, tables, writer)}. Starting would read the stream from its start and count "
                f"again what the lake holds. To proceed, {_how_to_proceed(checkpoint)}.")
        return _new_app(lake, job_name, checkpoint, now, lake_app)
    app_id = str(identity["app_id"])
    if writer and writer != app_id and tables.has_commits():
        raise CheckpointRefused(
            f"refusing to start {job_name}: its checkpoint {checkpoint}/ belongs to app {app_id}, but "
            f"{_last_commit(lake, tables, writer)}. To proceed, {_how_to_proceed(checkpoint)}.")
    committed = [b for spec in TABLES if (b := tables.committed_batch(spec, app_id)) is not None]
    if committed and not lake.exists(f"{checkpoint}/{SPARK_METADATA}"):
        raise CheckpointRefused(
            f"refusing to start {job_name}: its checkpoint {checkpoint}/ has lost Spark's state, but its app "
            f"{app_id} committed batches up to {max(committed)}: Spark would number batches from 0 again and "
            f"the lake would skip them. To proceed, {_how_to_proceed(checkpoint)}.")
    if writer != app_id:
        lake.write_json(LAKE_APP_PATH, {**lake_app, "app_id": app_id, "job_name": job_name, "since": now.isoformat()})
    return AppIdentity(app_id, checkpoint)


def _new_app(lake: LakeFiles, job_name: str, checkpoint: str, now: datetime, lake_app: dict[str, Any], *,
             reset_from: str | None = None, moved: str | None = None) -> AppIdentity:
    app_id = f"signal-stream/{job_name}/{uuid.uuid4()}"
    lake.write_json(f"{checkpoint}/{IDENTITY_FILE}", {"app_id": app_id, "job_name": job_name,
                                                       "created_at": now.isoformat()})
    resets = list(lake_app.get("resets") or [])
    if reset_from is not None:
        resets.append({"at": now.isoformat(), "previous_app_id": reset_from, "new_app_id": app_id,
                       "old_checkpoint": moved})
    lake.write_json(LAKE_APP_PATH, {"app_id": app_id, "job_name": job_name, "since": now.isoformat(),
                                    "resets": resets[-RESET_HISTORY:]})
    return AppIdentity(app_id, checkpoint, reset_from)
