"""Every page in a real browser, at a laptop's size (1280x800) and the wall's (1920x1080).

One console (`streamlit run Home.py`) serves a seeded lake: the pages' tables, a job status with a
watermark (so part of "Signal per minute" is provisional), three replays close together (so its
marks crowd), records without an operator, and a block of coverage cells in Madrid. For each page
and size the test saves screenshots under tmp_path and asserts what makes a page readable: nothing
scrolls sideways, no text is cut short (labels, buttons, tiles), and no chart text (annotations,
replay marks, notes) leaves its chart or overlaps another text, the legend or the axes.

Other tests here: every page URL with ?kiosk=1 lands on the wall without "Page not found" (on a
console's first session too, which Streamlit routes itself); the coverage map on a base map whose
tiles the browser loads; and with SIGNAL_MAP_TILES=off, no tile requested from anywhere.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Route
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from core.lake_layout import COVERAGE_GRID, SIGNAL_STRENGTH_BY_OPERATOR
from tests.browser.console import (
    LAPTOP,
    RENDER_TIMEOUT_MS,
    WALL,
    Elsewhere,
    assert_no_error,
    chromium,
    console,
    open_page,
    require_chromium,
)
from tests.lake_fixtures import write_rows
from tests.pages.seed import seed

pytestmark = pytest.mark.slow

# The console's page URLs: each page's file name, the overview at the root (Home.py's PAGES).
PAGE_PATHS = ("", "live_aggregations", "pipeline_health", "audit_log", "demo_replay", "wall_display")
CRAWLED_TABLES = ("signal_strength_by_operator", "gps_precision_by_provider", "status_count", "coverage_grid",
                  "quarantine")
MADRID_CELLS = [(round(40.40 + 0.01 * row, 2), round(-3.72 + 0.01 * column, 2))
                for row in range(4) for column in range(5)]

# What a reader sees as broken: a sideways scroll, text cut short with an ellipsis (or clipped), a button
# wider than itself; in a chart, an annotation outside the chart or over another text, the legend, a tick
# label, an axis title or the colour bar. Hidden elements (the 1-px skip link) are not read.
LAYOUT_JS = """() => {
  const problems = [];
  const shown = e => e.getClientRects().length > 0 && getComputedStyle(e).visibility !== 'hidden';
  const name = e => (e.getAttribute('data-testid') || e.tagName.toLowerCase()) + ' "'
    + (e.innerText || e.textContent || '').trim().slice(0, 60) + '"';
  const root = document.documentElement;
  if (root.scrollWidth > window.innerWidth + 1) problems.push(`the page scrolls sideways: ${root.scrollWidth} px`);
  for (const e of document.querySelectorAll('body *')) {
    if (!shown(e) || e.closest('svg, canvas, .maplibregl-map, [data-testid="stDataFrame"], [data-testid="stCode"]'))
      continue;
    const style = getComputedStyle(e);
    const clips = style.textOverflow === 'ellipsis' || (style.overflowX === 'hidden' && style.whiteSpace === 'nowrap');
    if (clips && e.clientWidth > 1 && e.scrollWidth > e.clientWidth + 1 && (e.innerText || '').trim())
      problems.push(`text cut short: ${name(e)} (${e.scrollWidth} px in ${e.clientWidth})`);
  }
  for (const b of document.querySelectorAll('button'))
    if (shown(b) && b.scrollWidth > b.clientWidth + 1) problems.push(`button wider than itself: ${name(b)}`);
  const box = e => { const r = e.getBoundingClientRect(); return {l: r.left, t: r.top, r: r.right, b: r.bottom}; };
  const meet = (a, b) => a.l < b.r - 1 && b.l < a.r - 1 && a.t < b.b - 1 && b.t < a.b - 1;
  const inside = (a, b) => a.l >= b.l - 1 && a.r <= b.r + 1 && a.t >= b.t - 1 && a.b <= b.b + 1;
  for (const plot of document.querySelectorAll('.js-plotly-plot')) {
    if (!shown(plot)) continue;
    const chart = box(plot.querySelector('.main-svg'));
    const texts = [];
    const add = (kind, selector) => plot.querySelectorAll(selector).forEach(e => {
      const text = (e.textContent || '').trim();
      if (shown(e) && text) texts.push({kind, text: text.slice(0, 40), box: box(e)});
    });
    add('annotation', 'g.annotation');
    add('legend', 'g.legend');
    add('tick label', 'g[class$="tick"] > text');
    add('axis title', 'g[class^="g-"][class$="title"] text');
    add('colour bar', 'g.colorbar');
    for (const t of texts)
      if (t.kind === 'annotation' && !inside(t.box, chart)) problems.push(`chart text outside its chart: "${t.text}"`);
    for (let i = 0; i < texts.length; i++) for (let j = i + 1; j < texts.length; j++) {
      const [a, b] = [texts[i], texts[j]];
      const checked = a.kind === 'annotation' || b.kind === 'annotation'
        || ((a.kind === 'legend' || b.kind === 'legend') && a.kind !== b.kind);
      if (checked && meet(a.box, b.box))
        problems.push(`chart texts overlap: ${a.kind} "${a.text}" and ${b.kind} "${b.text}"`);
    }
  }
  return problems;
}"""
RENDERED_JS = """charts => {
  const shown = s => Array.from(document.querySelectorAll(s)).filter(e => e.getClientRects().length > 0);
  const running = shown('[data-testid="stStatusWidget"]').some(e => /running/i.test(e.innerText));
  const drawn = shown('[data-testid="stPlotlyChart"]').filter(c => c.querySelector('.main-svg g.infolayer'));
  return !running && shown('[data-testid="stMainBlockContainer"]').length > 0 && drawn.length >= charts
    && shown('[data-testid="stSkeleton"]').length === 0;
}"""
# The charts each page draws once it has run (the wall: its two view panels).
CHARTS = {"": 0, "live_aggregations": 5, "pipeline_health": 1, "audit_log": 0, "demo_replay": 0, "wall_display": 2}
MAP_JS = """() => {
  const plot = Array.from(document.querySelectorAll('.js-plotly-plot')).find(p => p._fullLayout && p._fullLayout.map);
  if (!plot) return null;
  const map = plot._fullLayout.map._subplot.map;
  const canvas = plot.querySelector('canvas.maplibregl-canvas');
  return {canvas: canvas ? [canvas.clientWidth, canvas.clientHeight] : null, loaded: map.loaded(),
          layers: map.getStyle().layers.map(l => l.id)};
}"""


@dataclass(frozen=True)
class Console:
    """A running console: its URL, its log and the time its lake was seeded at."""

    url: str
    log: Path
    now: datetime


def seed_console(home: Path, now: datetime) -> None:
    """Seed tests/pages/seed.py's lake plus what makes the pages crowded (see the module docstring)."""
    seed(home, now)
    lake = home / "lake"
    minute = now.astimezone(UTC).replace(second=0, microsecond=0, tzinfo=None)
    for ago, batch in ((2, 11), (30, 12)):
        start = minute - timedelta(minutes=ago)
        write_rows(lake, SIGNAL_STRENGTH_BY_OPERATOR, batch, [{
            "window_start": start, "window_end": start + timedelta(minutes=1), "operator": "unknown",
            "network": "unknown", "signal_sum": 12.0, "signal_count": 3, "signal_min": 2.0, "signal_max": 6.0,
            "record_count": 4}])
    hour = minute.replace(minute=0)
    write_rows(lake, COVERAGE_GRID, 13, [{
        "window_start": hour, "window_end": hour + timedelta(seconds=COVERAGE_GRID.window_seconds), "lat_cell": lat,
        "lon_cell": lon, "operator": "Movistar", "signal_sum": 4.0 * (index + 5), "signal_count": 4,
        "record_count": 5} for index, (lat, lon) in enumerate(MADRID_CELLS)])
    batch = {"batch_id": 7, "time": (now - timedelta(seconds=30)).isoformat(), "input_rows": 100,
             "aggregated_rows": 98, "quarantined_rows": 2, "duration_ms": 1800, "input_rows_per_second": 5.0,
             "processed_rows_per_second": 50.0, "watermark": (now - timedelta(minutes=5)).isoformat()}
    (lake / "_job").mkdir(parents=True, exist_ok=True)
    (lake / "_job" / "status.json").write_text(json.dumps(
        {"state": "STOPPED", "totals": {"batches": 7, "input_rows": 700}, "last_batch": batch,
         "recent_batches": [batch]}))
    # Within the 1 h range whatever the time: it ends at most a refresh (10 min) ahead of now.
    replays = [("a", 40, 35), ("b", 20, 19.7), ("c", 19.9, None)]  # b and c start 6 s apart
    (home / "demo").mkdir(parents=True, exist_ok=True)
    (home / "demo" / "replays.jsonl").write_text("".join(json.dumps({
        "replay_id": f"r20261206T120000-{name * 6}", "source_name": "sample", "started_by": "ana",
        "started_at": (now - timedelta(minutes=start)).isoformat(),
        "ended_at": (now - timedelta(minutes=end)).isoformat() if end is not None else None,
        "sent": 10, "rejected": 0, "failed": 0, "stopped": False, "time_mode": "live", "rate": 50.0}) + "\n"
        for name, start, end in replays))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """Seed a lake and serve the console on it for the module (base maps from OpenStreetMap)."""
    require_chromium()
    home = tmp_path_factory.mktemp("console") / "signal_home"
    now = datetime.now(UTC)
    seed_console(home, now)
    log = home.parent / "streamlit.log"
    # A refresh of 10 minutes and a wall that does not rotate: pages hold still while they are measured (the
    # 1 h range still holds the seed).
    with console(home, log, SIGNAL_REFRESH_SECONDS="600", SIGNAL_ROTATE_SECONDS="3600", SIGNAL_MAP_TILES="osm") as url:
        yield Console(url, log, now)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as opened:
        yield opened


