#!/usr/bin/env bash
# Post-rollback (and post-upgrade) smoke check of a running Gooni.
#
#   scripts/smoke.sh URL            e.g. scripts/smoke.sh http://127.0.0.1:8080
#
# Checks, in order, stopping with a clear line at the first failure:
#   GET /health 200; POST /auth/session 200 with a cookie; GET /auth/session 200
#   (in invite mode: the API key on each request instead);
#   POST /generate 202 -> GET /status/<id> until done (60 s) -> GET /results/<id>
#   200 with an image type; POST /admin/session 200; GET /admin/health 200.
#
# Environment:
#   GG_ADMIN_KEY      admin key; else read from ${GG_DATA_DIR:-./data}/secrets/admin_key
#   GG_API_KEY        API key sent to POST /auth/session (needed with GG_SESSION_MODE=key,
#                     and sent with each user request with GG_SESSION_MODE=invite);
#                     else read from ${GG_DATA_DIR:-./data}/secrets/api_key when readable
#   SMOKE_TIMEOUT     seconds to wait for the generated task (default 60)
#   SMOKE_CACERT      CA bundle for a self-signed HTTPS certificate
#
# Keys never appear on a command line (curl reads them from a 0600 header
# file in a private temp dir) and are never printed. Needs bash, curl, grep, sed.
set -euo pipefail

usage() { echo "usage: $0 URL   (e.g. http://127.0.0.1:8080)" >&2; exit 2; }
[ $# -eq 1 ] || usage
base=${1%/}
case $base in http://* | https://*) ;; *) usage ;; esac
timeout=${SMOKE_TIMEOUT:-60}
data_dir=${GG_DATA_DIR:-./data}

umask 077
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
jar=$tmp/cookies
body=$tmp/body
headers=$tmp/headers
: >"$jar"

curl_opts=(-sS --max-time 15 -b "$jar" -c "$jar" -o "$body" -D "$headers" -w '%{http_code}')
if [ -n "${SMOKE_CACERT:-}" ]; then
	curl_opts+=(--cacert "$SMOKE_CACERT")
fi

fail() {
	echo "FAIL: $*" >&2
	if [ -s "$body" ]; then
		echo "      response: $(head -c 300 "$body" | tr -d '\r\n')" >&2
	fi
	exit 1
}
pass() { echo "ok:   $*"; }

# request METHOD PATH [curl args...]: sets $code; the body is in $body.
request() {
	local method=$1 path=$2
	shift 2
	: >"$body"
	code=$(curl "${curl_opts[@]}" -X "$method" "$@" "$base$path") || code="000"
}

expect() {
	local want=$1 what=$2
	[ "$code" != "000" ] || fail "$what: no HTTP answer (server down, wrong URL or TLS problem)"
	[ "$code" = "$want" ] || fail "$what: HTTP $code, want $want"
}

# json_string FIELD: the first "FIELD":"value" in the body (no jq needed).
json_string() {
	grep -o '"'"$1"'"[[:space:]]*:[[:space:]]*"[^"]*"' "$body" | head -n 1 | sed 's/.*:[[:space:]]*"\([^"]*\)"$/\1/' || true
}

# secret_header NAME VALUE OUT: writes "NAME: VALUE" to OUT with the printf
# builtin, so the value never appears in any process's argv.
secret_header() {
	local name=$1 value=$2 out=$3
	printf '%s: %s\n' "$name" "$value" >"$out"
}

read_secret() { # read_secret ENV_VALUE FILE -> stdout (trimmed), empty when neither
	if [ -n "$1" ]; then
		printf '%s' "$1"
	elif [ -r "$2" ]; then
		tr -d ' \t\r\n' <"$2"
	fi
}

# 1. health
request GET /health
expect 200 "GET /health"
grep -q '"status":"ok"' "$body" || fail "GET /health: status is not ok"
pass "GET /health 200"

# 2. user session (in invite mode no session is issued: the API key is sent
#    with each user request instead)
session_args=()
api_key=$(read_secret "${GG_API_KEY:-}" "$data_dir/secrets/api_key")
if [ -n "$api_key" ]; then
	secret_header X-API-Key "$api_key" "$tmp/api_header"
	session_args=(-H "@$tmp/api_header")
fi
unset api_key
request POST /auth/session "${session_args[@]}"
if [ "$code" = 401 ] && grep -q '"session_mode":"invite"' "$body"; then
	[ ${#session_args[@]} -gt 0 ] || fail "invite mode issues no session: set GG_API_KEY or GG_DATA_DIR (looked in $data_dir/secrets/api_key)"
	curl_opts+=("${session_args[@]}")
	pass "POST /auth/session: invite mode, using the API key on each request"
else
	expect 200 "POST /auth/session"
	grep -q 'gg_session' "$jar" || fail "POST /auth/session: no gg_session cookie set"
	pass "POST /auth/session 200, cookie set"

	request GET /auth/session
	expect 200 "GET /auth/session"
	grep -q '"authenticated":true' "$body" || fail "GET /auth/session: not authenticated"
	pass "GET /auth/session 200"
fi

# 3. generate -> status -> results
request POST /generate -H 'Content-Type: application/json' \
	--data '{"model":"flux","mode":"t2i","prompt":"smoke test","params":{"width":256,"height":256,"steps":1}}'
expect 202 "POST /generate"
task_id=$(json_string task_id)
[ -n "$task_id" ] || fail "POST /generate: no task_id in the answer"
pass "POST /generate 202, task $task_id"

deadline=$((SECONDS + timeout))
status=""
while :; do
	request GET "/status/$task_id"
	expect 200 "GET /status/$task_id"
	status=$(json_string status)
	case $status in
	done) break ;;
	failed) fail "task $task_id failed" ;;
	pending | processing) ;;
	*) fail "GET /status/$task_id: unexpected status '$status'" ;;
	esac
	[ "$SECONDS" -lt "$deadline" ] || fail "task $task_id not done after ${timeout}s (last status: $status)"
	sleep 1
done
pass "GET /status/$task_id: done"

request GET "/results/$task_id"
expect 200 "GET /results/$task_id"
ctype=$(grep -i '^content-type:' "$headers" | tail -n 1 | sed 's/^[^:]*:[[:space:]]*//' | tr -d '\r')
case $ctype in image/*) ;; *) fail "GET /results/$task_id: Content-Type '$ctype', want image/*" ;; esac
[ -s "$body" ] || fail "GET /results/$task_id: empty body"
pass "GET /results/$task_id 200 ($ctype)"

# 4. admin
admin_key=$(read_secret "${GG_ADMIN_KEY:-}" "$data_dir/secrets/admin_key")
[ -n "$admin_key" ] || fail "no admin key: set GG_ADMIN_KEY or GG_DATA_DIR (looked in $data_dir/secrets/admin_key)"
secret_header X-Admin-Key "$admin_key" "$tmp/admin_header"
unset admin_key
request POST /admin/session -H "@$tmp/admin_header"
rm -f "$tmp/admin_header"
expect 200 "POST /admin/session"
grep -q 'gg_admin' "$jar" || fail "POST /admin/session: no gg_admin cookie set"
pass "POST /admin/session 200"

request GET /admin/health
expect 200 "GET /admin/health"
pass "GET /admin/health 200"

echo "smoke: all checks passed against $base"
