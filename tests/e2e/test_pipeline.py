"""End to end through the CLI, as a user runs it: replay -> job --available-now -> crawl -> query.

Every named query is compared with an independent pandas recomputation over the same CSV; the CSV is
generated with a seed the rest of the suite does not use and has broken lines added.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from deltalake import DeltaTable

from core import queries
from core.backends.local import build_local_backend
from core.config import Settings
from core.lake_layout import SIGNAL_STRENGTH_BY_OPERATOR, STATUS_COUNT
from tests import reference
from tests.conftest import PROJECT_ROOT
from tests.harness import cli, lake_matches_reference, make_csv

pytestmark = pytest.mark.slow


@pytest.fixture
def env(clean_environ: Path) -> dict[str, str]:
    return {**os.environ, "SIGNAL_HOME": str(clean_environ), "SIGNAL_TRIGGER_SECONDS": "1"}


def query(name: str, env: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame(json.loads(cli("query", name, "--format", "json", env=env).stdout))


def assert_matches_reference(csv_path: Path, env: dict[str, str]) -> None:
    rows = reference.load_valid_rows(csv_path)

    got = query("signal_by_operator", env)
    got["operator"] = got["operator"].str.lower()
    want = reference.signal_by_operator(rows)
    merged = want.merge(got, on="operator", how="outer", suffixes=("_want", "_got"), indicator=True)
    assert (merged["_merge"] == "both").all(), merged[merged["_merge"] != "both"]
    assert (merged["samples_want"] == merged["samples_got"]).all()
    assert merged["avg_signal_want"].sub(merged["avg_signal_got"]).abs().max() < 1e-9

    got = query("gps_by_provider", env)
    want = reference.gps_by_provider(rows)
    merged = want.merge(got, on="provider", how="outer", suffixes=("_want", "_got"), indicator=True)
    assert (merged["_merge"] == "both").all(), merged[merged["_merge"] != "both"]
    assert (merged["samples_want"] == merged["samples_got"]).all()
    for column in ("avg_precision", "avg_satellites"):
        both = merged[[f"{column}_want", f"{column}_got"]].astype(float)
        assert (both.iloc[:, 0].isna() == both.iloc[:, 1].isna()).all()
        assert both.iloc[:, 0].sub(both.iloc[:, 1]).abs().max() < 1e-9

    got = query("status_by_postal_code", env)
    got = got.astype({"postal_code": str, "status": str})
    want = reference.status_by_postal_code(rows)
    keys = ["postal_code", "status", "description"]
    merged = want.merge(got, on=keys, how="outer", suffixes=("_want", "_got"), indicator=True)
    assert (merged["_merge"] == "both").all(), merged[merged["_merge"] != "both"]
    assert (merged["records_want"] == merged["records_got"]).all()
    assert int(got["records"].sum()) == len(rows)


def test_cli_pipeline_equals_pandas_on_unseen_csv_with_broken_lines(tmp_path: Path, env: dict[str, str]) -> None:
    csv_path = make_csv(tmp_path / "unseen.csv", rows=3000, seed=20261128)
    lines = csv_path.read_text().splitlines()
    lines.insert(10, "12:00:00,40.4,-3.7,17,Movistar,Movistar,0,STATE_IN_SERVICE,0,4.0,5.0,gps")  # 12 fields
    lines.insert(500, lines[499] + ",extra")  # 15 fields
    csv_path.write_text("\n".join(lines) + "\n")

    summary = json.loads(cli("replay", str(csv_path), "--json", env=env).stdout)
    assert summary["sent"] == 3000
    assert summary["rejected"] == 2
    assert [r["line"] for r in summary["rejections"]] == [11, 501]
    assert "expected 14 fields, found 12" in summary["rejections"][0]["reason"]

    started = time.monotonic()
    cli("job", "run", "--available-now", env=env)
    job_seconds = time.monotonic() - started
    status = json.loads(cli("job", "status", "--json", env=env).stdout)
    assert status["state"] == "STOPPED"
    assert status["totals"]["input_rows"] == 3000
    assert status["totals"]["aggregated_rows"] == 3000
    crawl = cli("crawl", env=env).stdout
    assert "crawler_signal_strength_by_operator: SUCCEEDED" in crawl
    assert_matches_reference(csv_path, env)
    print(f"job --available-now on 3000 rows: {job_seconds:.1f} s including Spark start")


def test_bad_input_is_one_line_and_non_zero(tmp_path: Path, env: dict[str, str]) -> None:
    wrong_header = tmp_path / "wrong.csv"
    wrong_header.write_text("hour,lat\n10:00:00,40\n")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    for args in (["replay", str(wrong_header)], ["replay", str(empty)], ["replay", str(tmp_path / "nope.csv")],
                 ["query", "no_such_query"], ["query", "signal_by_operator", "--since", "yesterday"],
                 ["crawl", "crawler_nope"], ["replay", "--rate", "-5"], ["frobnicate"]):
        done = cli(*args, env=env, check=False)
        assert done.returncode != 0, args
        assert done.stderr.startswith("error: "), (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1, (args, done.stderr)
        assert "Traceback" not in done.stderr


def committed_batch(lake: Path) -> int | None:
    """Return the newest batch the signal table holds for the job's app, read from the Delta log."""
    app = json.loads((lake / "_job" / "app.json").read_text())["app_id"]
    return DeltaTable(str(lake / SIGNAL_STRENGTH_BY_OPERATOR.prefix)).transaction_version(app)