def grey_tile() -> bytes:
    """Return a 256x256 grey PNG, what the tile server answers in these tests."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + b"\xc8" * 3 * 256 for _ in range(256))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 256, 256, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def rendered(page: Page, served: Console, when: str, charts: int = 0) -> None:
    """Wait until the page has run, drawn at least `charts` charts and settled."""
    try:
        page.wait_for_function(RENDERED_JS, arg=charts, timeout=RENDER_TIMEOUT_MS)
    except PlaywrightTimeout as error:
        raise AssertionError(f"{when}: not rendered within {RENDER_TIMEOUT_MS // 1000} s ({error}):\n"
                             f"{page.locator('body').inner_text()[:3000]}") from None
    page.wait_for_timeout(1500)  # charts lay out their text after their first draw
    assert_no_error(page, served.log, when)


def screenshots(page: Page, folder: Path, name: str) -> None:
    """Save the window as it is and the whole page (the window stretched to its height)."""
    viewport = page.viewport_size
    assert viewport is not None
    size = f"{viewport['width']}x{viewport['height']}"
    page.screenshot(path=str(folder / f"{name}-{size}.png"))
    height = page.evaluate("""() => Math.ceil(document.querySelector('[data-testid="stMainBlockContainer"]')
      .getBoundingClientRect().bottom) + 40""")
    page.set_viewport_size({"width": viewport["width"], "height": max(viewport["height"], min(int(height), 8000))})
    page.wait_for_timeout(1000)
    whole = folder / f"{name}-{size}-whole.png"
    page.screenshot(path=str(whole))
    page.set_viewport_size(viewport)
    assert whole.stat().st_size > 10_000, f"{whole.name} is only {whole.stat().st_size} bytes"


def layout_problems(page: Page) -> list[str]:
    return list(page.evaluate(LAYOUT_JS))


@pytest.mark.parametrize("size", [LAPTOP, WALL], ids=["1280x800", "1920x1080"])
@pytest.mark.parametrize("path", PAGE_PATHS, ids=[path or "overview" for path in PAGE_PATHS])
def test_every_page_is_readable(served: Console, browser: Browser, tmp_path: Path, path: str,
                                size: dict[str, int]) -> None:
    page, _ = open_page(browser, f"{served.url}/{path}", size)
    try:
        rendered(page, served, f"/{path} at {size}", CHARTS[path])
        problems = layout_problems(page)
        screenshots(page, tmp_path, path or "overview")
        assert not problems, f"/{path} at {size['width']}x{size['height']} (screenshots in {tmp_path}):\n" + \
            "\n".join(problems)
    finally:
        page.close()


def test_signal_per_minute_numbers_crowded_replay_marks_and_keeps_them_off_its_text(
        served: Console, browser: Browser, tmp_path: Path) -> None:
    page, _ = open_page(browser, f"{served.url}/live_aggregations", LAPTOP)
    try:
        rendered(page, served, "live aggregations", CHARTS["live_aggregations"])
        chart = page.locator('[data-testid="stPlotlyChart"]').nth(1)
        marks = chart.locator("g.annotation").evaluate_all(
            "marks => marks.map(m => [m.textContent.trim(), m.getBoundingClientRect().top])")
        # Five marks (three starts, two ends), the provisional band's label, nothing else; b and c start
        # 6 s apart and b ends 18 s after b started: their numbers sit on rows of their own.
        assert sorted(text for text, _ in marks) == ["1", "2", "3", "4", "5", "provisional"], marks
        tops = dict(marks)
        assert len({round(tops[number]) for number in ("3", "4", "5")}) == 3, tops
        assert tops["1"] == tops["2"] == tops["3"], tops  # far apart: the first row
        caption = page.get_by_text("Dotted lines: 1 replay r20261206T120000-aaaaaa started").inner_text()
        assert "5 replay r20261206T120000-bbbbbb finished" in caption
        assert not layout_problems(page)
        chart.screenshot(path=str(tmp_path / "signal-per-minute.png"))
    finally:
        page.close()


def test_crawler_buttons_show_whole_table_names(served: Console, browser: Browser, tmp_path: Path) -> None:
    page, _ = open_page(browser, f"{served.url}/pipeline_health", LAPTOP)
    try:
        rendered(page, served, "pipeline health", CHARTS["pipeline_health"])
        # Each shown button: its label's text, and how wide that text is against the room it has.
        buttons = page.locator("button").filter(has_text="Re-run").evaluate_all("""buttons => buttons
          .filter(b => b.getClientRects().length > 0).map(b => b.querySelector('p'))
          .map(p => [p.textContent.trim(), p.scrollWidth, p.clientWidth])""")
        assert [label for label, _, _ in buttons] == [f"Re-run {table}" for table in CRAWLED_TABLES]
        assert all(needed <= room for _, needed, room in buttons), buttons
        page.screenshot(path=str(tmp_path / "crawlers-1280x800.png"), full_page=True)
    finally:
        page.close()


def serve_tiles(page: Page) -> Elsewhere:
    """Answer the browser's OpenStreetMap tile requests with a grey tile (recorded); refuse anything else."""
    elsewhere = Elsewhere()
    tile = grey_tile()

    def route(route: Route) -> None:
        if route.request.url.startswith("https://tile.openstreetmap.org/"):
            elsewhere.urls.append(route.request.url)
            route.fulfill(status=200, body=tile, content_type="image/png")
        else:
            elsewhere.route(route)

    page.route("**/*", route)
    return elsewhere


