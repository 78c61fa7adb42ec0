#!/usr/bin/env bash
# log-anchor.sh [ROUNDS] — the access log's cost in Ledge beside nginx's in
# the same run: static-1k (wrk, 64 connections, 8 s after a 2 s warm-up)
# with each server's log off and on, as CPU time per request.
#
#   ledge-off    access_log = "off"
#   ledge-file   the default file drain (JSON lines, ~620 bytes each here)
#   nginx-off    access_log off (the harness's nginx setup)
#   nginx-comb   the combined format (~90 bytes), buffer=256k flush=20ms
#   nginx-json   a JSON line with Ledge's fields (escape=json, ~600 bytes),
#                buffer=256k flush=20ms
#
# nginx's buffered log is its cheapest way to write one (a write per 256 KiB,
# as Ledge's file drain does); nginx neither rotates nor deletes files,
# Ledge rotates at 100 MiB and deletes the sixth file.
#
# CPU time is exact, not sampled: the sum of every thread's run time
# (/proc/.../schedstat) of the server and its child processes. Each server
# runs pinned to CPU 0 (one tokio worker, one nginx worker), wrk on CPU 1.
# Each round starts with the next configuration. Prints one line per run,
# then per configuration the median µs per request and the log's cost
# against the same server with its log off.
#
# Uses target/release/ledge (or $LEDGE_BIN), nginx, wrk. Fixtures: ./setup.sh
# --fixtures.
set -euo pipefail
rounds=${1:-5}
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib/common.sh"
bin=${LEDGE_BIN:-$here/../target/release/ledge}
site=$BENCH_WORK/site
[[ -d $site ]] || "$here/setup.sh" --fixtures
command -v nginx >/dev/null || { echo "log-anchor.sh needs nginx" >&2; exit 1; }
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
ledge_port=31995 nginx_port=31994
path=/assets/asset-1k.css

for c in off file; do
  printf 'listen = "127.0.0.1:%s"\napi_listen = "127.0.0.1:0"\ndata = "%s/data"\naccess_log = "%s"\n' \
    "$ledge_port" "$work" "$([[ $c == off ]] && echo off || echo on)" >"$work/ledge-$c.toml"
done
deploy_fixture "$bin" "$work/ledge-off.toml" "$site" "http://127.0.0.1:$ledge_port$path" "$work/deploy.log"

# nginx as the harness runs it (servers/nginx.sh), one worker, with the
# access log of each configuration in place of `access_log off`.
source "$here/servers/nginx.sh"
SITE=$site SERVER_NCPU=1
json_format="log_format ledgejson escape=json '{\"log_type\":\"traffic\",\"timestamp\":\"\$time_iso8601\",\"request_id\":\"\$request_id\",'
    '\"site_id\":\"bench\",\"deploy_id\":\"bd80e64ecaa7af942b5dc73c\",\"host\":\"\$host\",\"method\":\"\$request_method\",'
    '\"path\":\"\$uri\",\"query\":\"\$args\",\"status_code\":\$status,\"content_type\":\"\$sent_http_content_type\",'
    '\"cache_status\":\"none\",\"answered_by\":\"static\",\"rule\":null,\"function_name\":null,\"firewall_rule\":null,'
    '\"block_reason\":null,\"request_size\":\$request_length,\"response_size\":\$body_bytes_sent,'
    '\"duration\":\$request_time,\"time_to_first_byte\":\$request_time,\"client_ip\":\"\$remote_addr\",\"country\":null,'
    '\"user_agent\":\"\$http_user_agent\",\"referrer\":\"\$http_referer\",\"tls_version\":\"\$ssl_protocol\",'
    '\"http_version\":\"\$server_protocol\",\"error_class\":null}';"
nginx_conf() { # NAME ACCESS_LOG_LINES
  mkdir -p "$work/$1"
  NGINX_ACCESS_LOG=$2 srv_config static-1k "$work/$1" "$nginx_port"
}
nginx_conf nginx-off "access_log off;"
nginx_conf nginx-comb "access_log $work/nginx-comb/access.log combined buffer=256k flush=20ms;"
nginx_conf nginx-json "$json_format
  access_log $work/nginx-json/access.log ledgejson buffer=256k flush=20ms;"

# Nanoseconds every thread of PID and of its children has run.
cpu_ns() {
  local p t total=0
  for p in "$1" $(pgrep -P "$1" || true); do
    for t in /proc/"$p"/task/*; do
      total=$(( total + $(awk '{print $1}' "$t/schedstat" 2>/dev/null || echo 0) ))
    done
  done
  echo "$total"
}

configs=(ledge-off ledge-file nginx-off nginx-comb nginx-json)
declare -A results
for r in $(seq 1 "$rounds"); do
  n=${#configs[@]}
  for k in $(seq 0 $((n - 1))); do
    c=${configs[$(( (r - 1 + k) % n ))]}
    case $c in
      ledge-*)
        TOKIO_WORKER_THREADS=1 taskset -c 0 "$bin" serve --config "$work/$c.toml" >"$work/server.log" 2>&1 &
        url=http://127.0.0.1:$ledge_port$path ;;
      nginx-*)
        rm -f "$work/$c/access.log"
        taskset -c 0 nginx -p "$work/$c/" -c "$work/$c/nginx.conf" -e "$work/$c/error.log" &
        url=http://127.0.0.1:$nginx_port$path ;;
    esac
    pid=$!
    for _ in $(seq 1 200); do curl -sf -o /dev/null "$url" && break; sleep 0.1; done
    taskset -c 1 wrk -t1 -c64 -d2s "$url" >/dev/null
    t0=$(cpu_ns "$pid")
    out=$(taskset -c 1 wrk -t1 -c64 -d8s "$url")
    t1=$(cpu_ns "$pid")
    kill "$pid"; wait "$pid" 2>/dev/null || true
    # nginx's master waits for its worker; make sure the port is free.
    for _ in $(seq 1 50); do curl -s -o /dev/null "$url" || break; sleep 0.1; done
    reqs=$(awk '/requests in/ {print $1}' <<<"$out")
    [[ -n $reqs && $t1 -gt $t0 ]] || { echo "round $r $c: failed" >&2; exit 1; }
    us=$(awk -v t=$(( t1 - t0 )) -v n="$reqs" 'BEGIN {printf "%.3f", t / n / 1000}')
    results[$c]+="$us "
    # What the log holds: its last line's size, and that it was written.
    case $c in
      ledge-file) logf=$work/data/logs/access.log ;;
      nginx-comb|nginx-json) logf=$work/$c/access.log ;;
      *) logf= ;;
    esac
    line=-
    if [[ -n $logf ]]; then
      [[ -s $logf ]] || { echo "round $r $c: nothing logged" >&2; exit 1; }
      line=$(tail -n 1 "$logf" | wc -c)
    fi
    echo "round $r $c: $reqs requests, $us µs CPU per request, log line $line bytes"
  done
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
declare -A med
for c in "${configs[@]}"; do med[$c]=$(median <<<"${results[$c]}"); done
for c in "${configs[@]}"; do
  base=${med[${c%%-*}-off]}
  echo "median $c: ${med[$c]} µs per request ($(awk -v a="${med[$c]}" -v b="$base" 'BEGIN {printf "%+.1f %%", (a / b - 1) * 100}') against ${c%%-*}-off)"
done