def test_any_delta_reader_matches_the_reference_after_compaction_vacuum_and_kill_9(
        tmp_path: Path, env: dict[str, str]) -> None:
    csv_path = make_csv(tmp_path / "crash.csv", rows=12000, seed=424242)
    # 500 records per batch: many batches, so an open hour is compacted (15 files) while the queries run;
    # replaced files are vacuumed 3 s after they were replaced, far longer than a query here takes.
    env = {**env, "SIGNAL_MAX_FILES_PER_BATCH": "1", "SIGNAL_COMPACT_SECONDS": "1", "SIGNAL_VACUUM_SECONDS": "1",
           "SIGNAL_RETENTION_SECONDS": "3"}
    assert json.loads(cli("replay", str(csv_path), "--json", env=env).stdout)["sent"] == 12000
    home = Path(env["SIGNAL_HOME"])
    lake = home / "lake"
    commits = lake / "checkpoints" / "etl_streaming_mobile_logs" / "commits"
    backend = build_local_backend(Settings.from_env({k: v for k, v in env.items() if k.startswith("SIGNAL_")}))
    failures: list[str] = []
    answered = [0]
    stop = threading.Event()

    def query_loop() -> None:
        while not stop.is_set():
            for name, named in queries.QUERIES.items():
                try:  # a comparison compares a range: the last day's
                    day = {"since": datetime.now(UTC) - timedelta(days=1), "until": datetime.now(UTC)}
                    backend.lake.query(name, day if named.compared else None)
                    answered[0] += 1
                except Exception as error:  # every failure is collected, and fails the test
                    failures.append(f"{name}: {type(error).__name__}: {error}")

    job = subprocess.Popen([sys.executable, "-m", "core.cli", "job", "run"], cwd=PROJECT_ROOT, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    reader = threading.Thread(target=query_loop, daemon=True)
    deadline = time.monotonic() + 240
    batch = 18  # past the first compaction of the open hour (15 files)
    try:
        while not (lake / "_job" / "app.json").exists() or committed_batch(lake) is None:
            assert time.monotonic() < deadline and job.poll() is None, "the job committed no batch"
            time.sleep(0.05)
        for crawler in backend.crawlers.list():
            backend.crawlers.run(crawler.name)
        reader.start()
        # Kill while a batch is being written: its commit is in the signal table, Spark has not committed
        # it. The job is frozen (SIGSTOP) as soon as the commit appears, so the check is exact; when that
        # batch had already committed in Spark, the job resumes and the next batch is tried.
        while True:
            while (committed_batch(lake) or -1) < batch:
                assert time.monotonic() < deadline, f"the job committed no batch {batch} within 4 minutes"
                assert job.poll() is None, "the job ended before it could be killed"
                time.sleep(0.005)
            os.killpg(job.pid, signal.SIGSTOP)
            if not (commits / str(batch)).exists():
                break
            os.killpg(job.pid, signal.SIGCONT)
            batch += 1
            assert batch < 24, "every batch had committed before it could be stopped"
    finally:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait()
    assert committed_batch(lake) == batch and not (commits / str(batch)).exists()

    cli("job", "run", "--available-now", env=env)  # retries the cut batch: its signal commit is skipped
    time.sleep(1)
    stop.set()
    reader.join(timeout=60)

    status = json.loads((lake / "_job" / "status.json").read_text())
    maintenance = status["maintenance"]
    assert failures == [] and answered[0] > 50, (failures[:5], answered[0])
    assert maintenance["compaction"]["error"] is None and maintenance["vacuum"]["error"] is None
    history = [entry["operation"] for spec in (SIGNAL_STRENGTH_BY_OPERATOR, STATUS_COUNT)
               for entry in DeltaTable(str(lake / spec.prefix)).history()]
    assert "WRITE" in history and any(op in history for op in ("VACUUM END",)), history[:10]
    assert len(DeltaTable(str(lake / SIGNAL_STRENGTH_BY_OPERATOR.prefix)).file_uris()) < batch
    lake_matches_reference(lake, reference.load_valid_rows(csv_path))
    cli("crawl", env=env)
    assert_matches_reference(csv_path, env)
    print(f"{answered[0]} queries during the run, none failed; killed in batch {batch}; "
          f"last compaction {maintenance['compaction']}; last vacuum {maintenance['vacuum']}")


def test_a_lost_checkpoint_is_refused_then_a_deliberate_reset_counts_nothing_twice(
        tmp_path: Path, env: dict[str, str]) -> None:
    first = make_csv(tmp_path / "first.csv", rows=1500, seed=777)
    second = make_csv(tmp_path / "second.csv", rows=700, seed=778)
    home = Path(env["SIGNAL_HOME"])
    cli("replay", str(first), env=env)
    cli("job", "run", "--available-now", env=env)
    shutil.rmtree(home / "lake" / "checkpoints")

    refused = cli("job", "run", "--available-now", env=env, check=False)

    assert refused.returncode == 3
    assert "its checkpoint checkpoints/etl_streaming_mobile_logs/ is missing" in refused.stderr
    assert "--reset-checkpoint" in refused.stderr
    lake_matches_reference(home / "lake", reference.load_valid_rows(first))  # nothing lost, nothing added
    status = json.loads(cli("job", "status", "--json", env=env).stdout)
    assert status["state"] == "FAILED" and "missing" in status["error"]

    cli("replay", str(second), env=env)
    cli("job", "run", "--available-now", "--reset-checkpoint", env=env)

    # The first CSV's stream files were deleted once their batches committed: the reset re-read only
    # the second's, so the lake holds each record once.
    both = pd.concat([reference.load_valid_rows(first), reference.load_valid_rows(second)], ignore_index=True)
    lake_matches_reference(home / "lake", both)
    audit = [json.loads(line) for line in (home / "audit" / "audit.jsonl").read_text().splitlines()]
    resets = [(a["target"], a["outcome"]) for a in audit if a["action"] == "reset_checkpoint_and_start_job"]
    assert resets == [("etl_streaming_mobile_logs", "requested"), ("etl_streaming_mobile_logs", "succeeded")]
    recorded = json.loads((home / "lake" / "_job" / "app.json").read_text())["resets"]
    assert len(recorded) == 1 and recorded[0]["previous_app_id"] != recorded[0]["new_app_id"]


def test_the_job_on_two_executor_jvms_gives_the_reference_numbers(tmp_path: Path, env: dict[str, str]) -> None:
    """local-cluster[2,1,1024]: two executor JVMs, as on a Glue cluster, so nothing relies on one JVM."""
    csv_path = make_csv(tmp_path / "cluster.csv", rows=3000, seed=31337)
    cli("replay", str(csv_path), env=env)
    run = ("import os, sys; from core.config import Settings; from glue_job.local import run; "
           "sys.exit(run(Settings.from_env(os.environ), available_now=True, master='local-cluster[2,1,1024]'))")
    done = subprocess.run([sys.executable, "-c", run], cwd=PROJECT_ROOT, env={**env, "PYSPARK_PYTHON": sys.executable},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lake_matches_reference(Path(env["SIGNAL_HOME"]) / "lake", reference.load_valid_rows(csv_path))
