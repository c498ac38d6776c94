#!/bin/sh
# Submit/status/result load against fresh `gooni --demo` servers on loopback:
# the ratios of `gooni bench --compare` (each workload next to its reference
# in one run), the mixed workload, and the server's RSS idle and under load.
# Usage: scripts/bench-load.sh [clients] [duration]  (duration: each side's
# time in one comparison, and the length of the mixed run)
# RUNS (default 3) comparisons are run and each ratio's median and spread
# printed (--repeat); ROUNDS (default 10) alternating rounds make one.
# GOONI=path uses a built binary (with the bench subcommand) instead of building one.
set -eu
CLIENTS=${1:-10}
DURATION=${2:-20s}
RUNS=${RUNS:-3}
ROUNDS=${ROUNDS:-10}
PORT=${PORT:-18096}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gooni-bench-load.XXXXXX")
if [ -z "${GOONI:-}" ]; then
	GOONI=$WORK/gooni
	(cd "$ROOT" && go build -ldflags "-s -w" -o "$GOONI" .)
fi
PID=
stop_server() {
	if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; PID=; fi
}
trap 'stop_server; rm -rf "$WORK"' EXIT INT TERM

rss() { awk '/^(VmRSS|VmHWM)/ {printf "%s %d MB  ", $1, $2/1024}' "/proc/$1/status"; echo; }

# start_server NAME QUEUE_MAX [SEED]: a fresh data dir (with SEED done tasks
# whose results can be fetched) and a --demo server on $PORT.
start_server() {
	DATA=$WORK/$1
	if [ "${3:-0}" -gt 0 ]; then "$GOONI" bench --seed-done "$3" --data-dir "$DATA"; fi
	GG_QUEUE_MAX=$2 GG_DATA_DIR=$DATA GG_ADDR=127.0.0.1:$PORT "$GOONI" --demo 2>"$WORK/$1.log" &
	PID=$!
	i=0
	until curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1; do
		i=$((i + 1)); [ $i -gt 200 ] && { echo "server did not start"; cat "$WORK/$1.log"; exit 1; }
		sleep 0.05
	done
	sleep 1
	B="$GOONI bench --url http://127.0.0.1:$PORT --api-key-file $DATA/secrets/api_key --data-dir $DATA --clients $CLIENTS --duration $DURATION"
}

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%d MB", $2/1024}' /proc/meminfo), $(go env GOVERSION 2>/dev/null || echo go ?)"

# 1. Each workload next to its reference, in one run (gooni bench --compare):
# submits against raw one-row FULL inserts on the same disk, status reads
# (done tasks, unknown ids), an unknown route and gallery pages against
# GET /config through the same middleware. The demo workspace runs 2 tasks at a time for 3 s
# each, so a submit load outruns it by far: the queue limit is raised so
# that every submit is a real commit (with the default 1000 nearly all would
# be queue_full answers, which commit nothing).
start_server compare 10000000 1000
printf 'server idle:          '; rss $PID
echo; echo "== gooni bench --compare (submit, status, error, route, gallery), GG_QUEUE_MAX=10000000"
$B --compare --workload submit,status,error,route,gallery --rounds "$ROUNDS" --repeat "$RUNS"
printf 'server after compare: '; rss $PID
stop_server

# 2. What a user's client does, under the default queue limit (1000):
# submits beyond it are counted as 503 queue_full. 1000 done tasks are seeded
# so that results can be fetched although the demo workspace is far behind.
start_server mixed 1000 1000
echo; echo "== mixed (submit, poll status of up to 2 own tasks, fetch a result), GG_QUEUE_MAX=1000"; $B --workload mixed
printf 'server after load:    '; rss $PID