def map_info(page: Page) -> dict[str, Any]:
    page.wait_for_function(f"() => {{ const m = ({MAP_JS})(); return m && m.loaded; }}", timeout=RENDER_TIMEOUT_MS)
    return dict(page.evaluate(MAP_JS))


def test_coverage_map_draws_each_cell_at_its_real_size_on_tiles_the_browser_loads(
        served: Console, browser: Browser, tmp_path: Path) -> None:
    page = browser.new_page(viewport=LAPTOP)
    elsewhere = serve_tiles(page)
    try:
        page.goto(f"{served.url}/live_aggregations", wait_until="domcontentloaded")
        rendered(page, served, "coverage map", CHARTS["live_aggregations"])
        info = map_info(page)
        assert info["canvas"] and min(info["canvas"]) > 200, info
        assert any(url.startswith("https://tile.openstreetmap.org/") for url in elsewhere.urls), elsewhere.urls
        # Zoomed out to Spain a cell is a dot; zoomed in on Madrid each seeded cell is the square of its real
        # extent: at a point just inside each corner the map has that cell (plotly gives it its centre, `ct`),
        # and just past its north-east corner the next cell, or none.
        centres = page.evaluate("""cells => {
          const plot = Array.from(document.querySelectorAll('.js-plotly-plot')).find(p => p._fullLayout.map);
          const map = plot._fullLayout.map._subplot.map;
          const layers = type => map.getStyle().layers.filter(l => l.type === type).map(l => l.id);
          const dots = map.queryRenderedFeatures({layers: layers('circle')}).length;
          map.jumpTo({center: [-3.695, 40.42], zoom: 12});
          return new Promise(done => map.once('idle', () => {
            const at = (lon, lat) => map.queryRenderedFeatures(map.project([lon, lat]), {layers: layers('fill')})
              .map(f => f.properties.ct.map(v => Math.round(v * 1e4) / 1e4).join(','));
            done({dots, squares: cells.map(([lat, lon]) => [at(lon + 0.0005, lat + 0.0005),
              at(lon + 0.0095, lat + 0.0095), at(lon + 0.0105, lat + 0.0105)]),
              shownDots: map.queryRenderedFeatures({layers: layers('circle')}).length});
          }));
        }""", MADRID_CELLS)
        assert centres["dots"] >= 2, centres  # Madrid's block and Barcelona's cell, at least
        assert centres["shownDots"] == 0, centres  # squares instead, once they are big enough
        for (lat, lon), (south_west, north_east, beyond) in zip(MADRID_CELLS, centres["squares"], strict=True):
            mine = f"{round(lon + 0.005, 4):g},{round(lat + 0.005, 4):g}"
            assert south_west == north_east == [mine], (lat, lon, south_west, north_east)
            assert mine not in beyond, (lat, lon, beyond)
        page.locator('[data-testid="stPlotlyChart"]').nth(3).screenshot(path=str(tmp_path / "map-madrid.png"))
    finally:
        page.close()


