#!/usr/bin/env bash
# Start the web server, the gRPC server and a Celery worker side by side on the embedded
# default (SQLite + filesystem broker). Ctrl-C stops them all.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python

cleanup() {
    trap - INT TERM EXIT
    kill "${WORKER_PID:-}" "${WEB_PID:-}" "${GRPC_PID:-}" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "${PROMETHEUS_MULTIPROC_DIR:-/nonexistent}"
}
trap cleanup INT TERM EXIT

# One metrics folder for the web, gRPC and worker processes: /metrics shows them all.
PROMETHEUS_MULTIPROC_DIR="$(mktemp -d -t mlp-metrics-XXXXXX)"
export PROMETHEUS_MULTIPROC_DIR
.venv/bin/celery -A mlplatform worker --beat --loglevel=INFO --queues=validation,jobs,default,conversion --concurrency=1 &
WORKER_PID=$!
# The same application server as production (gunicorn.conf.py), bound to this machine only.
# One process: on the embedded default the rate counters and caches live in process memory.
GUNICORN_BIND=127.0.0.1:8000 GUNICORN_WORKERS=1 GUNICORN_WORKER_CLASS=gthread GUNICORN_THREADS=4 \
    .venv/bin/gunicorn mlplatform.wsgi -c gunicorn.conf.py &
WEB_PID=$!
# The Open Inference Protocol over gRPC (GRPC_PORT, 8001), bound to this machine only. On the
# embedded default its rate counters live in its own memory, apart from the web's.
"$PY" manage.py grpcserver --address 127.0.0.1 &
GRPC_PID=$!

echo "mlplatform: http://127.0.0.1:8000/api/v1/  (docs: /api/docs/, admin: /admin/)," \
    "gRPC on 127.0.0.1:${GRPC_PORT:-8001}. Ctrl-C stops."
# Exit as soon as any process stops; the trap stops the others.
wait -n "$WORKER_PID" "$WEB_PID" "$GRPC_PID"
