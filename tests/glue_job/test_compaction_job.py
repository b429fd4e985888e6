"""The real local job compacts as it runs: three `job run --available-now` runs into a closed hour.

The job runs in subprocesses (as the CLI runs it): its SparkSession is its own, so the suite's
shared one is not stopped under other tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from core.backends.local import build_local_backend
from core.backends.local_stream import LocalStream
from core.config import Settings
from core.lake_layout import BATCH, COMPACTED, SIGNAL_STRENGTH_BY_OPERATOR, parse_data_file_name, partition_path
from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.slow


def job_run(home: Path) -> None:
    env = {**os.environ, "SIGNAL_HOME": str(home)}
    done = subprocess.run([sys.executable, "-m", "core.cli", "job", "run", "--available-now"], cwd=PROJECT_ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def record(record_id: str, event_time: datetime, signal_value: int) -> dict[str, str]:
    return {
        "record_id": record_id, "event_time": event_time.strftime("%Y-%m-%dT%H:%M:%SZ"), "operator": "movistar",
        "network": "movistar", "signal": str(signal_value), "lat": "40.41678", "long": "-3.70379", "status": "0",
        "description": "STATE_IN_SERVICE", "provider": "gps", "precission": "4.0", "satellites": "8",
        "postal_code": "28013.0", "hour": event_time.strftime("%H:%M:%S"),
    }


def test_the_job_compacts_committed_batches_of_a_closed_hour(clean_environ: Path) -> None:
    home = clean_environ
    stream = LocalStream(home / "stream" / "mobile_coverage_logs", "mobile_coverage_logs")
    # An hour that ended long before now minus the watermark; each run's events are after the
    # previous run's watermark (max event time - 10 min), so none is late.
    start = datetime.now(UTC).replace(minute=10, second=0, microsecond=0) - timedelta(hours=2)
    signals = {0: (-80, -90), 1: (-70, -60), 2: (-100, -50)}
    for run, values in signals.items():
        moment = start + timedelta(minutes=5 * run)
        result = stream.put_records([record(f"r{run}-{i}", moment + timedelta(seconds=i), v)
                                     for i, v in enumerate(values)])
        assert result.sent == len(values) and not result.failed
        job_run(home)

    folder = home / "lake" / partition_path(SIGNAL_STRENGTH_BY_OPERATOR, start.strftime("%Y-%m-%d"),
                                            start.strftime("%H"))
    files = [f for f in (parse_data_file_name(p.name) for p in folder.iterdir()) if f is not None]
    compacted = [f for f in files if f.kind == COMPACTED]
    batches = [f for f in files if f.kind == BATCH]
    # Run 3's batch compacted the batches of runs 1 and 2 (committed); its own batch is left as written.
    assert len(compacted) == 1 and len(batches) == 1, sorted(p.name for p in folder.iterdir())
    assert batches[0].batch_id > compacted[0].batch_id
    merged = pq.read_table(folder / compacted[0].name)
    assert sorted(merged["signal_sum"].to_pylist()) == sorted([-170.0, -130.0])  # one window per run
    assert len(set(merged["batch_id"].to_pylist())) == 2  # rows keep the batch ids of the two runs

    backend = build_local_backend(Settings.from_env({"SIGNAL_HOME": str(home)}))
    assert backend.crawlers.run("crawler_signal_strength_by_operator").last_result == "SUCCEEDED"
    frame = backend.lake.query("signal_by_operator").frame
    every = [v for values in signals.values() for v in values]
    assert frame[["operator", "samples"]].values.tolist() == [["Movistar", len(every)]]
    assert frame["avg_signal"].iloc[0] == pytest.approx(sum(every) / len(every))
