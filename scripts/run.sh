#!/usr/bin/env bash
# Foreground supervisor for `make run`: the API (gunicorn, api.wsgi:app, with
# gunicorn.conf.py's request limits) and a Celery worker with embedded beat. Ctrl-C (or SIGTERM) stops both; if either
# exits on its own, the other is stopped too and its exit status is returned.
#
#   EMOQ_HOST (127.0.0.1)  EMOQ_PORT (7860)  EMOQ_WEB_WORKERS (2)  EMOQ_WEB_THREADS (8)
#   EMOQ_WEB_TIMEOUT (120)  EMOQ_STOP_TIMEOUT (30 s before SIGKILL)
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV_BIN="${EMOQ_VENV_BIN:-.venv/bin}"
HOST="${EMOQ_HOST:-127.0.0.1}"
PORT="${EMOQ_PORT:-7860}"
STOP_TIMEOUT="${EMOQ_STOP_TIMEOUT:-30}"
mkdir -p var/celery
# API and worker share the metrics folder, so the API's /metrics shows what the
# worker counted too (prometheus-client's multiprocess mode); the last run's files go.
export PROMETHEUS_MULTIPROC_DIR="${PROMETHEUS_MULTIPROC_DIR:-$PWD/var/metrics}"
mkdir -p "$PROMETHEUS_MULTIPROC_DIR" && find "$PROMETHEUS_MULTIPROC_DIR" -maxdepth 1 -name '*.db' -delete

# Without EMOQ_MODEL the real emotion2vec+ large comes from the model hub. Where
# the hub can't be reached (an offline machine), fall back to a random-weight
# model of the same architecture so the stack still runs end to end; every
# result then says "random_weights": true.
if [ -z "${EMOQ_MODEL:-}" ] && ! "$VENV_BIN/python" -c 'import socket; socket.create_connection(("modelscope.cn", 443), 3)' 2>/dev/null; then
    [ -f var/models/random-large/model.pt ] || "$VENV_BIN/python" -m ops.random_model --size large var/models/random-large
    export EMOQ_MODEL="$PWD/var/models/random-large"
    echo "[run] *** the model hub is unreachable: using RANDOM WEIGHTS ($EMOQ_MODEL); results are meaningless ***" >&2
    echo "[run] *** set EMOQ_MODEL to a directory holding the real emotion2vec+ large to analyse real calls ***" >&2
fi
echo "[run] model: ${EMOQ_MODEL:-iic/emotion2vec_plus_large}" >&2

pids=()
stopping=0

stop_all() {
    [ "$stopping" = 1 ] && return
    stopping=1
    local p deadline=$(( $(date +%s) + STOP_TIMEOUT ))
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do
        while kill -0 "$p" 2>/dev/null; do
            if (( $(date +%s) >= deadline )); then
                echo "[run] pid $p still running after ${STOP_TIMEOUT}s; killing it" >&2
                kill -KILL "$p" 2>/dev/null || true
                break
            fi
            sleep 0.2
        done
    done
    wait 2>/dev/null
}

on_signal() {
    echo "[run] stopping API and worker" >&2
    stop_all
    exit 0  # asked to stop, and stopped: not an error for make
}
trap on_signal INT TERM

echo "[run] API on http://$HOST:$PORT  (Ctrl-C stops API and worker)" >&2
# Threaded workers: a slow upload holds one thread, not a whole process (bulk
# clients send many at once). Each process's database pool (models.db: 5 + 5
# overflow) covers its threads.
"$VENV_BIN/gunicorn" --bind "$HOST:$PORT" --worker-class gthread \
    --workers "${EMOQ_WEB_WORKERS:-2}" --threads "${EMOQ_WEB_THREADS:-8}" --timeout "${EMOQ_WEB_TIMEOUT:-120}" \
    --access-logfile - api.wsgi:app &
pids+=($!)

"$VENV_BIN/celery" -A worker.celery_app worker -B --loglevel INFO --concurrency 1 \
    -Q "${EMOQ_QUEUE:-emoq.analysis},emoq.maintenance" --schedule var/celery/celerybeat-schedule &
pids+=($!)

wait -n
rc=$?
echo "[run] a process exited (status $rc); stopping the other" >&2
stop_all
exit "$rc"
