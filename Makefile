# One command each: make run, make test, make check.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# The locks pin every transitive package with its hashes: pip refuses anything else, so an install is the
# same on every machine and every day. Edit requirements*.txt, then `make lock`.
UV_COMPILE := $(VENV)/bin/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes

.PHONY: install run stop alerts test test-fast check clean package-job deploy bench soak lock upgrade-check

# A new lock rebuilds the venv from nothing, so `pip freeze` is the lock, package for package.
$(STAMP): requirements-dev.lock requirements.lock
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes --requirement requirements-dev.lock
	touch $(STAMP)

install: $(STAMP)

# The dev lock is resolved first; the image lock is held to its versions, so the console image runs
# exactly what the suite tested.
lock: install  ## re-resolve requirements*.txt into requirements*.lock (after editing a requirements file)
	$(UV_COMPILE) --output-file requirements-dev.lock requirements-dev.txt
	$(UV_COMPILE) --constraint requirements-dev.lock --output-file requirements.lock requirements.txt

upgrade-check: install  ## newest versions in a throwaway venv, then the fast suite there (not in CI)
	bash scripts/upgrade_check.sh

run: install  ## local pipeline + console on http://localhost:8501, replaying the sample
	bash scripts/run_local.sh

stop: install  ## stop the alerts loop and the background job left by an interrupted run
	$(PY) -m core.cli alerts stop
	$(PY) -m core.cli job stop

alerts: install  ## the alert rules in the foreground (make run starts them in the background); Ctrl-C stops
	$(PY) -m core.cli alerts run

test: install  ## the whole suite
	$(PY) -m pytest

test-fast: install  ## everything but the end-to-end Spark runs
	$(PY) -m pytest -m "not slow"

check: install  ## lint and types
	$(PY) -m ruff check core glue_job ui tests data Home.py pages
	$(PY) -m mypy core glue_job ui

clean:  ## forget local data (stream, lake, catalog, checkpoints)
	rm -rf .signal_stream

package-job: install  ## the Glue job's script and modules: dist/job.py, dist/signal_stream_job.zip (--extra-py-files)
	$(PY) -m glue_job.package --out dist

bench: install  ## every benchmark, one after the other; each appends its run to bench/history.jsonl and rewrites bench/RESULTS.md
	$(PY) -m bench.replay
	$(PY) -m bench.job
	$(PY) -m bench.freshness
	$(PY) -m bench.commit
	$(PY) -m bench.console

soak: install  ## the live pipeline + 25 browser sessions (live page, wall display) for 10 min; records the figures
	$(PY) -m bench.soak

deploy: install  ## package the job, deploy the CloudFormation stack, upload the job (see infra/README.md)
	bash infra/deploy.sh
