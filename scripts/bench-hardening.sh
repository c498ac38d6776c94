#!/bin/sh
# The full-size attacks of issue 11 against a fresh gooni on loopback: two
# loops of 10,300 event streams from one client, 96 concurrent ~14 MB
# generate bodies, 300,000 distinct client addresses. Prints what the server
# held and how /health answered from another address meanwhile.
# Usage: scripts/bench-hardening.sh      (GOONI=path uses a built binary)
set -eu
PORT=${PORT:-18097}
SIMPORT=${SIMPORT:-19197}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gooni-bench-hardening.XXXXXX")
if [ -z "${GOONI:-}" ]; then
	GOONI=$WORK/gooni
	(cd "$ROOT" && go build -o "$GOONI" .)
fi
(cd "$ROOT" && go build -o "$WORK/hardening" ./scripts/hardening)
PIDS=
trap 'kill $PIDS 2>/dev/null || true; rm -rf "$WORK"' EXIT INT TERM
"$GOONI" workspace-sim --addr 127.0.0.1:$SIMPORT --duration 1h --capacity 1 >"$WORK/sim.log" 2>&1 &
PIDS="$PIDS $!"
GG_DATA_DIR=$WORK/data GG_ADDR=127.0.0.1:$PORT GG_TRUSTED_PROXIES=127.0.0.1/32 "$GOONI" >"$WORK/gooni.log" 2>&1 &
GPID=$!
PIDS="$PIDS $GPID"
i=0
until curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1; do
	i=$((i + 1)); [ $i -gt 200 ] && { echo "server did not start"; cat "$WORK/gooni.log"; exit 1; }
	sleep 0.05
done
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%d MB", $2/1024}' /proc/meminfo); open files: soft $(ulimit -Sn), hard $(ulimit -Hn)"
"$WORK/hardening" --url "http://127.0.0.1:$PORT" --data-dir "$WORK/data" --pid "$GPID" --sim "http://127.0.0.1:$SIMPORT" "$@"
echo "server log lines about descriptors: $(grep -c 'too many open files' "$WORK/gooni.log" || true)"
