"""Safe defaults of the local console: served on loopback, errors without details, the real URL printed.

`scripts/run_local.sh` (`make run`) runs here against a stub interpreter that records its arguments:
no job, no replay, no Streamlit server is started.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

STUB = """#!/usr/bin/env bash
echo "$*" >> "$STUB_LOG"
case "$*" in
  *"job status"*) echo '{"last_batch": {"batch_id": 1}}' ;;
esac
"""


def test_streamlit_config_serves_loopback_and_hides_error_details() -> None:
    config = tomllib.loads((PROJECT_ROOT / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
    assert config["server"]["address"] == "127.0.0.1"
    assert config["client"]["showErrorDetails"] == "none"


def run_local(tmp_path: Path, **env: str) -> tuple[str, list[str]]:
    """Run a copy of scripts/run_local.sh with a stub .venv/bin/python; return its output and the stub's calls."""
    root = tmp_path / "project"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(PROJECT_ROOT / "scripts" / "run_local.sh", root / "scripts" / "run_local.sh")
    stub = root / ".venv" / "bin" / "python"
    stub.parent.mkdir(parents=True)
    stub.write_text(STUB)
    stub.chmod(0o755)
    log = tmp_path / "calls.log"
    base = {k: v for k, v in os.environ.items() if not k.startswith("SIGNAL_") and k != "PORT"}
    done = subprocess.run(["bash", str(root / "scripts" / "run_local.sh")], env={
        **base, "STUB_LOG": str(log), "SIGNAL_HOME": str(tmp_path / "home"), **env},
        capture_output=True, text=True, timeout=60, check=True)
    return done.stdout, log.read_text().splitlines()


def streamlit_args(calls: list[str]) -> list[str]:
    [call] = [c for c in calls if c.startswith("-m streamlit run")]
    return call.split()


@pytest.mark.parametrize(("env", "url", "address", "port"), [
    ({}, "http://127.0.0.1:8501", "127.0.0.1", "8501"),
    ({"PORT": "8600"}, "http://127.0.0.1:8600", "127.0.0.1", "8600"),
    ({"SIGNAL_BIND_ADDRESS": "::1", "PORT": "9000"}, "http://[::1]:9000", "::1", "9000"),
])
def test_make_run_serves_loopback_and_prints_the_url_it_serves(tmp_path: Path, env: dict[str, str], url: str,
                                                              address: str, port: str) -> None:
    out, calls = run_local(tmp_path, **env)
    args = streamlit_args(calls)
    assert args[args.index("--server.address") + 1] == address
    assert args[args.index("--server.port") + 1] == port
    assert f"Console: {url} " in out
    assert "WARNING" not in out
    if port != "8501":
        assert "8501" not in out


def test_make_run_warns_when_the_console_is_exposed(tmp_path: Path) -> None:
    out, calls = run_local(tmp_path, SIGNAL_BIND_ADDRESS="0.0.0.0", PORT="8502")
    args = streamlit_args(calls)
    assert args[args.index("--server.address") + 1] == "0.0.0.0"
    assert "WARNING: the console listens on every network interface (0.0.0.0:8502)" in out
    assert "Console: http://localhost:8502 " in out
