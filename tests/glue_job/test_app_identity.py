"""Checkpoint safety: the job's app id is tied to its checkpoint, and a start that would lose or
double-count data is refused with what to do instead."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.lake_layout import STATUS_COUNT
from glue_job import app_identity
from glue_job.app_identity import CheckpointRefused, resolve
from glue_job.lake_files import LakeFiles
from glue_job.sink import LakeTables
from tests.lake_fixtures import delta_rows

JOB = "etl_test"
NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


def _lake(root: Path) -> tuple[LakeFiles, LakeTables]:
    tables = LakeTables(str(root))
    tables.create_all()
    return LakeFiles(str(root)), tables


def _commit(root: Path, app_id: str, batch_id: int) -> None:
    """A batch committed by `app_id`, as the sink writes it (rows plus the app transaction)."""
    rows = delta_rows(STATUS_COUNT, batch_id, [{
        "window_start": NOW, "window_end": NOW, "postal_code": "1", "status": "0", "description": "S",
        "record_count": 1}])
    assert LakeTables(str(root)).append(STATUS_COUNT, rows, app_id, batch_id)


def _spark_started(root: Path) -> None:
    (root / app_identity.checkpoint_folder(JOB) / "metadata").write_text('{"id": "query"}')


def test_a_first_start_gets_a_new_app_id_and_a_restart_keeps_it(tmp_path: Path) -> None:
    lake, tables = _lake(tmp_path)
    first = resolve(lake, tables, JOB, now=NOW)
    assert first.app_id.startswith(f"signal-stream/{JOB}/") and first.checkpoint == f"checkpoints/{JOB}"
    _spark_started(tmp_path)
    _commit(tmp_path, first.app_id, 0)

    assert resolve(lake, tables, JOB, now=NOW).app_id == first.app_id
    assert lake.read_json("_job/app.json")["app_id"] == first.app_id


def test_a_deleted_checkpoint_is_refused_and_nothing_is_touched(tmp_path: Path) -> None:
    lake, tables = _lake(tmp_path)
    app = resolve(lake, tables, JOB, now=NOW).app_id
    _spark_started(tmp_path)
    _commit(tmp_path, app, 4)
    before = LakeTables(str(tmp_path)).table(STATUS_COUNT).version()
    assert before == 1
    (tmp_path / "checkpoints" / JOB / "metadata").unlink()
    (tmp_path / "checkpoints" / JOB / app_identity.IDENTITY_FILE).unlink()

    with pytest.raises(CheckpointRefused) as refused:
        resolve(lake, LakeTables(str(tmp_path)), JOB, now=NOW)

    message = str(refused.value)
    assert "checkpoint checkpoints/etl_test/ is missing" in message
    assert app in message and "--reset-checkpoint" in message and "--reset_checkpoint true" in message
    assert LakeTables(str(tmp_path)).table(STATUS_COUNT).version() == before
    assert lake.read_json("_job/app.json")["app_id"] == app  # the lake still names its writer


def test_a_checkpoint_of_another_app_is_refused(tmp_path: Path) -> None:
    lake, tables = _lake(tmp_path)
    app = resolve(lake, tables, JOB, now=NOW).app_id
    _commit(tmp_path, app, 0)
    lake.write_json(f"checkpoints/{JOB}/{app_identity.IDENTITY_FILE}", {"app_id": "signal-stream/other/1"})

    with pytest.raises(CheckpointRefused, match="belongs to app signal-stream/other/1"):
        resolve(lake, tables, JOB, now=NOW)


def test_a_checkpoint_that_lost_sparks_state_after_commits_is_refused(tmp_path: Path) -> None:
    lake, tables = _lake(tmp_path)
    app = resolve(lake, tables, JOB, now=NOW).app_id
    _commit(tmp_path, app, 12)  # committed, but Spark's metadata is gone (a corrupt checkpoint)

    with pytest.raises(CheckpointRefused, match="committed batches up to 12"):
        resolve(lake, LakeTables(str(tmp_path)), JOB, now=NOW)


def test_an_empty_lake_needs_no_checkpoint(tmp_path: Path) -> None:
    lake, tables = _lake(tmp_path)
    assert not tables.has_commits()
    assert resolve(lake, tables, JOB, now=NOW).reset_from is None


def test_a_reset_moves_the_checkpoint_aside_and_records_the_previous_app(tmp_path: Path) -> None:
    lake, tables = _lake(tmp_path)
    old = resolve(lake, tables, JOB, now=NOW).app_id
    _spark_started(tmp_path)
    _commit(tmp_path, old, 3)

    new = resolve(lake, LakeTables(str(tmp_path)), JOB, reset=True, now=NOW)

    assert new.app_id != old and new.reset_from == old
    aside = tmp_path / "checkpoints" / f"{JOB}.reset-20260301T120000Z"
    assert (aside / "metadata").exists()
    assert not (tmp_path / "checkpoints" / JOB / "metadata").exists()
    record = lake.read_json("_job/app.json")
    assert record["app_id"] == new.app_id
    assert record["resets"] == [{"at": NOW.isoformat(), "previous_app_id": old, "new_app_id": new.app_id,
                                 "old_checkpoint": f"checkpoints/{JOB}.reset-20260301T120000Z"}]
    # the new app's checkpoint is accepted from now on
    assert resolve(lake, LakeTables(str(tmp_path)), JOB, now=NOW).app_id == new.app_id
