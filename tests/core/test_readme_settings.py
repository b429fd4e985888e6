"""README documents every setting the code reads, and nothing else."""

from __future__ import annotations

import re

from core.config import SETTINGS
from tests.conftest import PROJECT_ROOT


def documented_settings() -> list[str]:
    text = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Settings", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `(SIGNAL_[A-Z_]+)` \|", section, flags=re.MULTILINE)


def test_readme_settings_table_lists_exactly_the_settings_in_code() -> None:
    assert documented_settings() == [spec.env for spec in SETTINGS]


def test_every_setting_has_a_default_row_and_a_meaning() -> None:
    for spec in SETTINGS:
        assert spec.doc.strip(), spec.env
