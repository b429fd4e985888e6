"""The wall display in a real browser: Home.py?kiosk=1 served by `streamlit run`, driven by Chromium.

The lake is seeded with pyarrow (all four aggregation tables, windows in the last minutes) and
catalogued; the console runs as a subprocess with a 2 s refresh and a 4 s rotation. The test checks
what an unattended screen must do: show KPI tiles and charts with no navigation and no errors, and
pick up new data by itself, without a click.

Needs Debian's /usr/bin/chromium (.ci/run installs it); skipped when it is missing.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from core.backends.local import build_local_backend
from core.config import Settings
from core.lake_layout import (
    AGGREGATION_TABLES,
    COVERAGE_GRID,
    GPS_PRECISION_BY_PROVIDER,
    SIGNAL_STRENGTH_BY_OPERATOR,
    STATUS_COUNT,
    TableSpec,
)
from tests.browser.console import RENDER_TIMEOUT_MS, WALL, chromium, console, log_tail, require_chromium
from tests.lake_fixtures import write_rows

pytestmark = pytest.mark.slow

REFRESH_SECONDS = 2
ROTATE_SECONDS = 4
REFRESH_TIMEOUT = 30.0

OPERATORS = ("Movistar", "Claro", "Tigo")
NEW_OPERATOR = "Wom"  # only in the later batch: the operator count changes too
PROVIDERS = ("gps", "network", "fused")
POSTAL_CODES = ("110111", "110221", "050001")
STATUSES = (("OK", "In service"), ("NO_SERVICE", "No service"), ("EMERGENCY", "Emergency calls only"))

# One visible tile: its label and its full text (value and delta); the value must have rendered.
METRICS_JS = """() => Array.from(document.querySelectorAll('[data-testid="stMetric"]'))
  .filter(m => m.getClientRects().length > 0)
  .map(m => ({
    label: (m.querySelector('[data-testid="stMetricLabel"]')?.innerText || '').trim(),
    value: (m.querySelector('[data-testid="stMetricValue"]')?.innerText || '').trim(),
    text: m.innerText.trim(),
  }))
  .filter(m => m.value !== '')"""
AS_OF = re.compile(r"as of.*\d{1,2}:\d{2}", re.IGNORECASE | re.DOTALL)


# --- the lake ------------------------------------------------------------------------------------

def utc_minute(moment: datetime) -> datetime:
    """Return the start of the moment's minute as a naive UTC datetime (the lake's timestamps)."""
    return moment.astimezone(UTC).replace(tzinfo=None, second=0, microsecond=0)


def aggregate_rows(spec: TableSpec, start: datetime, operators: tuple[str, ...], scale: int) -> list[dict[str, Any]]:
    """Return partial aggregate rows of one table for the 1-minute window at `start`.

    `scale` multiplies every count, so a later batch with a larger scale changes every total.
    """
    end = start + timedelta(minutes=1)
    window = {"window_start": start, "window_end": end}
    if spec is SIGNAL_STRENGTH_BY_OPERATOR:
        return [{**window, "operator": op, "network": op, "signal_count": 10 * scale * (i + 1),
                 "signal_sum": (12.0 + 3 * i + scale) * 10 * scale * (i + 1), "signal_min": 2.0 + i,
                 "signal_max": 28.0 + i, "record_count": 11 * scale * (i + 1)} for i, op in enumerate(operators)]
    if spec is GPS_PRECISION_BY_PROVIDER:
        return [{**window, "provider": p, "precision_count": 8 * scale * (i + 1),
                 "precision_sum": (5.0 + 4 * i) * 8 * scale * (i + 1), "satellites_count": 8 * scale * (i + 1),
                 "satellites_sum": (7.0 + i) * 8 * scale * (i + 1)} for i, p in enumerate(PROVIDERS)]
    if spec is STATUS_COUNT:
        return [{**window, "postal_code": code, "status": status, "description": description,
                 "record_count": scale * (5 + 3 * i + j)}
                for i, code in enumerate(POSTAL_CODES) for j, (status, description) in enumerate(STATUSES)]
    if spec is COVERAGE_GRID:
        return [{**window, "lat_cell": 4.60 + 0.01 * (k % 4), "lon_cell": -74.08 + 0.01 * (k // 4),
                 "operator": op, "signal_count": 6 * scale, "signal_sum": (10.0 + 2 * i + k) * 6 * scale,
                 "record_count": 7 * scale}
                for i, op in enumerate(operators) for k in range(8)]
    raise ValueError(f"not an aggregation table: {spec.name}")


def write_batch(home: Path, batch_id: int, start: datetime, operators: tuple[str, ...], scale: int) -> None:
    """Write one micro-batch file per aggregation table, as the streaming job would."""
    for spec in AGGREGATION_TABLES:
        write_rows(home / "lake", spec, batch_id, aggregate_rows(spec, start, operators, scale))


def seed_lake(home: Path, now: datetime) -> None:
    """Write two batches (the two minutes before `now`) to every aggregation table and crawl them all."""
    write_batch(home, 0, utc_minute(now) - timedelta(minutes=2), OPERATORS, scale=1)
    write_batch(home, 1, utc_minute(now) - timedelta(minutes=1), OPERATORS, scale=2)
    crawlers = build_local_backend(Settings.from_env({"SIGNAL_HOME": str(home)})).crawlers
    for spec in AGGREGATION_TABLES:
        state = crawlers.run(spec.crawler, timeout=60)
        assert state.last_result == "SUCCEEDED", f"{spec.crawler}: {state.last_result} {state.message}"


# --- the console ---------------------------------------------------------------------------------

@pytest.fixture
def wall(clean_environ: Path, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Seed the lake, start `streamlit run Home.py`; yield (base URL, server log); stop it afterwards."""
    require_chromium()
    seed_lake(clean_environ, datetime.now(UTC))
    log = tmp_path / "streamlit.log"
    with console(clean_environ, log, SIGNAL_REFRESH_SECONDS=str(REFRESH_SECONDS),
                 SIGNAL_ROTATE_SECONDS=str(ROTATE_SECONDS)) as base_url:
        yield base_url, log


