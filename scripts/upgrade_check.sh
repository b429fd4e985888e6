#!/usr/bin/env bash
# `make upgrade-check`: resolve the newest versions the top-level requirements allow (their own pins
# lifted to >=) into a throwaway venv and run the fast suite there, so drift is found on purpose.
# The project's .venv and locks are left as they are; a passing run is the cue for `make lock`.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# requirements-dev.txt includes requirements.txt by a relative path, so both are loosened side by side.
for file in requirements.txt requirements-dev.txt; do
  sed -E 's/^([A-Za-z0-9_.\[\]-]+)==/\1>=/' "$file" >"$work/$file"
done
.venv/bin/uv pip compile --quiet --python-version 3.11 --upgrade --output-file "$work/newest.txt" "$work/requirements-dev.txt"
echo "Newest resolution against the lock:"
diff <(grep -E '^[a-z0-9]' requirements-dev.lock | sed 's/ .*//' | sort) \
     <(grep -E '^[a-z0-9]' "$work/newest.txt" | sed 's/ .*//' | sort) || true
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --requirement "$work/newest.txt"
# The installed-equals-lock check is the one test that must fail on newer versions.
"$work/venv/bin/python" -m pytest -m "not slow" -q --deselect tests/test_lock.py::test_installed_packages_equal_the_dev_lock
