"""End to end through the CLI, as a user runs it: replay -> job --available-now -> crawl -> query.

Every named query is compared with an independent pandas recomputation over the same CSV; the CSV is
generated with a seed the rest of the suite does not use and has broken lines added.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests import reference
from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.slow


def cli(*args: str, env: dict[str, str], check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run `python -m core.cli ...` and return the finished process."""
    done = subprocess.run([sys.executable, "-m", "core.cli", *args], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"cli {args} exited {done.returncode}: {done.stderr[-2000:]}")
    return done


def make_csv(path: Path, rows: int, seed: int) -> Path:
    subprocess.run([sys.executable, str(PROJECT_ROOT / "data" / "generate_sample.py"), "--rows", str(rows),
                    "--seed", str(seed), "--out", str(path)], check=True)
    return path


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


def test_kill_9_mid_run_then_restart_keeps_totals_exact(tmp_path: Path, env: dict[str, str]) -> None:
    csv_path = make_csv(tmp_path / "crash.csv", rows=12000, seed=424242)
    env = {**env, "SIGNAL_MAX_FILES_PER_BATCH": "2"}  # 1000 records per batch: many batches to crash into
    assert json.loads(cli("replay", str(csv_path), "--json", env=env).stdout)["sent"] == 12000

    job = subprocess.Popen([sys.executable, "-m", "core.cli", "job", "run"], cwd=PROJECT_ROOT, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    lake = Path(env["SIGNAL_HOME"]) / "lake" / "aggregations" / "signal_strength_by_operator"
    commits = Path(env["SIGNAL_HOME"]) / "lake" / "checkpoints" / "etl_streaming_mobile_logs" / "commits"
    deadline = time.monotonic() + 180
    batch = 2
    try:
        # Kill while a batch is being written: its first file exists, the batch is not committed yet.
        # The job is frozen (SIGSTOP) as soon as the file appears, so the check below is exact; when
        # that batch had already committed, the job resumes and the next batch is tried.
        while True:
            while not list(lake.glob(f"dt=*/hr=*/batch-{batch}.snappy.parquet")):
                assert time.monotonic() < deadline, f"the job wrote no batch {batch} within 3 minutes"
                assert job.poll() is None, "the job ended before it could be killed"
                time.sleep(0.01)
            os.killpg(job.pid, signal.SIGSTOP)
            if not (commits / str(batch)).exists():
                break
            os.killpg(job.pid, signal.SIGCONT)
            batch += 1
            assert batch < 11, "every batch had committed before it could be stopped"
    finally:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait()
    assert not (commits / str(batch)).exists()
    assert list(lake.glob(f"dt=*/hr=*/batch-{batch}.snappy.parquet")), "the crash left no file of the batch"

    cli("job", "run", "--available-now", env=env)
    cli("crawl", env=env)
    assert_matches_reference(csv_path, env)
