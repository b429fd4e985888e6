"""Build the Glue job's artefacts: the script, its modules, and the wheels of the Python packages it installs.

Glue runs the script (dist/job.py) and puts the zip (dist/signal_stream_job.zip) on the path through
`--extra-py-files`. The zip holds exactly what the script imports from this repository (not core/backends,
not the console), and the build fails when a packaged module imports a project module the zip does not
carry. Entries carry a fixed timestamp, so the same sources always give the same zip.

The job also needs `deltalake`, which Glue does not ship. Glue installs it with pip from the wheels the
job's `--additional-python-modules` names (s3://<bucket>/jobs/wheels/, uploaded by infra/deploy.sh),
with `--no-index`, so a job without an internet route installs it too. Those wheels are deltalake and its
runtime dependencies exactly as requirements.lock pins them (`job_requirements`): dist/job-requirements.txt
lists them with the lock's hashes, and `pip download --require-hashes` fetches the Glue (Linux x86_64,
CPython 3.11) wheel of each into dist/wheels/. The build fails when a downloaded wheel is not the lock's,
or when infra/template.yaml names other wheels than these.

Run it with `make package-job` or `python -m glue_job.package [--out DIR] [--no-wheels]`.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import Marker
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import canonicalize_name, parse_wheel_filename

ROOT = Path(__file__).resolve().parents[1]
JOB_MODULES: tuple[str, ...] = (
    "core/__init__.py",
    "core/records.py",
    "core/job_defaults.py",
    "core/lake_layout.py",
    "core/delta_lake.py",
    "core/durable.py",
    "glue_job/__init__.py",
    "glue_job/transforms.py",
    "glue_job/sink.py",
    "glue_job/status.py",
    "glue_job/lake_files.py",
    "glue_job/app_identity.py",
    "glue_job/maintenance.py",
)
SCRIPT = "glue_job/job.py"
ZIP_NAME = "signal_stream_job.zip"
SCRIPT_NAME = "job.py"
PROJECT_PACKAGES = ("core", "glue_job")
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)

# --- the packages Glue installs for the job --------------------------------------------------------------
LOCK = "requirements.lock"
TEMPLATE = "infra/template.yaml"
# What the job imports beyond Glue's own modules; their runtime dependencies follow from the lock. pyarrow
# too, whatever version Glue ships: the sink hands Arrow tables to delta-rs through the PyCapsule interface
# (pyarrow 14 and later), and the job then runs the pyarrow the suite tested.
JOB_PACKAGES: tuple[str, ...] = ("deltalake", "pyarrow")
REQUIREMENTS_NAME = "job-requirements.txt"
WHEELS_DIR = "wheels"
# Glue 5.x: CPython 3.11 on Amazon Linux 2023 (glibc 2.34), x86_64 workers. AWS does not fix the patch
# level, so markers are evaluated for 3.11.0.
GLUE_PYTHON = (3, 11)
GLUE_ENVIRONMENT: dict[str, str] = {
    "implementation_name": "cpython",
    "implementation_version": "3.11.0",
    "os_name": "posix",
    "platform_machine": "x86_64",
    "platform_python_implementation": "CPython",
    "platform_system": "Linux",
    "python_full_version": "3.11.0",
    "python_version": "3.11",
    "sys_platform": "linux",
}
GLUE_PLATFORMS: tuple[str, ...] = (
    *(f"manylinux_2_{minor}_x86_64" for minor in range(34, 4, -1)),
    "manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64",
)
_TEMPLATE_WHEEL = re.compile(r"/jobs/wheels/([A-Za-z0-9_.+!-]+\.whl)")


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


# --- the job's Python packages, from the lock ----------------------------------------------------------

@dataclass(frozen=True)
class Pinned:
    """One entry of a uv/pip-compile lock: name and version, marker, hashes, and what pulls it in."""

    name: str
    version: str
    hashes: tuple[str, ...]
    via: frozenset[str]
    marker: str | None = None

    def applies_on_glue(self) -> bool:
        """Return whether this entry is installed on Glue's Python and platform."""
        return self.marker is None or Marker(self.marker).evaluate(GLUE_ENVIRONMENT)

    @property
    def requirement(self) -> str:
        """Return the pin as a requirements line with its hashes (no marker: it was evaluated for Glue)."""
        return " \\\n".join([f"{self.name}=={self.version}", *(f"    --hash={h}" for h in self.hashes)])


