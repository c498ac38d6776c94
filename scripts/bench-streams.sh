#!/bin/sh
# Event streams at the default cap: STREAMS GET /events/{id} streams (default
# 2000, GG_MAX_STREAMS's default) on TASKS queued tasks (default 1000)
# against `gooni --demo`. The demo workspace runs 2 tasks at a time, so the
# queue keeps moving: every watched task's view changes (queue_position,
# eta_seconds) and reaches its streams through the event hub's refresh,
# and the running tasks' progress through change signals. Prints /health
# latency without and with the streams, the events they got, and the
# server's RSS before and with them (per stream).
# Usage: scripts/bench-streams.sh [streams] [tasks] [duration]
# GOONI=path uses a built binary (with the bench subcommand) instead of building one.
set -eu
STREAMS=${1:-2000}
TASKS=${2:-1000}
DURATION=${3:-20s}
PORT=${PORT:-18100}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gooni-bench-streams.XXXXXX")
DATA=$WORK/data
if [ -z "${GOONI:-}" ]; then
	GOONI=$WORK/gooni
	(cd "$ROOT" && go build -ldflags "-s -w" -o "$GOONI" .)
fi
PID=
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT INT TERM

GG_QUEUE_MAX=$((TASKS * 2)) GG_DATA_DIR=$DATA GG_ADDR=127.0.0.1:$PORT "$GOONI" --demo 2>"$WORK/server.log" &
PID=$!
i=0
until curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1; do
	i=$((i + 1)); [ $i -gt 200 ] && { echo "server did not start"; cat "$WORK/server.log"; exit 1; }
	sleep 0.05
done
sleep 1
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%d MB", $2/1024}' /proc/meminfo)"
"$GOONI" bench --workload streams --url "http://127.0.0.1:$PORT" --api-key-file "$DATA/secrets/api_key" \
	--streams "$STREAMS" --tasks "$TASKS" --duration "$DURATION" --server-pid "$PID"
