#!/usr/bin/env bash
# `make run`: the local pipeline in demo mode and the console, stopped together on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export SIGNAL_HOME="${SIGNAL_HOME:-.signal_stream}"
export SIGNAL_DEMO_MODE="${SIGNAL_DEMO_MODE:-1}"
mkdir -p "$SIGNAL_HOME/run"

$PY -m core.cli job start
$PY -m core.cli replay --loop --rate "${SIGNAL_DEMO_RATE:-50}" >"$SIGNAL_HOME/run/replay.log" 2>&1 &
replay_pid=$!

cleanup() {
  kill "$replay_pid" 2>/dev/null || true  # the replay records its end and prints its summary
  $PY -m core.cli job stop || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# New tables need one crawl; later data is queryable without one. Crawl once the first batch landed.
(
  for _ in $(seq 1 60); do
    status=$($PY -m core.cli job status --json)
    if [[ "$status" == *'"batch_id"'* ]]; then
      $PY -m core.cli crawl >"$SIGNAL_HOME/run/crawl.log" 2>&1
      exit 0
    fi
    sleep 2
  done
) &

echo "Console: http://localhost:8501  (job log: $SIGNAL_HOME/run/job.log; Ctrl-C stops everything)"
$PY -m streamlit run Home.py --server.port "${PORT:-8501}"
