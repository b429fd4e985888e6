"""The stream under faults, through the real Spark job: a replay killed with kill -9 mid-run, records from the
future, and stream files whose last line is truncated. One stream holds all three, and one
`job run --available-now` reads it (a Spark start costs most of a minute on two cores).

The stream, in the order the job reads it (oldest first, at most 4 files per micro-batch):
1. one file of records whose event time is ahead of their arrival: far ahead (2 h, past
   core.records.FUTURE_TOLERANCE) and a little (60 s, within it);
2. what `python -m core.cli replay` wrote before it was killed (kill -9 as soon as it was caught mid-write,
   with a temporary file of its own on disk), plus a torn temporary planted as a crash leaves one;
3. two files from another producer that does not write atomically, each cut in its last line.
The reference is pandas over the records read back from those files with json alone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from deltalake import DeltaTable

from core.backends.local_stream import LocalStream
from core.lake_layout import QUARANTINE
from core.records import FUTURE_TOLERANCE, REASON_FUTURE_EVENT_TIME, REASON_MALFORMED_JSON, SOURCE_FIELDS
from core.replay import iso_utc
from tests.conftest import PROJECT_ROOT, SAMPLE_CSV
from tests.faults.support import read_stream, source_rows, stream_files, temporaries
from tests.harness import cli, lake_matches_reference, make_csv, open_page, pipeline_env

pytestmark = pytest.mark.slow

STREAM = "mobile_coverage_logs"
FAR_AHEAD = timedelta(hours=2)
A_LITTLE_AHEAD = timedelta(seconds=60)
FAR, NEAR = 7, 5


@dataclass
class StreamRun:
    """What went into the stream, what the job reported, and where it all is."""

    home: Path
    env: dict[str, str]
    replayed: pd.DataFrame  # the records the killed replay's files hold, read back independently
    replay_files: int
    caught_mid_write: list[str]  # the replay's own temporaries on disk when it was killed
    planted: Path  # a torn temporary, as a crash mid-write leaves it
    far: list[dict[str, Any]]
    near: list[dict[str, Any]]
    foreign_whole: list[dict[str, Any]]
    torn_lines: list[str]
    status: dict[str, Any]
    job_stderr: str
    job_seconds: float


def sample_records(count: int, offset: int) -> list[dict[str, str]]:
    """Return `count` rows of the bundled sample as records of source fields (text)."""
    rows = pd.read_csv(SAMPLE_CSV, dtype=str, keep_default_na=False).iloc[offset:offset + count]
    return [{field: row[field] for field in SOURCE_FIELDS} for _, row in rows.iterrows()]


def kill_replay_mid_write(csv_path: Path, folder: Path, env: dict[str, str]) -> list[str]:
    """Run the CLI replay and kill -9 it once it is caught writing a file after its first 8 (or after 40);
    return the temporaries it left."""
    before = set(os.listdir(folder)) if folder.exists() else set()
    replay = subprocess.Popen([sys.executable, "-m", "core.cli", "replay", str(csv_path)], cwd=PROJECT_ROOT,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    try:
        while True:
            names = set(os.listdir(folder)) - before if folder.exists() else set()
            whole = [n for n in names if n.endswith(".jsonl") and not n.startswith(".")]
            writing = [n for n in names if n.endswith(".tmp")]
            if (len(whole) >= 8 and writing) or len(whole) >= 40:
                replay.send_signal(signal.SIGKILL)
                break
            assert replay.poll() is None, "the replay finished before it could be killed"
            assert time.monotonic() < deadline, "the replay wrote nothing within 2 minutes"
            time.sleep(0.0005)
    finally:
        replay.kill()
        replay.wait()
    assert replay.returncode == -signal.SIGKILL
    return temporaries(folder)


def foreign_file(folder: Path, name: str, records: list[dict[str, str]], torn: dict[str, str]) -> str:
    """Write a stream file as a producer that does not write atomically: whole lines, then one cut short."""
    now = datetime.now(UTC)
    arrival = now.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    lines = [json.dumps({"seq": f"{name}:{i}", "arrival": arrival, "data": json.dumps(r)})
             for i, r in enumerate(records)]
    cut = json.dumps({"seq": f"{name}:{len(records)}", "arrival": arrival, "data": json.dumps(torn)})
    cut = cut[: len(cut) // 2]
    (folder / f"{now:%Y%m%dT%H%M%S%f}-{name}-n{len(records) + 1}.jsonl").write_text("\n".join([*lines, cut]))
    return cut


@pytest.fixture(scope="module")
def stream_run(tmp_path_factory: pytest.TempPathFactory) -> StreamRun:
    base = tmp_path_factory.mktemp("stream_faults")
    home = base / "signal_home"
    env = pipeline_env(home, SIGNAL_MAX_FILES_PER_BATCH="4")
    folder = home / "stream" / STREAM
    stream = LocalStream(folder, STREAM)

    now = datetime.now(UTC)
    far = [{**r, "record_id": f"far-future-{i}", "event_time": iso_utc(now + FAR_AHEAD)}
           for i, r in enumerate(sample_records(FAR, 0))]
    near = [{**r, "record_id": f"near-future-{i}", "event_time": iso_utc(now + A_LITTLE_AHEAD)}
            for i, r in enumerate(sample_records(NEAR, FAR))]
    assert stream.put_records([*far, *near]).sent == FAR + NEAR

    csv_path = make_csv(base / "replayed.csv", rows=60000, seed=20261213)
    caught = kill_replay_mid_write(csv_path, folder, env)
    replay_files = [p for p in stream_files(folder) if not p.stem.endswith(f"-n{FAR + NEAR}")]
    replayed, _ = read_stream(folder, replay_files)
    whole = replay_files[0].read_text()
    planted = folder / f".{replay_files[0].stem}-crash.jsonl.0badf00d.tmp"
    planted.write_text(whole[: len(whole) // 3])  # a torn temporary: the job must never read it

    foreign_whole, torn_lines = [], []
    for index, name in enumerate(("foreign-a", "foreign-b")):
        records = [{**r, "record_id": f"{name}-{i}", "event_time": iso_utc(datetime.now(UTC))}
                   for i, r in enumerate(sample_records(2, 20 + 3 * index))]
        torn_lines.append(foreign_file(folder, name, records, sample_records(1, 22 + 3 * index)[0]))
        foreign_whole += records
        time.sleep(0.01)

    started = time.monotonic()
    job = cli("job", "run", "--available-now", env=env)
    seconds = time.monotonic() - started
    status = json.loads(cli("job", "status", "--json", env=env).stdout)
    return StreamRun(home, env, replayed, len(replay_files), caught, planted, far, near, foreign_whole,
                     torn_lines, status, job.stderr, seconds)


def test_kill_9_of_the_replay_leaves_whole_files_and_the_lake_is_exactly_what_reached_the_stream(
        stream_run: StreamRun) -> None:
    run = stream_run
    print(f"\nreplay killed after {run.replay_files} whole files ({len(run.replayed)} records); caught mid-write: "
          f"{run.caught_mid_write or 'no'}; job --available-now took {run.job_seconds:.0f} s")
    assert 0 < len(run.replayed) < 60000, "killed mid-run"
    assert len(run.replayed) == 500 * run.replay_files, "every file the replay renamed into place is whole"
    # No temporary was consumed: each is still where the crash left it, and the counts exclude its lines.
    assert run.planted.exists() and set(run.caught_mid_write) <= set(temporaries(run.home))
    totals = run.status["totals"]
    total_in = len(run.replayed) + FAR + NEAR + len(run.foreign_whole) + len(run.torn_lines)
    assert totals["input_rows"] == total_in, (totals, total_in)
    # The lake holds exactly the records that reached the stream and could be aggregated.
    aggregated = pd.concat([run.replayed, source_rows(run.near), source_rows(run.foreign_whole)], ignore_index=True)
    assert totals["aggregated_rows"] == len(aggregated)
    lake_matches_reference(run.home / "lake", aggregated)
    assert "Traceback" not in run.job_stderr


def test_records_from_the_future_are_quarantined_never_dropped_and_do_not_move_the_watermark(
        stream_run: StreamRun, monkeypatch: pytest.MonkeyPatch) -> None:
    run = stream_run
    assert FAR_AHEAD > FUTURE_TOLERANCE > A_LITTLE_AHEAD
    totals = run.status["totals"]
    # Nothing is dropped silently: every record is aggregated, quarantined, or counted late or duplicate.
    assert (totals["aggregated_rows"] + totals["quarantined_rows"] + totals["late_rows"]
            + totals["duplicate_rows"]) == totals["input_rows"], totals
    # The far-future records came in the first batch, the replayed ones after: had their event time moved
    # the watermark (2 h ahead, less 10 min), every later record would have been late.
    assert totals["batches"] >= 2 and totals["late_rows"] == 0, totals

    quarantine = DeltaTable(str(run.home / "lake" / QUARANTINE.prefix)).to_pandas()
    future = quarantine[quarantine["reason"] == REASON_FUTURE_EVENT_TIME]
    ids = sorted(json.loads(payload)["record_id"] for payload in future["raw_payload"])
    assert ids == sorted(r["record_id"] for r in run.far), "each far-future record, with its raw payload"
    # Those a little ahead (within the tolerance) were aggregated: the kill -9 test's reference counts them.

    # The console counts them: the quarantine query and the Overview's Quarantined tile (last 5 minutes).
    cli("crawl", env=run.env)
    counts = json.loads(cli("query", "quarantine_counts", "--format", "json", env=run.env).stdout)
    by_reason = {c["reason"]: c["records"] for c in counts}
    assert by_reason[REASON_FUTURE_EVENT_TIME] == FAR
    monkeypatch.setenv("SIGNAL_HOME", str(run.home))
    at = open_page()
    assert not at.exception, [e.value for e in at.exception]
    assert {m.label: m.value for m in at.metric}["Quarantined"] == str(sum(by_reason.values()))


def test_a_truncated_stream_line_is_quarantined_with_its_raw_text(stream_run: StreamRun) -> None:
    run = stream_run
    quarantine = DeltaTable(str(run.home / "lake" / QUARANTINE.prefix)).to_pandas()
    malformed = set(quarantine[quarantine["reason"] == REASON_MALFORMED_JSON]["raw_payload"])
    assert malformed and malformed <= set(run.torn_lines), "a cut line is kept whole as it was read, with a reason"
    # The whole lines before each cut were aggregated (checked exactly in the kill -9 test's reference).


def test_each_truncated_stream_line_is_quarantined_on_its_own(stream_run: StreamRun) -> None:
    run = stream_run
    quarantine = DeltaTable(str(run.home / "lake" / QUARANTINE.prefix)).to_pandas()
    malformed = quarantine[quarantine["reason"] == REASON_MALFORMED_JSON]
    assert sorted(malformed["raw_payload"]) == sorted(run.torn_lines)
    assert run.status["totals"]["duplicate_rows"] == 0
