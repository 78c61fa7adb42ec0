#!/usr/bin/env bash
# ledge-rule-scale.sh — Ledge alone with 1, 1,000 and 100,000 redirect rules,
# the request matching the LAST rule each time (same rule shape and load as
# scenario c of run.sh). Prints req/s and requests per server CPU-second, so
# the cost of rule count can be read as a ratio within one run.
#
#   LEDGE_BIN=../target/release/ledge ./ledge-rule-scale.sh
#   COUNTS="1 1000 100000" DURATION=10 REPEAT=2 ./ledge-rule-scale.sh
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib/common.sh
source "$BENCH_DIR/lib/common.sh"

LEDGE_BIN=${LEDGE_BIN:-$BENCH_DIR/../target/release/ledge}
COUNTS=${COUNTS:-"1 1000 100000"}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-3}
REPEAT=${REPEAT:-2}
CONNS=${CONNS:-64}
PORT=${PORT:-31087}
SERVER_CPUS=${SERVER_CPUS:-0}
CLIENT_CPUS=${CLIENT_CPUS:-1}
work="$BENCH_WORK/rule-scale"
mkdir -p "$work"
trap 'stop_all' EXIT

printf '| rules | run | req/s | server CPU %% | req per server CPU-s |\n|---:|---:|---:|---:|---:|\n'
for n in $COUNTS; do
  site="$work/site-$n"
  if [[ ! -f $site/_redirects ]]; then
    mkdir -p "$site"
    echo '<h1>rules</h1>' >"$site/index.html"
    # n rules of the same shape; the request hits the last one.
    awk -v n="$n" 'BEGIN { for (i = 1; i <= n; i++) printf "/blog/old-post-%07d /posts/post-%07d 301\n", i, i }' >"$site/_redirects"
  fi
  path=$(printf '/blog/old-post-%07d' "$n")
  cfg="$work/ledge-$n.toml"
  printf 'listen = "127.0.0.1:%s"\napi_listen = "127.0.0.1:0"\ndata = "%s"\n' "$PORT" "$work/data-$n" >"$cfg"
  for r in $(seq 1 "$REPEAT"); do
    start_bg "$work/server-$n.log" "$SERVER_CPUS" env LEDGE_LOG=warn TOKIO_WORKER_THREADS=1 \
      bash "$BENCH_DIR/servers/ledge-run.sh" "$LEDGE_BIN" "$cfg" "$site"
    pid=$STARTED_PID
    wait_port "$PORT" 120 "$pid" || die "ledge did not start ($work/server-$n.log)"
    loc=$(curl -s -o /dev/null -w '%{http_code} %{redirect_url}' "http://127.0.0.1:$PORT$path")
    [[ $loc == "301 http://127.0.0.1:$PORT/posts/post-"* ]] || die "check failed for $n rules: $loc"
    launch_prefix "$CLIENT_CPUS"
    "${LAUNCH[@]}" wrk -t1 -c"$CONNS" -d"${WARMUP}s" "http://127.0.0.1:$PORT$path" >/dev/null
    t0=$(session_cpu_ticks "$pid")
    out=$("${LAUNCH[@]}" wrk -t1 -c"$CONNS" -d"${DURATION}s" "http://127.0.0.1:$PORT$path")
    t1=$(session_cpu_ticks "$pid")
    rps=$(awk '/Requests\/sec/ { print $2 }' <<<"$out")
    reqs=$(awk '/requests in/ { print $1 }' <<<"$out")
    cpu_s=$(awk -v a="$t0" -v b="$t1" -v hz="$CLK_TCK" 'BEGIN { printf "%.3f", (b - a) / hz }')
    awk -v n="$n" -v r="$r" -v rps="$rps" -v reqs="$reqs" -v cpu="$cpu_s" -v d="$DURATION" \
      'BEGIN { printf "| %d | %d | %.0f | %.1f | %.0f |\n", n, r, rps, 100 * cpu / d, (cpu > 0 ? reqs / cpu : 0) }'
    stop_pid "$pid" || true
  done
done
