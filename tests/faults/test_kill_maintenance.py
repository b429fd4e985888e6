"""kill -9 of the lake's compaction while it rewrites a partition: readers keep exact totals, a later run finishes.

No Spark: the lake is written through the job's own exactly-once writer (LakeTables.append, one Delta
commit per batch with its app transaction), then `LakeMaintenance.compact` runs in a subprocess. The
test freezes it (SIGSTOP) the moment a rewrite's new data file shows up in a partition folder; if that
rewrite has not committed yet it is killed there (SIGKILL), otherwise it resumes until the next one.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
from deltalake import DeltaTable

from core.backends.local import build_local_backend
from core.config import Settings
from core.delta_lake import partition_files
from core.lake_layout import SIGNAL_STRENGTH_BY_OPERATOR, STATUS_COUNT, TableSpec
from glue_job.maintenance import LakeMaintenance
from glue_job.sink import LakeTables
from tests.conftest import PROJECT_ROOT

HOUR = datetime(2026, 3, 1, 10, tzinfo=UTC)
HOURS = (HOUR, HOUR + timedelta(hours=1))
NOW = HOUR + timedelta(hours=4)  # both hours closed: every partition is due
APP = "faults-app"
BATCHES = 18  # per hour: 36 commits per table
ROWS = 2500  # per batch: a merged hour of ~18k rows takes a visible moment to write
OPERATORS = [f"Operator {i}" for i in range(300)]
CODES = [(str(28000 + i), str(i % 4), f"STATE_{i % 4}") for i in range(300)]
COMMIT = re.compile(r"\d{20}\.json")  # a Delta commit file, once renamed into place
COMPACT = ("import sys; from datetime import datetime; from glue_job.sink import LakeTables; "
           "from glue_job.maintenance import LakeMaintenance; "
           "print(LakeMaintenance(LakeTables(sys.argv[1]), 10).compact(datetime.fromisoformat(sys.argv[2])))")


def batch_rows(spec: TableSpec, hour: datetime, batch_id: int, rng: random.Random) -> pa.Table:
    """Return one batch of partial aggregates in one hour; every number a whole one, so sums are exact."""
    starts = [hour + timedelta(minutes=rng.randrange(60)) for _ in range(ROWS)]
    ends = [s + timedelta(minutes=1) for s in starts]
    columns: dict[str, list[object]] = {"window_start": starts, "window_end": ends}
    if spec is SIGNAL_STRENGTH_BY_OPERATOR:
        operators = [rng.choice(OPERATORS) for _ in range(ROWS)]
        counts = [rng.randint(1, 9) for _ in range(ROWS)]
        columns |= {"operator": operators, "network": operators, "signal_count": counts,
                    "signal_sum": [float(c * rng.randint(0, 31)) for c in counts],
                    "signal_min": [float(rng.randint(0, 10)) for _ in range(ROWS)],
                    "signal_max": [float(rng.randint(20, 31)) for _ in range(ROWS)],
                    "record_count": [c + rng.randint(0, 3) for c in counts]}
    else:
        codes = [rng.choice(CODES) for _ in range(ROWS)]
        columns |= {"postal_code": [c[0] for c in codes], "status": [c[1] for c in codes],
                    "description": [c[2] for c in codes], "record_count": [rng.randint(1, 9) for _ in range(ROWS)]}
    columns |= {"batch_id": [batch_id] * ROWS, "dt": [hour.strftime("%Y-%m-%d")] * ROWS,
                "hr": [hour.strftime("%H")] * ROWS}
    return pa.Table.from_pydict(columns, schema=spec.delta_schema)


def totals(frame: pd.DataFrame, spec: TableSpec) -> dict[tuple[str, ...], tuple[float, ...]]:
    """Return the table's exact totals per key, as every query re-aggregates partial rows."""
    if spec is SIGNAL_STRENGTH_BY_OPERATOR:
        grouped = frame.groupby("operator").agg(signal_sum=("signal_sum", "sum"), signal_count=("signal_count", "sum"),
                                                signal_min=("signal_min", "min"), signal_max=("signal_max", "max"),
                                                records=("record_count", "sum"))
    else:
        grouped = frame.groupby(["postal_code", "status", "description"]).agg(records=("record_count", "sum"))
    return {(k if isinstance(k, tuple) else (k,)): tuple(float(v) for v in row)
            for k, row in zip(grouped.index, grouped.itertuples(index=False), strict=True)}


def read(lake: Path, spec: TableSpec) -> DeltaTable:
    return DeltaTable(str(lake / spec.prefix))


def entries(folder: Path) -> set[str]:
    return set(os.listdir(folder)) if folder.exists() else set()


