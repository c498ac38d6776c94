#!/bin/sh
# A SIZE_MB result downloaded from gooni (GET /results/{id}, http.ServeContent:
# sendfile from the file to the socket) and from nginx (sendfile on) serving
# the same bytes on loopback, side by side in one run:
# `gooni bench --compare --workload media` starts the nginx it compares with.
# Usage: scripts/bench-download.sh [size_mb] [duration] [clients]
# Needs nginx (apt-get install -y nginx); GOONI=path uses a built binary
# (with the bench subcommand) instead of building one.
set -eu
SIZE_MB=${1:-100}
DURATION=${2:-20s}
CLIENTS=${3:-1}
PORT=${PORT:-18098}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || { echo "nginx is not installed: apt-get install -y nginx"; exit 1; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gooni-bench-dl.XXXXXX")
DATA=$WORK/data
if [ -z "${GOONI:-}" ]; then
	GOONI=$WORK/gooni
	(cd "$ROOT" && go build -ldflags "-s -w" -o "$GOONI" .)
fi
PID=
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT INT TERM

# One done task whose result file is then replaced by SIZE_MB of random bytes.
"$GOONI" bench --seed-done 1 --data-dir "$DATA" >/dev/null
head -c $((SIZE_MB * 1024 * 1024)) /dev/urandom >"$DATA/media/bench-seed.png"
GG_DATA_DIR=$DATA GG_ADDR=127.0.0.1:$PORT "$GOONI" 2>"$WORK/server.log" &
PID=$!
i=0
until curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1; do
	i=$((i + 1)); [ $i -gt 200 ] && { echo "server did not start"; cat "$WORK/server.log"; exit 1; }
	sleep 0.05
done
echo "machine: $(nproc) cores; file: $SIZE_MB MB (warm page cache); nginx: $NGINX"
"$GOONI" bench --compare --workload media --url "http://127.0.0.1:$PORT" --api-key-file "$DATA/secrets/api_key" \
	--clients "$CLIENTS" --duration "$DURATION" --nginx "$NGINX" --repeat "${RUNS:-3}"
