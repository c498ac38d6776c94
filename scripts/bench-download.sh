#!/bin/sh
# A 100 MB result downloaded from gooni (GET /results/{id}, http.ServeContent:
# sendfile from the file to the socket) and from Debian's nginx (sendfile on)
# serving the same file (a hard link: the same inode and page cache) on
# loopback. Prints each speed and the gooni/nginx ratio.
# Usage: scripts/bench-download.sh [size_mb] [runs]
# Needs nginx (apt-get install -y nginx); GOONI=path uses a built binary
# (with the bench subcommand) instead of building one.
set -eu
SIZE_MB=${1:-100}
RUNS=${2:-5}
PORT=${PORT:-18098}
NGINX_PORT=${NGINX_PORT:-18099}
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
NPID=
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; [ -n "$NPID" ] && kill "$NPID" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT INT TERM

# One done task whose result file is then replaced by SIZE_MB of random bytes.
"$GOONI" bench --seed-done 1 --data-dir "$DATA" >/dev/null
head -c $((SIZE_MB * 1024 * 1024)) /dev/urandom >"$DATA/media/bench-seed.png"
mkdir -m 755 "$WORK/www"
ln "$DATA/media/bench-seed.png" "$WORK/www/result.bin"
chmod 644 "$WORK/www/result.bin"
chmod 711 "$WORK" # nginx workers run as an unprivileged user

cat >"$WORK/nginx.conf" <<CONF
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
daemon off;
events { worker_connections 64; }
http {
	access_log off;
	sendfile on;
	tcp_nopush on;
	client_body_temp_path $WORK/ngx-body;
	proxy_temp_path $WORK/ngx-proxy;
	fastcgi_temp_path $WORK/ngx-fastcgi;
	uwsgi_temp_path $WORK/ngx-uwsgi;
	scgi_temp_path $WORK/ngx-scgi;
	server {
		listen 127.0.0.1:$NGINX_PORT;
		root $WORK/www;
	}
}
CONF
"$NGINX" -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log" &
NPID=$!
GG_DATA_DIR=$DATA GG_ADDR=127.0.0.1:$PORT "$GOONI" 2>"$WORK/server.log" &
PID=$!
i=0
until curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && curl -fsS -o /dev/null "http://127.0.0.1:$NGINX_PORT/result.bin"; do
	i=$((i + 1)); [ $i -gt 200 ] && { echo "servers did not start"; cat "$WORK/server.log" "$WORK/nginx-error.log"; exit 1; }
	sleep 0.05
done
KEY=$(cat "$DATA/secrets/api_key")
ID=$(curl -fsS -H "X-API-Key: $KEY" "http://127.0.0.1:$PORT/gallery?limit=1" | sed -n 's/.*"task_id":"\([^"]*\)".*/\1/p')
[ -n "$ID" ] || { echo "no task in the gallery"; exit 1; }

# speed RUNS URL [header]: mean of curl's speed_download in MB/s.
speed() {
	n=$1; url=$2; shift 2
	total=0
	for _ in $(seq "$n"); do
		s=$(curl -fsS "$@" -o /dev/null -w '%{speed_download}' "$url")
		printf ' %.0f' "$(echo "$s / 1048576" | bc -l)" >&2
		total=$(echo "$total + $s" | bc -l)
	done
	echo >&2
	echo "$total / $n / 1048576" | bc -l
}
echo "machine: $(nproc) cores; file: $SIZE_MB MB; $RUNS downloads each (warm page cache), MB/s:"
printf 'gooni  /results/%s:' "$ID" >&2
G=$(speed "$RUNS" "http://127.0.0.1:$PORT/results/$ID" -H "X-API-Key: $KEY")
printf 'nginx  /result.bin:' >&2
N=$(speed "$RUNS" "http://127.0.0.1:$NGINX_PORT/result.bin")
printf 'gooni mean %.0f MB/s, nginx mean %.0f MB/s, ratio gooni/nginx %.2f\n' "$G" "$N" "$(echo "$G / $N" | bc -l)"
