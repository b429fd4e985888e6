"""What the end-to-end, fault and page tests share: the CLI run as a user runs it, generated samples, the lake
read by deltalake alone and compared with the pandas reference, and console pages opened with AppTest."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
from deltalake import DeltaTable
from streamlit.testing.v1 import AppTest

from core.lake_layout import COVERAGE_GRID, GPS_PRECISION_BY_PROVIDER, SIGNAL_STRENGTH_BY_OPERATOR, STATUS_COUNT
from tests import reference
from tests.conftest import PROJECT_ROOT

# --- the CLI and the sample ----------------------------------------------------------------------


def cli(*args: str, env: dict[str, str], check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run `python -m core.cli ...` as a user does and return the finished process."""
    done = subprocess.run([sys.executable, "-m", "core.cli", *args], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"cli {args} exited {done.returncode}: {done.stderr[-3000:]}")
    return done


def make_csv(path: Path, rows: int, seed: int) -> Path:
    """Write a generated sample CSV of `rows` rows (a seed the rest of the suite does not use)."""
    subprocess.run([sys.executable, str(PROJECT_ROOT / "data" / "generate_sample.py"), "--rows", str(rows),
                    "--seed", str(seed), "--out", str(path)], check=True, capture_output=True)
    return path


def pipeline_env(home: Path, **settings: str) -> dict[str, str]:
    """Return the environment of a CLI run on `home`: this process's, without SIGNAL_* of its own."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("SIGNAL_")}
    return {**base, "SIGNAL_HOME": str(home), "SIGNAL_TRIGGER_SECONDS": "1", **settings}


# --- the lake against the reference --------------------------------------------------------------


def lake_matches_reference(lake: Path, rows: pd.DataFrame) -> None:
    """Read every aggregation table with deltalake alone and compare it with pandas over `rows`."""
    signal = DeltaTable(str(lake / SIGNAL_STRENGTH_BY_OPERATOR.prefix)).to_pandas()
    signal["operator"] = signal["operator"].str.lower()
    got = signal.groupby("operator").agg(signal_sum=("signal_sum", "sum"), samples=("signal_count", "sum"))
    got["avg_signal"] = got["signal_sum"] / got["samples"].where(got["samples"] > 0)
    want = reference.signal_by_operator(rows).set_index("operator")
    assert sorted(got.index) == sorted(want.index)
    assert (got["samples"].loc[want.index] == want["samples"]).all()
    assert (got["avg_signal"].loc[want.index] - want["avg_signal"]).abs().max() < 1e-9

    status = DeltaTable(str(lake / STATUS_COUNT.prefix)).to_pandas()
    got_status = status.groupby(["postal_code", "status", "description"])["record_count"].sum()
    want_status = reference.status_by_postal_code(rows).set_index(["postal_code", "status", "description"])["records"]
    assert got_status.sort_index().to_dict() == want_status.sort_index().to_dict()

    gps = DeltaTable(str(lake / GPS_PRECISION_BY_PROVIDER.prefix)).to_pandas()
    got_gps = gps.groupby("provider")["precision_count"].sum()
    want_gps = reference.gps_by_provider(rows).set_index("provider")["samples"]
    assert got_gps.sort_index().to_dict() == want_gps.sort_index().to_dict()

    grid = DeltaTable(str(lake / COVERAGE_GRID.prefix)).to_pandas()
    lat, long = (pd.to_numeric(rows[c].str.strip(), errors="coerce") for c in ("lat", "long"))
    assert int(grid["record_count"].sum()) == int((lat.between(-90, 90) & long.between(-180, 180)).sum())


# --- the console ---------------------------------------------------------------------------------


def open_page(page: str | None = None, **query: str) -> AppTest:
    """Open the console (Home.py) as a browser would, then switch to `page`."""
    at = AppTest.from_file(str(PROJECT_ROOT / "Home.py"), default_timeout=60)
    for key, value in query.items():
        at.query_params[key] = value
    at.run()
    if page:
        at.switch_page(page).run()
    return at


def page_text(at: AppTest) -> str:
    """Return every message, caption and heading the page shows, one per line."""
    parts = [e.value for kind in ("markdown", "caption", "info", "warning", "error", "success", "subheader", "title")
             for e in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)
