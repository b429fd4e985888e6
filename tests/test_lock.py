"""The dependency locks: every transitive version pinned with hashes, in step with the top-level files.

`requirements*.txt` name what the project asks for; `requirements*.lock` (written by `make lock`) pin
the whole closure. These tests fail when the two disagree: a top-level package missing from its lock
or locked at another version, a locked package nothing asks for any more, an image lock that strays
from the versions the suite ran, or a venv that is not the lock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
# What each top-level file is locked into.
LOCKS = {"requirements.txt": "requirements.lock", "requirements-dev.txt": "requirements-dev.lock"}
# `pip freeze` leaves out the installer's own packages; a fresh venv brings them, not the lock.
INSTALLER_PACKAGES = {"pip", "setuptools", "wheel", "distribute"}


@dataclass
class LockedPackage:
    """One pinned entry of a lock: its requirement, hashes and the packages or files that pull it in."""

    requirement: Requirement
    hashes: list[str]
    pulled_in_by: set[str] = field(default_factory=set)

    @property
    def version(self) -> str:
        return next(iter(self.requirement.specifier)).version

    def applies_here(self) -> bool:
        marker = self.requirement.marker
        return marker is None or marker.evaluate(default_environment())


def read_lock(path: Path) -> list[LockedPackage]:
    """Return the entries of a uv/pip-compile lock, with their `# via` annotations."""
    entries: list[LockedPackage] = []
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    in_via = False
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if not line.startswith((" ", "#")):
            spec, *hashes = re.split(r"\s+--hash=", stripped)
            entries.append(LockedPackage(Requirement(spec), [h.strip() for h in hashes]))
            in_via = False
        elif stripped.startswith("# via") and entries:
            rest = stripped.removeprefix("# via").strip()
            if rest:
                entries[-1].pulled_in_by.add(rest)
            in_via = not rest
        elif in_via and stripped.startswith("#   "):
            entries[-1].pulled_in_by.add(stripped.removeprefix("#").strip())
        else:
            in_via = False
    return entries


def read_top_level(path: Path) -> list[Requirement]:
    """Return the requirements of a top-level file, following `-r` includes."""
    requirements: list[Requirement] = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith(("-r ", "--requirement ")):
            requirements += read_top_level(path.parent / line.split(None, 1)[1])
        elif line and not line.startswith("-"):
            requirements.append(Requirement(line))
    return requirements


def top_level_files(path: Path) -> set[str]:
    """Return the file and every file it includes with `-r`, as the lock's `# via -r` names them."""
    files = {path.name}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith(("-r ", "--requirement ")):
            files |= top_level_files(path.parent / line.split(None, 1)[1])
    return files


def by_name(entries: list[LockedPackage]) -> dict[str, list[LockedPackage]]:
    names: dict[str, list[LockedPackage]] = {}
    for entry in entries:
        names.setdefault(canonicalize_name(entry.requirement.name), []).append(entry)
    return names


@pytest.mark.parametrize(("top_level", "lock"), LOCKS.items())
def test_every_top_level_requirement_is_locked_at_its_pin(top_level: str, lock: str) -> None:
    locked = by_name(read_lock(ROOT / lock))
    for requirement in read_top_level(ROOT / top_level):
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{requirement.name} is in {top_level} but not in {lock}: run `make lock`"
        here = [entry for entry in locked[name] if entry.applies_here()]
        assert here, f"{lock} has no {requirement.name} for this Python/platform"
        for entry in here:
            assert requirement.specifier.contains(entry.version, prereleases=True), (
                f"{top_level} asks for {requirement} but {lock} pins {entry.version}: run `make lock`"
            )


@pytest.mark.parametrize(("top_level", "lock"), LOCKS.items())
def test_lock_holds_only_what_the_top_level_pulls_in(top_level: str, lock: str) -> None:
    entries = by_name(read_lock(ROOT / lock))
    # A package is needed when its lock entry says a needed package, or a top-level file, pulls it in.
    roots = {f"-r {name}" for name in top_level_files(ROOT / top_level)}
    needed = {name for name, versions in entries.items() if any(roots & e.pulled_in_by for e in versions)}
    grew = True
    while grew:
        parents_of = {name: set().union(*(e.pulled_in_by for e in versions)) for name, versions in entries.items()}
        newly = {name for name, parents in parents_of.items()
                 if name not in needed and {canonicalize_name(p) for p in parents} & needed}
        needed |= newly
        grew = bool(newly)
    assert set(entries) - needed == set(), f"{lock} pins packages nothing in {top_level} needs: run `make lock`"
    top = {canonicalize_name(r.name) for r in read_top_level(ROOT / top_level)}
    assert top <= needed


@pytest.mark.parametrize("lock", LOCKS.values())
def test_every_locked_package_is_pinned_exactly_with_hashes(lock: str) -> None:
    entries = read_lock(ROOT / lock)
    assert len(entries) > 20
    for entry in entries:
        specifiers = list(entry.requirement.specifier)
        assert len(specifiers) == 1 and specifiers[0].operator == "==", f"{entry.requirement} is not an exact pin"
        assert entry.hashes and all(h.startswith("sha256:") for h in entry.hashes), f"{entry.requirement}: no hash"


def test_image_lock_runs_the_versions_the_suite_tested() -> None:
    image = {(canonicalize_name(e.requirement.name), e.version, str(e.requirement.marker))
             for e in read_lock(ROOT / "requirements.lock")}
    dev = {(canonicalize_name(e.requirement.name), e.version, str(e.requirement.marker))
           for e in read_lock(ROOT / "requirements-dev.lock")}
    assert image - dev == set(), "the image lock strays from the dev lock: run `make lock`"


def test_installed_packages_equal_the_dev_lock() -> None:
    """`pip freeze` of the venv the suite runs in is the lock, package for package."""
    locked = {canonicalize_name(e.requirement.name): e.version
              for e in read_lock(ROOT / "requirements-dev.lock") if e.applies_here()}
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    for name in INSTALLER_PACKAGES:
        locked.pop(name, None)
        installed.pop(name, None)
    assert installed == locked, "the venv is not the lock: `make install` rebuilds it"


def test_make_lock_writes_hashed_locks_from_the_top_level_files() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "--generate-hashes" in makefile
    for top_level, lock in LOCKS.items():
        assert re.search(rf"--output-file {re.escape(lock)} {re.escape(top_level)}", makefile)
        header = (ROOT / lock).read_text(encoding="utf-8").splitlines()[1]
        assert "--generate-hashes" in header and header.endswith(f"--output-file {lock} {top_level}")
    install = makefile.split("$(STAMP):", 1)[1].split("\n\n", 1)[0]
    assert "--require-hashes --requirement requirements-dev.lock" in install