def test_without_tiles_the_map_requests_nothing_from_elsewhere(browser: Browser, tmp_path: Path) -> None:
    home = tmp_path / "signal_home"
    now = datetime.now(UTC)
    seed_console(home, now)
    log = tmp_path / "streamlit.log"
    with console(home, log, SIGNAL_REFRESH_SECONDS="600", SIGNAL_MAP_TILES="off") as url:
        served = Console(url, log, now)
        for path, size in (("live_aggregations", LAPTOP), ("wall_display?kiosk=1", WALL)):
            page, elsewhere = open_page(browser, f"{url}/{path}", size)
            try:
                rendered(page, served, f"/{path} without tiles", 2)
                if "kiosk" not in path:
                    coverage = page.locator('[data-testid="stPlotlyChart"]').nth(3)
                    assert coverage.locator(".xtitle").text_content() == "Longitude (degrees east)"
                assert page.locator(".maplibregl-canvas").count() == 0
                page.wait_for_timeout(2000)
                assert elsewhere.urls == []  # the page icon included: it is served by the console
                screenshots(page, tmp_path, f"no-tiles-{path.split('?')[0]}")
            finally:
                page.close()


def test_every_page_url_with_kiosk_lands_on_the_wall_without_page_not_found(
        browser: Browser, tmp_path: Path) -> None:
    home = tmp_path / "signal_home"
    now = datetime.now(UTC)
    seed_console(home, now)
    log = tmp_path / "streamlit.log"
    # A console of its own: its first session (the wall's own URL) is the one Streamlit routes from pages/.
    with console(home, log, SIGNAL_REFRESH_SECONDS="600") as url:
        served = Console(url, log, now)
        for path in ("wall_display", *(p for p in PAGE_PATHS if p != "wall_display")):
            page, _ = open_page(browser, f"{url}/{path}?kiosk=1", WALL)
            try:
                page.wait_for_function("""() => Array.from(document.querySelectorAll('[data-testid="stMetric"]'))
                  .filter(e => e.getClientRects().length > 0).length >= 4""", timeout=RENDER_TIMEOUT_MS)
                rendered(page, served, f"/{path}?kiosk=1", CHARTS["wall_display"])
                assert page.get_by_text("Page not found").count() == 0
                assert not [e for e in page.locator('[data-testid="stSidebar"]').all() if e.is_visible()]
                assert page.get_by_text("next view in").count() == 1  # the wall's caption
                screenshots(page, tmp_path, f"kiosk-{path or 'root'}")
            finally:
                page.close()


