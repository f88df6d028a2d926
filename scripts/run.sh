#!/usr/bin/env bash
# `make run`: migrate, seed the demo, start a Celery worker (with beat) and the ASGI server.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBUG="${DEBUG:-true}"
PORT="${PORT:-8000}"
BIN=.venv/bin

mkdir -p var/celery/queue var/celery/processed var/log
$BIN/python manage.py migrate --noinput -v 0
echo
$BIN/python manage.py seed_demo
echo

$BIN/celery -A config worker --beat --pool=solo --loglevel=warning \
  --schedule var/celerybeat-schedule >var/log/celery.log 2>&1 &
CELERY_PID=$!
trap 'kill $CELERY_PID 2>/dev/null || true' EXIT INT TERM

echo "API:      http://127.0.0.1:${PORT}/api/v1/"
echo "API docs: http://127.0.0.1:${PORT}/api/docs/"
echo "Worker log: var/log/celery.log. Press Ctrl-C to stop."
$BIN/uvicorn config.asgi:application --host 127.0.0.1 --port "${PORT}" --log-level warning