_PIN = re.compile(r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;]+)\s*(?:;\s*(?P<marker>.+))?")


def read_lock(text: str) -> list[Pinned]:
    """Return the pinned entries of a lock's text, with their `# via` annotations (canonical names)."""
    pins: list[tuple[str, str, tuple[str, ...], str | None]] = []
    vias: list[set[str]] = []
    in_via = False
    for line in re.sub(r"\\\n", " ", text).splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if not line.startswith((" ", "#")):
            spec, *hashes = re.split(r"\s+--hash=", stripped)
            match = _PIN.fullmatch(spec.strip())
            if match is None:
                raise ValueError(f"not an exact pin in the lock: {spec!r}")
            marker = match.group("marker")
            pins.append((canonicalize_name(match.group("name")), match.group("version"),
                         tuple(h.strip() for h in hashes), marker.strip() if marker else None))
            vias.append(set())
            in_via = False
        elif stripped.startswith("# via") and pins:
            rest = stripped.removeprefix("# via").strip()
            vias[-1].update(_package_names([rest]))
            in_via = not rest
        elif in_via and stripped.startswith("#   "):
            vias[-1].update(_package_names([stripped.removeprefix("#").strip()]))
        else:
            in_via = False
    return [Pinned(name, version, hashes, frozenset(via), marker)
            for (name, version, hashes, marker), via in zip(pins, vias, strict=True)]


def _package_names(names: Iterable[str]) -> set[str]:
    # `-r requirements.txt` and `-c other.lock` name files, not packages.
    return {str(canonicalize_name(name)) for name in names if name and not name.startswith("-")}


def job_requirements(lock_text: str, roots: Iterable[str] = JOB_PACKAGES) -> list[Pinned]:
    """Return `roots` and everything the lock says they pull in, as pinned for Glue, sorted by name.

    An entry belongs when a package already in the set pulls it in (its `# via`), and its marker holds
    on Glue's Python; the lock must hold exactly one such entry per name, with hashes.
    """
    on_glue = [entry for entry in read_lock(lock_text) if entry.applies_on_glue()]
    by_name: dict[str, Pinned] = {}
    for entry in on_glue:
        if entry.name in by_name:
            raise ValueError(f"the lock pins {entry.name} twice for Glue's Python")
        by_name[entry.name] = entry
    wanted = _package_names(roots)
    absent = sorted(wanted - set(by_name))
    if absent:
        raise ValueError(f"the lock has no pin of {', '.join(absent)} for Glue's Python: run `make lock`")
    grew = True
    while grew:
        more = {entry.name for entry in on_glue if entry.name not in wanted and entry.via & wanted}
        wanted |= more
        grew = bool(more)
    chosen = [by_name[name] for name in sorted(wanted)]
    unhashed = [entry.name for entry in chosen if not entry.hashes]
    if unhashed:
        raise ValueError(f"the lock pins {', '.join(unhashed)} without hashes")
    return chosen


def requirements_text(requirements: Sequence[Pinned]) -> str:
    """Return a requirements file of the pins with their hashes, for `pip download --require-hashes`."""
    header = (f"# The Glue job's Python packages: {', '.join(JOB_PACKAGES)} and its runtime dependencies as\n"
              f"# {LOCK} pins them for Glue (CPython 3.11, Linux x86_64). Written by `make package-job`.\n")
    return header + "".join(f"{entry.requirement}\n" for entry in requirements)


def glue_tags() -> frozenset[Tag]:
    """Return the wheel tags Glue's Python installs."""
    return frozenset((*cpython_tags(GLUE_PYTHON, abis=["cp311"], platforms=GLUE_PLATFORMS),
                      *compatible_tags(GLUE_PYTHON, "cp311", GLUE_PLATFORMS)))


def pinned_wheel(name: str, requirements: Sequence[Pinned]) -> Pinned:
    """Return the pin a wheel file name is of; raise ValueError when it is no wheel of the pins or not for Glue."""
    try:
        project, version, _, tags = parse_wheel_filename(name)
    except ValueError as error:
        raise ValueError(f"{name} is not a wheel file name ({error})") from error
    pins = {entry.name: entry for entry in requirements}
    pin = pins.get(canonicalize_name(project))
    if pin is None:
        raise ValueError(f"{name}: {project} is not one of the job's packages in {LOCK} "
                         f"({', '.join(sorted(pins))})")
    if str(version) != pin.version:
        raise ValueError(f"{name}: {project} {version}, but {LOCK} pins {pin.name}=={pin.version}")
    if not tags & glue_tags():
        raise ValueError(f"{name}: not a wheel for Glue's Python (CPython 3.11, Linux x86_64)")
    return pin


