"""Shared fixtures: tests never see the developer's environment or the cloud."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_CSV = PROJECT_ROOT / "data" / "mobile_logs.csv"


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Clear AWS_* and SIGNAL_* settings and point SIGNAL_HOME at the test's own folder."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "SIGNAL_")):
            monkeypatch.delenv(name)
    home = tmp_path / "signal_home"
    monkeypatch.setenv("SIGNAL_HOME", str(home))
    return home