def test_the_wall_rotates_through_its_views_and_each_is_readable(browser: Browser, tmp_path: Path) -> None:
    home = tmp_path / "signal_home"
    now = datetime.now(UTC)
    seed_console(home, now)
    log = tmp_path / "streamlit.log"
    with console(home, log, SIGNAL_REFRESH_SECONDS="600", SIGNAL_ROTATE_SECONDS="10", SIGNAL_MAP_TILES="osm") as url:
        served = Console(url, log, now)
        page = browser.new_page(viewport=WALL)
        serve_tiles(page)
        try:
            page.goto(f"{url}/?kiosk=1", wait_until="domcontentloaded")
            for view in ("Signal", "Coverage", "Network status"):
                page.get_by_text(f"{view} · data as of").wait_for(timeout=RENDER_TIMEOUT_MS)
                rendered(page, served, f"the wall's {view} view", CHARTS["wall_display"])
                if view == "Coverage":
                    info = map_info(page)
                    assert info["canvas"] and min(info["canvas"]) > 300, info
                problems = layout_problems(page)
                page.screenshot(path=str(tmp_path / f"wall-{view.lower().replace(' ', '-')}-1920x1080.png"))
                assert not problems, f"the wall's {view} view:\n" + "\n".join(problems)
        finally:
            page.close()


