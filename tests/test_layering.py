"""The dependency direction of DESIGN.md: nothing in core/ imports glue_job/, ui/ or pages/, anywhere in a
module (a function-level import counts too: the console image carries no glue_job and no PySpark)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ABOVE_CORE = {"glue_job", "ui", "pages", "streamlit"}


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_core_imports_nothing_above_it() -> None:
    offenders = {str(path.relative_to(ROOT)): sorted(imported(path) & ABOVE_CORE)
                 for path in (ROOT / "core").rglob("*.py") if imported(path) & ABOVE_CORE}
    assert offenders == {}