# --- the page ------------------------------------------------------------------------------------

def metrics(page: Page) -> list[dict[str, str]]:
    return list(page.evaluate(METRICS_JS))


def as_of_caption(page: Page) -> str | None:
    captions = page.evaluate("""() => Array.from(document.querySelectorAll('[data-testid="stCaptionContainer"]'))
      .filter(c => c.getClientRects().length > 0).map(c => c.innerText.trim())""")
    return next((text for text in captions if AS_OF.search(text)), None)


def assert_clean(page: Page, log: Path, when: str) -> None:
    for testid in ("stSidebar", "stSidebarNav"):
        shown = [el for el in page.locator(f'[data-testid="{testid}"]').all() if el.is_visible()]
        assert not shown, f"{when}: the wall display shows [data-testid={testid}]"
    exceptions = page.locator('[data-testid="stException"]')
    assert exceptions.count() == 0, (f"{when}: exception on the page:\n{exceptions.first.inner_text()}\n"
                                     f"server log:\n{log_tail(log)}")
    text = page.locator("body").inner_text()
    for word in ("Traceback", "Error"):
        assert word not in text, f"{when}: page text contains {word!r}:\n{text[:3000]}"


def stable_tiles(page: Page, seconds: float) -> dict[str, str]:
    """Watch the tiles for `seconds` (no new data meanwhile); return label -> text of those that held still.

    Tiles that change on their own (a clock, an age) or that a rotation shows with different values
    cannot prove a data refresh, so they are left out.
    """
    seen: dict[str, set[str]] = {}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for tile in metrics(page):
            seen.setdefault(tile["label"], set()).add(tile["text"])
        page.wait_for_timeout(400)
    return {label: next(iter(texts)) for label, texts in seen.items() if len(texts) == 1}


def test_wall_display_shows_tiles_and_charts_and_refreshes_unattended(
        wall: tuple[str, Path], clean_environ: Path, tmp_path: Path) -> None:
    base_url, log = wall
    with chromium() as browser:
        page = browser.new_page(viewport=WALL)
        page.goto(f"{base_url}/?kiosk=1", wait_until="domcontentloaded")
        try:
            page.wait_for_function(
                """() => {
                  const shown = s => Array.from(document.querySelectorAll(s))
                    .filter(e => e.getClientRects().length > 0).length;
                  return shown('[data-testid="stMetric"]') >= 3 && shown('[data-testid="stPlotlyChart"]') >= 2;
                }""",
                timeout=RENDER_TIMEOUT_MS,
            )
        except PlaywrightTimeout as error:
            page.screenshot(path=str(tmp_path / "wall-timeout.png"))
            raise AssertionError(
                f"no 3 KPI tiles and 2 charts within {RENDER_TIMEOUT_MS // 1000} s ({error}); page text:\n"
                f"{page.locator('body').inner_text()[:3000]}\nserver log:\n{log_tail(log)}") from None
        page.wait_for_function(f"() => ({METRICS_JS})().length >= 3", timeout=RENDER_TIMEOUT_MS)
        assert_clean(page, log, "first render")

        first = metrics(page)[0]
        as_of_before = as_of_caption(page)
        # Two refreshes and a rotation with no new data: what stays put is driven by the data.
        before = stable_tiles(page, max(2 * REFRESH_SECONDS, ROTATE_SECONDS) + 2)
        assert before, "every KPI tile changed while no new data arrived; none can show a refresh"

        # A later batch with larger counts and one more operator, as the streaming job would add it.
        write_batch(clean_environ, 2, utc_minute(datetime.now(UTC)), (*OPERATORS, NEW_OPERATOR), scale=5)

        changed: dict[str, tuple[str, str]] = {}
        deadline = time.monotonic() + REFRESH_TIMEOUT
        while not changed and time.monotonic() < deadline:
            page.wait_for_timeout(500)
            changed = {t["label"]: (before[t["label"]], t["text"]) for t in metrics(page)
                       if t["label"] in before and t["text"] != before[t["label"]]}
        assert changed, (
            f"no KPI tile changed within {REFRESH_TIMEOUT:.0f} s of new data, without a click; "
            f"first tile {first['text']!r}, as-of caption {as_of_before!r}, tiles before {before}, "
            f"now {metrics(page)}")
        print(f"\nfirst tile: {first['text']!r}; as of before: {as_of_before!r}; after: {as_of_caption(page)!r}")
        print(f"changed without a click: {changed}")
        assert_clean(page, log, "after the refresh")

        shot = tmp_path / "wall.png"
        page.screenshot(path=str(shot))
        assert shot.stat().st_size > 10_000, f"screenshot is only {shot.stat().st_size} bytes"
