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
# The alert rules run outside the console, watched or not; firings go to the log and SIGNAL_ALERT_WEBHOOK.
$PY -m core.cli alerts run >>"$SIGNAL_HOME/run/alerts.log" 2>&1 &
alerts_pid=$!

cleanup() {
  # Alerts first, and waited for: stopping the job on purpose is not an alert.
  kill "$alerts_pid" 2>/dev/null && wait "$alerts_pid" 2>/dev/null || true
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

# This machine only unless SIGNAL_BIND_ADDRESS says otherwise; then no one is an operator without a login.
address="${SIGNAL_BIND_ADDRESS:-127.0.0.1}"
port="${PORT:-8501}"
case "$address" in
  127.*|localhost|::1) url_host="$address" ;;
  0.0.0.0|::) url_host="localhost"
    echo "WARNING: the console listens on every network interface ($address:$port): anyone who reaches it sees"
    echo "         the data; without a login (README: Security) everyone is a viewer." ;;
  *) url_host="$address"
    echo "WARNING: the console listens on $address:$port, reachable from the network: anyone who reaches it"
    echo "         sees the data; without a login (README: Security) everyone is a viewer." ;;
esac
if [[ "$url_host" == *:* ]]; then url_host="[$url_host]"; fi  # an IPv6 address in a URL
echo "Console: http://$url_host:$port  (job log: $SIGNAL_HOME/run/job.log, alerts: $SIGNAL_HOME/run/alerts.log;"
echo "         Ctrl-C stops everything)"
$PY -m streamlit run Home.py --server.address "$address" --server.port "$port"
