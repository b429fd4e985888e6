"""The console as a browser sees it: `streamlit run Home.py` in a subprocess, and Debian's Chromium.

Shared by the browser tests. The console gets a clean environment of its own (no SIGNAL_* or AWS_*
from the caller) plus the settings a test gives; Chromium is launched from /usr/bin/chromium, never
downloaded, and every request it makes for anything but the console is recorded and refused, so no
test reaches the internet (a base map's tiles included).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Route, sync_playwright

from bench.common import free_port, stop_group, wait_healthy
from tests.conftest import PROJECT_ROOT

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SERVER_START_TIMEOUT = 60.0
RENDER_TIMEOUT_MS = 60_000
LAPTOP = {"width": 1280, "height": 800}
WALL = {"width": 1920, "height": 1080}


def require_chromium() -> None:
    """Skip the test when Debian's Chromium is missing."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium; .ci/run does)")


def log_tail(log: Path, chars: int = 3000) -> str:
    return log.read_text(encoding="utf-8", errors="replace")[-chars:] if log.exists() else ""


@contextmanager
def console(home: Path, log: Path, **settings: str) -> Iterator[str]:
    """Run `streamlit run Home.py` on `home` with these SIGNAL_* settings; yield its base URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIGNAL_", "AWS_"))}
    env.update({"SIGNAL_HOME": str(home), "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false", **settings})
    port = free_port()
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "Home.py", "--server.port", str(port),
             "--server.headless", "true", "--server.address", "127.0.0.1", "--server.fileWatcherType", "none"],
            cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        base_url = f"http://127.0.0.1:{port}"
        wait_healthy(base_url, server, SERVER_START_TIMEOUT, lambda: log_tail(log))
        yield base_url
    finally:
        stop_group(server, grace=10)


@contextmanager
def chromium() -> Iterator[Browser]:
    """Yield headless Debian Chromium."""
    require_chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Elsewhere:
    """Requests a page made for anything but the console: recorded, then refused."""

    urls: list[str] = field(default_factory=list)

    def route(self, route: Route) -> None:
        url = route.request.url
        if url.startswith(("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:")):
            route.continue_()
        else:
            self.urls.append(url)
            route.abort()


def open_page(browser: Browser, url: str, viewport: dict[str, int]) -> tuple[Page, Elsewhere]:
    """Return a new page at `url` (not yet rendered) and the record of its requests elsewhere."""
    page = browser.new_page(viewport=viewport)
    elsewhere = Elsewhere()
    page.route("**/*", elsewhere.route)
    page.goto(url, wait_until="domcontentloaded")
    return page, elsewhere


def page_text(page: Page) -> str:
    return str(page.locator("body").inner_text())


def assert_no_error(page: Page, log: Path, when: str) -> None:
    """Fail on an exception, an error element or Streamlit's "Page not found" dialog on the page."""
    exceptions = page.locator('[data-testid="stException"]')
    assert exceptions.count() == 0, (f"{when}: exception on the page:\n{exceptions.first.inner_text()}\n"
                                     f"server log:\n{log_tail(log)}")
    text = page_text(page)
    for words in ("Page not found", "Traceback"):
        assert words not in text, f"{when}: the page says {words!r}:\n{text[:3000]}"