def test_kill_9_mid_compaction_loses_nothing_and_a_later_compaction_succeeds(clean_environ: Path) -> None:
    lake = clean_environ / "lake"
    tables = LakeTables(str(lake))
    rng = random.Random(20261212)
    written: dict[str, list[pd.DataFrame]] = {spec.name: [] for spec in (SIGNAL_STRENGTH_BY_OPERATOR, STATUS_COUNT)}
    batch_id = 0
    for hour in HOURS:
        for _ in range(BATCHES):
            for spec in (SIGNAL_STRENGTH_BY_OPERATOR, STATUS_COUNT):
                rows = batch_rows(spec, hour, batch_id, rng)
                assert tables.append(spec, rows, APP, batch_id)
                written[spec.name].append(rows.to_pandas())
            batch_id += 1
    specs = (SIGNAL_STRENGTH_BY_OPERATOR, STATUS_COUNT)
    want = {spec.name: totals(pd.concat(written[spec.name]), spec) for spec in specs}
    for spec in specs:
        assert totals(read(lake, spec).to_pandas(), spec) == want[spec.name]  # the reference holds before
        assert set(partition_files(read(lake, spec)).values()) == {BATCHES}

    partitions = [lake / spec.prefix / f"dt={h:%Y-%m-%d}" / f"hr={h:%H}" for spec in specs for h in HOURS]
    seen = {folder: entries(folder) for folder in partitions}
    logs = {spec.name: entries(lake / spec.prefix / "_delta_log") for spec in specs}
    compaction = subprocess.Popen([sys.executable, "-c", COMPACT, str(lake), NOW.isoformat()], cwd=PROJECT_ROOT,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    killed_in: tuple[str, Path, set[str]] | None = None
    deadline = time.monotonic() + 120
    try:
        while killed_in is None:
            assert time.monotonic() < deadline, "no rewrite seen within 2 minutes"
            new = next(((folder, added) for folder in partitions if (added := entries(folder) - seen[folder])), None)
            if new is None:
                assert compaction.poll() is None, (
                    f"the compaction finished before a rewrite could be caught uncommitted: "
                    f"{compaction.communicate()}")
                time.sleep(0.0005)
                continue
            os.kill(compaction.pid, signal.SIGSTOP)
            folder = new[0]
            files = entries(folder) - seen[folder]  # as it is now it is frozen (a staged file may have been renamed)
            spec = next(s for s in specs if folder.is_relative_to(lake / s.prefix))
            committed = entries(lake / spec.prefix / "_delta_log") - logs[spec.name]
            if not any(COMMIT.fullmatch(name) for name in committed):
                killed_in = (spec.name, folder, files)  # written, not committed: kill it here
                break
            # That rewrite had committed already: let it go on to the next partition.
            seen = {f: entries(f) for f in partitions}
            logs = {s.name: entries(lake / s.prefix / "_delta_log") for s in specs}
            os.kill(compaction.pid, signal.SIGCONT)
    finally:
        os.kill(compaction.pid, signal.SIGKILL)
        compaction.wait()

    assert killed_in is not None
    name, folder, files = killed_in
    spec = next(s for s in specs if s.name == name)
    table = read(lake, spec)
    live = {Path(uri).name for uri in table.file_uris()}
    assert all((folder / f).exists() for f in files), "the killed rewrite's file is on disk"
    assert not files & live, "a reader's snapshot never lists the file of an uncommitted rewrite"
    newest_logged = max(int(n.split(".")[0]) for n in logs[name] if COMMIT.fullmatch(n))
    assert table.version() == newest_logged, "the cut rewrite added no commit"

    # Any Delta reader, a fresh one, gets exactly the totals written, and the exactly-once guard holds.
    for s in specs:
        fresh = read(lake, s)
        assert totals(fresh.to_pandas(), s) == want[s.name], f"{s.name} after the kill"
        assert fresh.transaction_version(APP) == batch_id - 1
    # So does the console's SQL (DuckDB over the tables' snapshots).
    backend = build_local_backend(Settings.from_env({"SIGNAL_HOME": str(clean_environ)}))
    for crawler in (SIGNAL_STRENGTH_BY_OPERATOR.crawler, STATUS_COUNT.crawler):
        assert backend.crawlers.run(crawler, timeout=120).last_result == "SUCCEEDED"
    by_operator = backend.lake.query("signal_by_operator").frame.set_index("operator")["samples"]
    assert by_operator.to_dict() == {k[0]: int(v[1]) for k, v in want[SIGNAL_STRENGTH_BY_OPERATOR.name].items()}

    # The next compaction finishes the job: one file per closed hour, the same totals, the guard intact.
    run = LakeMaintenance(LakeTables(str(lake)), 10).compact(NOW)
    assert run.error is None and run.partitions >= 1, run
    for s in specs:
        after = read(lake, s)
        assert partition_files(after) == {f"dt={h:%Y-%m-%d}/hr={h:%H}": 1 for h in HOURS}, s.name
        assert totals(after.to_pandas(), s) == want[s.name], f"{s.name} after the later compaction"
        assert after.transaction_version(APP) == batch_id - 1
    # The cut rewrite's file stays on disk, never listed: VACUUM deletes replaced (tombstoned) files only.
    assert not files & {Path(uri).name for uri in read(lake, spec).file_uris()}
    print(f"\nkilled while rewriting {folder.relative_to(lake)} ({sorted(files)}); "
          f"the later run rewrote {run.partitions} partition(s), {run.files_removed} -> {run.files_added} files")
