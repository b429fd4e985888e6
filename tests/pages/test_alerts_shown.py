"""Firing alerts reach the console: a panel on the Overview and a banner on the wall (the loop's state on disk)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from tests.harness import open_page, page_text
from tests.pages.seed import seed as seed_lake
from tests.ui.test_alerts import FIRING
from tests.ui.test_alerts import seed as seed_alerts


def test_the_overview_shows_firing_alerts_and_the_wall_a_banner(clean_environ: Path) -> None:
    seed_lake(clean_environ)
    seed_alerts(clean_environ, FIRING, evaluated=datetime.now(UTC))

    overview = open_page()
    assert not overview.exception
    assert "Alerts" in [s.value for s in overview.subheader]
    assert any("the streaming job etl is STOPPED" in e.value for e in overview.error)

    wall = open_page("pages/wall_display.py")
    assert not wall.exception
    banner = next(e.value for e in wall.error if e.value.startswith("ALERT: "))
    assert "the streaming job etl is STOPPED" in banner and "came too late" in banner


def test_no_banner_on_the_wall_while_nothing_fires(clean_environ: Path) -> None:
    seed_lake(clean_environ)
    wall = open_page("pages/wall_display.py")
    assert not wall.exception
    assert "ALERT: " not in page_text(wall)