def wheel_problems(names: Iterable[str], requirements: Sequence[Pinned]) -> list[str]:
    """Return how a list of wheel file names differs from the pins: one wheel per pin, of its version."""
    problems: list[str] = []
    seen: dict[str, str] = {}
    for name in names:
        try:
            pin = pinned_wheel(name, requirements)
        except ValueError as error:
            problems.append(str(error))
            continue
        if pin.name in seen:
            problems.append(f"{name}: a second wheel of {pin.name} (also {seen[pin.name]})")
        seen[pin.name] = name
    problems += [f"no wheel of {entry.name}=={entry.version}" for entry in requirements if entry.name not in seen]
    return problems


def template_wheels(template_text: str) -> list[str]:
    """Return the wheel file names infra/template.yaml has the job install (s3://.../jobs/wheels/<name>)."""
    return _TEMPLATE_WHEEL.findall(template_text)


def pip_download_command(requirements_file: Path, dest: Path) -> list[str]:
    """Return the pip command that fetches the Glue wheel of every pin, each checked against its hashes."""
    platforms = [arg for platform in GLUE_PLATFORMS for arg in ("--platform", platform)]
    return [sys.executable, "-m", "pip", "download", "--quiet", "--require-hashes", "--no-deps",
            "--only-binary=:all:", "--implementation", "cp", "--python-version", "3.11", "--abi", "cp311",
            *platforms, "--dest", str(dest), "--requirement", str(requirements_file)]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return f"sha256:{digest.hexdigest()}"


def fetch_wheels(out: Path, root: Path = ROOT, packages: Sequence[str] = JOB_PACKAGES,
                 run: Callable[[list[str]], object] = lambda cmd: subprocess.run(cmd, check=True)) -> list[Path]:
    """Write out/job-requirements.txt and download the wheels of `packages`' closure into out/wheels/;
    return the wheels.

    Fails (SystemExit) when a wheel is not the lock's (name, version or hash) or infra/template.yaml
    names other wheels.
    """
    requirements = job_requirements((root / LOCK).read_text(encoding="utf-8"), packages)
    out.mkdir(parents=True, exist_ok=True)
    requirements_file = out / REQUIREMENTS_NAME
    requirements_file.write_text(requirements_text(requirements), encoding="utf-8")
    wheels_dir = out / WHEELS_DIR
    if wheels_dir.exists():
        shutil.rmtree(wheels_dir)
    wheels_dir.mkdir()
    run(pip_download_command(requirements_file, wheels_dir))
    wheels = sorted(wheels_dir.glob("*.whl"))
    problems = wheel_problems([w.name for w in wheels], requirements)
    for wheel in wheels:
        try:
            pin = pinned_wheel(wheel.name, requirements)
        except ValueError:
            continue  # already a problem
        if _sha256(wheel) not in pin.hashes:
            problems.append(f"{wheel.name}: its sha256 is not one of {LOCK}'s hashes for {pin.name}")
    if problems:
        raise SystemExit("error: the downloaded wheels are not the lock's:\n  " + "\n  ".join(problems))
    named = sorted(template_wheels((root / TEMPLATE).read_text(encoding="utf-8")))
    if named != [w.name for w in wheels]:
        wanted = "\n".join(f'            - !Sub "s3://${{LakeBucket}}/jobs/wheels/{w.name}"' for w in wheels)
        raise SystemExit(f"error: {TEMPLATE} has the job install {named or 'no wheels'}, but {LOCK} pins "
                         f"these; set the job's --additional-python-modules to:\n{wanted}")
    return wheels


def main(argv: Sequence[str] | None = None) -> int:
    """Build the artefacts and print where they are."""
    parser = argparse.ArgumentParser(prog="python -m glue_job.package", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="output folder (default: dist/)")
    parser.add_argument("--no-wheels", action="store_true",
                        help="skip downloading the job's wheels (no network needed; not enough to deploy)")
    options = parser.parse_args(argv)
    archive, script = build(options.out)
    print(f"{script}  (the job script)\n{archive}  (--extra-py-files)")
    if not options.no_wheels:
        for wheel in fetch_wheels(options.out):
            print(f"{wheel}  (--additional-python-modules)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
