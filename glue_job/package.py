"""Build the Glue job's artefacts: the script (dist/job.py) and its modules (dist/signal_stream_job.zip).

Glue runs the script and puts the zip on the path through `--extra-py-files`. The zip holds exactly
what the script imports from this repository (not core/backends, not the console), and the build
fails when a packaged module imports a project module the zip does not carry. Run it with
`make package-job` or `python -m glue_job.package [--out DIR]`. Entries carry a fixed timestamp, so
the same sources always give the same zip.
"""

from __future__ import annotations

import argparse
import ast
import shutil
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
JOB_MODULES: tuple[str, ...] = (
    "core/__init__.py",
    "core/records.py",
    "core/lake_layout.py",
    "glue_job/__init__.py",
    "glue_job/transforms.py",
    "glue_job/sink.py",
    "glue_job/status.py",
)
SCRIPT = "glue_job/job.py"
ZIP_NAME = "signal_stream_job.zip"
SCRIPT_NAME = "job.py"
PROJECT_PACKAGES = ("core", "glue_job")
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def _module_path(module: str) -> str:
    return module.replace(".", "/") + ".py"


def project_imports(source: str) -> set[str]:
    """Return the project modules (core.*, glue_job.*) a Python source imports."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from glue_job import transforms` imports a module; `from core.x import NAME` a name.
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        found.update(name for name in names if name.split(".")[0] in PROJECT_PACKAGES)
    return found


def missing_modules(root: Path = ROOT) -> list[str]:
    """Return the project modules that the script or a packaged module imports but the zip lacks."""
    packaged = set(JOB_MODULES)
    missing: set[str] = set()
    for relative in (*JOB_MODULES, SCRIPT):
        for module in project_imports((root / relative).read_text(encoding="utf-8")):
            as_module, as_package = _module_path(module), module.replace(".", "/") + "/__init__.py"
            exists = (root / as_module).is_file() or (root / as_package).is_file()
            if exists and as_module not in packaged and as_package not in packaged:
                missing.add(module)
    return sorted(missing)


def build(out: Path, root: Path = ROOT) -> tuple[Path, Path]:
    """Write the zip and the script into `out`; return their paths."""
    missing = missing_modules(root)
    if missing:
        raise SystemExit(f"error: the Glue job imports modules the package leaves out: {', '.join(missing)}")
    out.mkdir(parents=True, exist_ok=True)
    archive = out / ZIP_NAME
    partial = out / f".{ZIP_NAME}.partial"
    with zipfile.ZipFile(partial, "w") as bundle:
        for relative in JOB_MODULES:
            entry = zipfile.ZipInfo(relative, date_time=_ZIP_TIME)
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o644 << 16
            bundle.writestr(entry, (root / relative).read_bytes())
    partial.replace(archive)
    script = out / SCRIPT_NAME
    shutil.copyfile(root / SCRIPT, script)
    return archive, script


def main(argv: Sequence[str] | None = None) -> int:
    """Build the artefacts and print where they are."""
    parser = argparse.ArgumentParser(prog="python -m glue_job.package", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="output folder (default: dist/)")
    options = parser.parse_args(argv)
    archive, script = build(options.out)
    print(f"{script}  (the job script)\n{archive}  (--extra-py-files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
