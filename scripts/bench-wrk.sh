#!/bin/sh
# The read paths' ratios with wrk, a client much lighter than `gooni bench`
# (which costs more per request than the server's cheapest routes and so
# pulls every ratio towards 1): GET /status/{done task} with an API key, an
# unknown id and an unknown route, each against GET /config through the same
# middleware, against one fresh `gooni --demo` with 1000 seeded done tasks.
# Each round runs the four one after the other (same load on each side of a
# ratio); the script prints every round's ratios and their medians.
# Then SUBMIT_ROUNDS (default 3) rounds of POST /generate with wrk (the body
# of `gooni bench`'s submit workload), each next to the raw one-row FULL
# insert floor of `gooni bench` on the same disk, with wrk's p99, and next to
# the same submits from `gooni bench` itself (a check of the load generator:
# the two clients should measure about the same rate). The server runs with
# GG_QUEUE_MAX=10000000 so that every submit is a real commit.
# Usage: [SUBMIT_ROUNDS=n] scripts/bench-wrk.sh [rounds] [seconds per side] [connections]
# Needs wrk (apt-get install -y wrk). GOONI=path uses a built binary.
set -eu
ROUNDS=${1:-8}
SECS=${2:-3}
CONNS=${3:-10}
SUBMIT_ROUNDS=${SUBMIT_ROUNDS:-3}
case $SUBMIT_ROUNDS in ''|*[!0-9]*) echo "SUBMIT_ROUNDS must be a whole number" >&2; exit 2 ;; esac
PORT=${PORT:-18101}
command -v wrk >/dev/null || { echo "bench-wrk.sh: wrk is not installed (apt-get install -y wrk)" >&2; exit 1; }
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gooni-bench-wrk.XXXXXX")
if [ -z "${GOONI:-}" ]; then
	GOONI=$WORK/gooni
	(cd "$ROOT" && go build -ldflags "-s -w" -o "$GOONI" .)
fi
PID=
trap '[ -n "$PID" ] && { kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; }; rm -rf "$WORK"' EXIT INT TERM

DATA=$WORK/data
"$GOONI" bench --seed-done 1000 --data-dir "$DATA" >/dev/null
GG_QUEUE_MAX=10000000 GG_DATA_DIR=$DATA GG_ADDR=127.0.0.1:$PORT "$GOONI" --demo 2>"$WORK/server.log" &
PID=$!
i=0
until curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1; do
	i=$((i + 1)); [ $i -gt 200 ] && { echo "server did not start"; cat "$WORK/server.log"; exit 1; }
	sleep 0.05
done
KEY=$(cat "$DATA/secrets/api_key")
BASE=http://127.0.0.1:$PORT
DONE=$(curl -fsS -H "X-API-Key: $KEY" "$BASE/tasks?status=done&limit=1" | sed -n 's/.*"task_id":"\([^"]*\)".*/\1/p' | head -1)
[ -n "$DONE" ] || { echo "no done task found"; exit 1; }
UNKNOWN=00000000000000000000000000 # a well-formed id no task has
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "X-API-Key: $KEY" "$BASE/status/$DONE")" = 200 ] || { echo "status of $DONE is not 200"; exit 1; }

# rps URL: requests per second of one wrk run, every answer counted.
rps() {
	wrk -t1 -c"$CONNS" -d"${SECS}s" -H "X-API-Key: $KEY" "$1" | awk '/^Requests\/sec/ {print $2}'
}

echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); wrk -t1 -c$CONNS -d${SECS}s per side, $ROUNDS round(s) (then SUBMIT_ROUNDS=$SUBMIT_ROUNDS submit rounds)"
printf '%-6s %10s %10s %10s %10s %8s %8s %8s\n' round config status unknown route status/c unknown/c route/c
: >"$WORK/ratios"
r=1
while [ $r -le "$ROUNDS" ]; do
	c=$(rps "$BASE/config")
	s=$(rps "$BASE/status/$DONE")
	u=$(rps "$BASE/status/$UNKNOWN")
	n=$(rps "$BASE/no-such-route")
	echo "$c $s $u $n" | awk -v r=$r '{printf "%-6s %10.0f %10.0f %10.0f %10.0f %8.2f %8.2f %8.2f\n", r, $1, $2, $3, $4, $2/$1, $3/$1, $4/$1}' | tee -a "$WORK/ratios"
	r=$((r + 1))
done
med() { sort -n | awk '{a[NR] = $1} END {if (NR % 2) print a[(NR + 1) / 2]; else printf "%.2f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
echo "median ratio to /config: status $(awk '{print $6}' "$WORK/ratios" | med), unknown id $(awk '{print $7}' "$WORK/ratios" | med), unknown route $(awk '{print $8}' "$WORK/ratios" | med) (docs/PERFORMANCE.md's target: status >= 0.6)"

# Submits: wrk's accepted/s (every answer must be 202) against the raw floor.
cat >"$WORK/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"model":"flux","mode":"t2i","prompt":"gooni bench: a lighthouse on a rocky coast at dusk"}'
wrk.headers["Content-Type"] = "application/json"
LUA
[ "$SUBMIT_ROUNDS" -gt 0 ] || exit 0
echo
echo "submits: wrk -t1 -c$CONNS -d${SECS}s POST /generate, then ${SECS} s of gooni bench's raw floor and ${SECS} s of its submits, $SUBMIT_ROUNDS round(s)"
printf '%-6s %10s %10s %10s %8s %14s %10s\n' round submit/s p99 raw/s ratio "gooni bench/s" p99
: >"$WORK/submits"
r=1
while [ $r -le "$SUBMIT_ROUNDS" ]; do
	out=$(wrk -t1 -c"$CONNS" -d"${SECS}s" --latency -s "$WORK/post.lua" -H "X-API-Key: $KEY" "$BASE/generate")
	if echo "$out" | grep -q -e 'Non-2xx' -e 'Socket errors'; then echo "round $r: some submits were not accepted:"; echo "$out"; exit 1; fi
	sub=$(echo "$out" | awk '/^Requests\/sec/ {print $2}')
	p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
	# The floor's rate is the last column of gooni bench's "raw insert" row.
	bout=$("$GOONI" bench --url "$BASE" --api-key-file "$DATA/secrets/api_key" --data-dir "$DATA" --clients "$CONNS" --duration "${SECS}s" \
		--workload submit --raw-duration "${SECS}s")
	raw=$(echo "$bout" | awk '$1 == "raw" && $2 == "insert" {print $NF}')
	case $raw in [0-9]*) ;; *) echo "round $r: no raw floor measured:"; echo "$bout"; exit 1 ;; esac
	own=$(echo "$bout" | awk '$1 == "submit" && $3 == 0 {print $NF, $6}')
	[ -n "$own" ] || { echo "round $r: gooni bench's submits failed:"; echo "$bout"; exit 1; }
	echo "$r $sub $p99 $raw $own" | awk '{printf "%-6s %10.0f %10s %10.0f %8.2f %14.0f %10s\n", $1, $2, $3, $4, $2 / $4, $5, $6}' | tee -a "$WORK/submits"
	r=$((r + 1))
done
echo "median submit/raw ratio: $(awk '{print $5}' "$WORK/submits" | med) (docs/PERFORMANCE.md's targets: >= 1.5, p99 <= 10 ms at 10 connections)"
