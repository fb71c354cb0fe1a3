#!/usr/bin/env bash
# Start the web server and a Celery worker side by side on the embedded default
# (SQLite + filesystem broker). Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python

cleanup() {
    trap - INT TERM EXIT
    kill "${WORKER_PID:-}" "${WEB_PID:-}" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "${PROMETHEUS_MULTIPROC_DIR:-/nonexistent}"
}
trap cleanup INT TERM EXIT

# One metrics folder for the web and the worker processes: /metrics shows both.
PROMETHEUS_MULTIPROC_DIR="$(mktemp -d -t mlp-metrics-XXXXXX)"
export PROMETHEUS_MULTIPROC_DIR
.venv/bin/celery -A mlplatform worker --beat --loglevel=INFO --queues=validation,jobs,default --concurrency=1 &
WORKER_PID=$!
# The same application server as production (gunicorn.conf.py), bound to this machine only.
# One process: on the embedded default the rate counters and caches live in process memory.
GUNICORN_BIND=127.0.0.1:8000 GUNICORN_WORKERS=1 GUNICORN_WORKER_CLASS=gthread GUNICORN_THREADS=4 \
    .venv/bin/gunicorn mlplatform.wsgi -c gunicorn.conf.py &
WEB_PID=$!

echo "mlplatform: http://127.0.0.1:8000/api/v1/  (docs: /api/docs/, admin: /admin/). Ctrl-C stops."
# Exit as soon as either process stops; the trap stops the other one.
wait -n "$WORKER_PID" "$WEB_PID"
