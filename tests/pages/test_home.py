"""The console (AppTest) over a lake seeded with pyarrow: tables with the data's as-of time."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from core.backends.local import build_local_backend
from core.config import Settings
from tests.conftest import PROJECT_ROOT
from tests.lake_fixtures import SIGNAL, signal_rows, write_rows


@pytest.fixture(autouse=True)
def fresh_caches() -> None:
    st.cache_resource.clear()
    st.cache_data.clear()


def app() -> AppTest:
    return AppTest.from_file(str(PROJECT_ROOT / "Home.py"), default_timeout=60).run()


def test_home_shows_named_queries_with_as_of_time(clean_environ: Path) -> None:
    start = datetime(2026, 11, 28, 10, 15)
    write_rows(clean_environ / "lake", SIGNAL, 0, signal_rows(start, "Movistar", 30.0, 2))
    write_rows(clean_environ / "lake", SIGNAL, 1, signal_rows(start, "Movistar", 12.0, 2))
    build_local_backend(Settings.from_env({"SIGNAL_HOME": str(clean_environ)})).crawlers.run(
        "crawler_signal_strength_by_operator")

    at = app()
    assert not at.exception
    assert at.sidebar.markdown[0].value.startswith("**Backend:** `LOCAL`")
    assert at.caption[0].value.startswith("Data as of 2026-11-28")
    table = at.dataframe[0].value
    assert table.set_index("operator").loc["Movistar", "avg_signal"] == pytest.approx(42.0 / 4)
    assert table.set_index("operator").loc["Movistar", "samples"] == 4


def test_home_without_data_says_so_instead_of_failing(clean_environ: Path) -> None:
    at = app()
    assert not at.exception
    assert all(c.value.startswith("Data as of no data yet") for c in at.caption)


def test_bad_setting_is_shown_as_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIGNAL_TRIGGER_SECONDS", "soon")
    at = app()
    assert not at.exception
    assert "SIGNAL_TRIGGER_SECONDS" in at.error[0].value
