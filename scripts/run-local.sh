#!/usr/bin/env bash
# Start the web server, the gRPC server and a Celery worker side by side on the embedded
# default (SQLite + filesystem broker). Ctrl-C stops them all within 2 s, so that port 8000 is
# free for the next `make run` at once. MLP_PORT (8000) and GRPC_PORT (8001) move them.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
PORT="${MLP_PORT:-8000}"
# Job control: each process below starts in a process group of its own (its pid), so that a
# Ctrl-C reaches this script only, which stops them the quick way, and nothing of them (gunicorn's
# workers, Celery's pool and beat) can outlive it.
set -m
GROUPS_STARTED=()

cleanup() {
    trap - INT TERM EXIT
    # A development server drops what is in flight: gunicorn and Celery shut down cold on
    # SIGQUIT (no 30 s drain; a job's task is acks_late and runs again on the next start), the
    # gRPC server stops on SIGTERM with a 1 s grace. A group still alive after ~1.5 s is killed.
    local group tries
    kill -QUIT "${WORKER_PID:-}" "${WEB_PID:-}" 2>/dev/null || true
    kill -TERM "${GRPC_PID:-}" 2>/dev/null || true
    for group in "${GROUPS_STARTED[@]}"; do
        tries=30
        while kill -0 -- "-$group" 2>/dev/null && [ $((tries -= 1)) -gt 0 ]; do
            sleep 0.05
        done
        kill -KILL -- "-$group" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -rf "${PROMETHEUS_MULTIPROC_DIR:-/nonexistent}"
}
trap cleanup INT TERM EXIT

# One metrics folder for the web, gRPC and worker processes: /metrics shows them all.
PROMETHEUS_MULTIPROC_DIR="$(mktemp -d -t mlp-metrics-XXXXXX)"
export PROMETHEUS_MULTIPROC_DIR
.venv/bin/celery -A mlplatform worker --beat --loglevel=INFO --queues=validation,jobs,default,conversion,shadow --concurrency=1 &
WORKER_PID=$!
GROUPS_STARTED+=("$WORKER_PID")
# The same application server as production (gunicorn.conf.py), bound to this machine only.
# One process: on the embedded default the rate counters and caches live in process memory.
# A graceful timeout of 1 s, not production's 30: the workers are killed after it.
GUNICORN_BIND="127.0.0.1:$PORT" GUNICORN_WORKERS=1 GUNICORN_WORKER_CLASS=gthread GUNICORN_THREADS=4 \
    .venv/bin/gunicorn mlplatform.wsgi -c gunicorn.conf.py --graceful-timeout 1 &
WEB_PID=$!
GROUPS_STARTED+=("$WEB_PID")
# The Open Inference Protocol over gRPC (GRPC_PORT, 8001), bound to this machine only. On the
# embedded default its rate counters live in its own memory, apart from the web's.
"$PY" manage.py grpcserver --address 127.0.0.1 --grace 1 &
GRPC_PID=$!
GROUPS_STARTED+=("$GRPC_PID")
# The audit writer, when AUDIT_MODE=stream with REDIS_URL and a PostgreSQL DATABASE_URL (on the
# embedded default the stream mode runs as durable: nothing to copy). ADR 0030. It may die or be
# killed at any moment without losing a row, so the trap's kill of its group is enough.
if [ "${AUDIT_MODE:-durable}" = stream ]; then
    "$PY" manage.py auditwriter &
    GROUPS_STARTED+=("$!")
fi

echo "mlplatform: http://127.0.0.1:$PORT/api/v1/  (docs: /api/docs/, admin: /admin/)," \
    "gRPC on 127.0.0.1:${GRPC_PORT:-8001}. Ctrl-C stops."
# Exit as soon as any process stops; the trap stops the others.
wait -n "$WORKER_PID" "$WEB_PID" "$GRPC_PID"