# The live page's view as its widgets show it: the selected range and each filter's chosen values.
VIEW_JS = """() => ({
  range: (document.querySelector('button[data-variant="segmented_control"][aria-checked="true"]')?.innerText || '')
    .trim(),
  filters: Object.fromEntries(Array.from(document.querySelectorAll('[data-testid="stMultiSelect"]')).map(m => [
    m.querySelector('[data-testid="stWidgetLabel"]').innerText.trim(),
    Array.from(m.querySelectorAll('[data-tag]')).map(t => t.getAttribute('aria-label'))])),
})"""


def live_view(page: Page, served: Console, when: str, range_label: str) -> dict[str, Any]:
    """Wait until the live page has run with `range_label` selected; return its view."""
    page.wait_for_function(f"() => ({VIEW_JS})().range === {json.dumps(range_label)}", timeout=RENDER_TIMEOUT_MS)
    rendered(page, served, when, CHARTS["live_aggregations"])
    return dict(page.evaluate(VIEW_JS))


def test_a_shared_url_reproduces_the_view_and_back_and_forward_step_through_views(
        served: Console, browser: Browser, tmp_path: Path) -> None:
    shared = "range=6h&operator=Yoigo&provider=gps"
    page, _ = open_page(browser, f"{served.url}/live_aggregations?{shared}", LAPTOP)
    try:
        opened = live_view(page, served, "the shared URL", "6 h")
        assert opened == {"range": "6 h", "filters": {"Operators": ["Yoigo"], "Providers": ["gps"]}}
        assert page.url == f"{served.url}/live_aggregations?{shared}"  # opening a link rewrites nothing
        screenshots(page, tmp_path, "shared-view")

        page.locator('button[data-variant="segmented_control"]', has_text="24 h").click()
        page.wait_for_url(lambda url: "range=24h" in url, timeout=RENDER_TIMEOUT_MS)
        assert page.url == f"{served.url}/live_aggregations?range=24h&operator=Yoigo&provider=gps"
        assert live_view(page, served, "after choosing 24 h", "24 h")["filters"] == opened["filters"]

        page.go_back()  # the URL the link opened, and the page shows its view again
        assert live_view(page, served, "after Back", "6 h") == opened
        assert page.url == f"{served.url}/live_aggregations?{shared}"
        page.go_forward()
        assert live_view(page, served, "after Forward", "24 h")["filters"] == opened["filters"]
        assert "range=24h" in page.url
    finally:
        page.close()
