#!/usr/bin/env bash
# `make run`: migrate, seed the demo, start a Celery worker (with beat), the demo provider's agent
# and the ASGI server.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBUG="${DEBUG:-true}"
# Lease deposits go through the escrow contract on an in-process EVM (in the Celery worker).
export ESCROW_BACKEND="${ESCROW_BACKEND:-chain}"
export CHAIN_BACKEND="${CHAIN_BACKEND:-embedded}"
export CHAIN_EMBEDDED_DEMO_FUNDS="${CHAIN_EMBEDDED_DEMO_FUNDS:-1000000000}"
# New accounts can add test money without a card (there are no payment keys here).
export DEMO_CREDIT_CENTS="${DEMO_CREDIT_CENTS:-100000}"
PORT="${PORT:-8000}"
BIN=.venv/bin
# The demo provider's agent bids on orders and runs leases as Docker containers (without GPUs).
DEMO_AGENT="${DEMO_AGENT:-on}"
DEMO_AGENT_DOCKER_NETWORK="${DEMO_AGENT_DOCKER_NETWORK:-bridge}"

mkdir -p var/celery/queue var/celery/processed var/log
if [ "$ESCROW_BACKEND" = chain ] && [ "$CHAIN_BACKEND" = embedded ] && [ -z "${DATABASE_URL:-}" ]; then
  # The in-process chain starts empty every run, so the demo database does too: money in the
  # ledger must match the chain. (ESCROW_BACKEND=ledger, or CHAIN_BACKEND=rpc with Anvil, persist.)
  rm -f db.sqlite3 db.sqlite3-wal db.sqlite3-shm
  rm -rf var/celery/queue/* var/celery-beat-schedule* var/celerybeat-schedule*
  rm -rf var/agent/state  # its usage outbox is about leases of the database just removed
fi
$BIN/python manage.py migrate --noinput -v 0
echo
SEED_ARGS=()
if [ "$DEMO_AGENT" = on ]; then
  SEED_ARGS=(--agent-config var/agent/agent.yaml --marketplace-url "http://127.0.0.1:${PORT}"
    --docker-network "$DEMO_AGENT_DOCKER_NETWORK")
fi
$BIN/python manage.py seed_demo "${SEED_ARGS[@]}"
echo

PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true' EXIT INT TERM
# Its live events reach the browsers and the agent through the web process (no Redis here).
REALTIME_RELAY_URL="http://127.0.0.1:${PORT}/internal/realtime/" $BIN/celery -A config worker --beat --pool=solo --loglevel=warning \
  --schedule var/celerybeat-schedule >var/log/celery.log 2>&1 &
PIDS+=($!)
if [ "$DEMO_AGENT" = on ]; then
  $BIN/gpumarket-agent --config var/agent/agent.yaml run >var/log/agent.log 2>&1 &
  PIDS+=($!)
  if $BIN/python -c 'import docker; docker.from_env().ping()' 2>/dev/null; then
    echo "Demo agent: bids for Demo GPU Cloud and runs leases as Docker containers (no GPUs). Log: var/log/agent.log"
  else
    echo "Demo agent: bids for Demo GPU Cloud, but no Docker engine answers: won leases wait for one." \
      "Start Docker to see them run. Log: var/log/agent.log"
  fi
fi

echo "Web UI:   http://127.0.0.1:${PORT}/ (log in as demo-client or demo-provider, password demo-password)"
echo "API:      http://127.0.0.1:${PORT}/api/v1/"
echo "API docs: http://127.0.0.1:${PORT}/api/docs/"
echo "Admin:    http://127.0.0.1:${PORT}/admin/ (log in as demo-admin, password demo-password)"
echo "Worker log: var/log/celery.log. Press Ctrl-C to stop."
$BIN/uvicorn config.asgi:application --host 127.0.0.1 --port "${PORT}" --log-level warning
