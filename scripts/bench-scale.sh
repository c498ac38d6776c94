#!/bin/sh
# Scale: N done tasks (default 100000) in the database; startup to a healthy
# /health, gallery page latency, status reads, RSS idle and under load, and
# the stripped binary's size. Usage: scripts/bench-scale.sh [tasks] [duration]
# GOONI=path uses a built binary (with the bench subcommand) instead of building one.
set -eu
TASKS=${1:-100000}
DURATION=${2:-20s}
PORT=${PORT:-18097}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gooni-bench-scale.XXXXXX")
DATA=$WORK/data
(cd "$ROOT" && go build -ldflags "-s -w" -o "$WORK/gooni-stripped" .)
GOONI=${GOONI:-$WORK/gooni-stripped}
PID=
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT INT TERM
rss() { awk '/^(VmRSS|VmHWM)/ {printf "%s %d MB  ", $1, $2/1024}' "/proc/$1/status"; echo; }

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%d MB", $2/1024}' /proc/meminfo), $(go env GOVERSION 2>/dev/null || echo go ?)"
echo "binary (go build -ldflags \"-s -w\"): $(($(stat -c %s "$WORK/gooni-stripped") / 1024 / 1024)) MB ($(stat -c %s "$WORK/gooni-stripped") bytes)"
"$GOONI" bench --seed-done "$TASKS" --data-dir "$DATA"
echo "database: $(($(stat -c %s "$DATA/gooni.db") / 1024 / 1024)) MB"

# Startup to healthy: from exec to the first 200 of /health, polled every 5 ms.
start=$(date +%s%N)
GG_DATA_DIR=$DATA GG_ADDR=127.0.0.1:$PORT "$GOONI" 2>"$WORK/server.log" &
PID=$!
until curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1; do
	[ $(( ($(date +%s%N) - start) / 1000000 )) -gt 30000 ] && { echo "no healthy /health in 30 s"; cat "$WORK/server.log"; exit 1; }
	sleep 0.005
done
echo "startup to healthy /health with $TASKS tasks: $(( ($(date +%s%N) - start) / 1000000 )) ms"
sleep 2
printf 'server idle:       '; rss $PID
B="$GOONI bench --url http://127.0.0.1:$PORT --api-key-file $DATA/secrets/api_key --data-dir $DATA --duration $DURATION"
echo; echo "== gallery pages, one client (latency of a page: limit 50, walking the cursor chain)"; $B --clients 1 --workload gallery
echo; echo "== gallery pages, 10 clients (saturation)"; $B --clients 10 --workload gallery
echo; echo "== gooni bench --compare at $TASKS done tasks, 10 clients (status, error, route, gallery vs GET /config)"
$B --clients 10 --compare --workload status,error,route,gallery --rounds "${ROUNDS:-10}" --repeat "${RUNS:-3}"
printf 'server under load: '; rss $PID
