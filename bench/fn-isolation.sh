#!/usr/bin/env bash
# fn-isolation.sh — two measurements of edge functions on a real node:
#
#  1. memory per warm isolate: one worker, N distinct functions (one isolate
#     each), the worker's RSS before and after they are all warm;
#  2. what one tenant's runaway function does to another tenant: site "noisy"
#     has a function that spins until its CPU limit (50 ms) and is requested
#     continuously by 8 clients; site "quiet" has a hello function. The quiet
#     site's latency is measured alone, then during the noise.
#
# usage: LEDGE_BIN=target/release/ledge bench/fn-isolation.sh [N]
# Node: [functions] workers = 2 (one per core), server on CPU 0-1 unpinned.
set -euo pipefail
BIN=${LEDGE_BIN:-target/release/ledge}
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
N=${1:-100}
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; kill "$NODE" 2>/dev/null || true; rm -rf "$WORK"' EXIT

start_node() { # WORKERS
  cat >"$WORK/ledge.toml" <<TOML
listen = "127.0.0.1:0"
api_listen = "127.0.0.1:0"
data = "$WORK/data"
access_log = "off"
[functions]
workers = $1
TOML
  "$BIN" serve --config "$WORK/ledge.toml" >"$WORK/node.out" 2>"$WORK/node.err" &
  NODE=$!
  for _ in $(seq 1 100); do grep -q "API listening" "$WORK/node.out" && break; sleep 0.1; done
  EDGE=$(sed -n 's/^ledge: edge listening on http:\/\///p' "$WORK/node.out")
  export LEDGE_API=$(sed -n 's/^ledge: API listening on //p' "$WORK/node.out")
  export LEDGE_TOKEN=$(cat "$WORK/data/admin-token")
}

worker_pids() { pgrep -P "$NODE" || true; }
rss_kb() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }

# ---------------------------------------------------------------- 1. memory
start_node 1
mkdir -p "$WORK/many/netlify/edge-functions"
echo home >"$WORK/many/index.html"
for i in $(seq 1 "$N"); do
  cat >"$WORK/many/netlify/edge-functions/f$i.js" <<JS
const table = Array.from({ length: 16 }, (_, i) => "row " + i);
export default (req, ctx) => new Response(table.join(",") + " from f$i", { headers: { "x-fn": "f$i" } });
export const config = { path: "/f$i" };
JS
done
"$BIN" sites create many >/dev/null
"$BIN" deploy "$WORK/many" --site many --prod >/dev/null
curl -s -o /dev/null -H "Host: many.localhost" "http://$EDGE/f1"   # the worker has started
W=$(worker_pids | head -1)
before=$(rss_kb "$W")
for i in $(seq 1 "$N"); do curl -s -o /dev/null -H "Host: many.localhost" "http://$EDGE/f$i"; done
after=$(rss_kb "$W")
echo "memory: worker RSS ${before} KiB with 1 warm isolate, ${after} KiB with $N: $(( (after - before) / (N - 1) )) KiB per warm isolate"
kill "$NODE"; wait "$NODE" 2>/dev/null || true

# ---------------------------------------------------------------- 2. noisy neighbour
start_node 2
mkdir -p "$WORK/noisy/netlify/edge-functions" "$WORK/quiet/netlify/edge-functions"
echo n >"$WORK/noisy/index.html"; echo q >"$WORK/quiet/index.html"
cat >"$WORK/noisy/netlify/edge-functions/spin.js" <<'JS'
export default () => { for (;;) {} };
export const config = { path: "/spin", onError: "bypass" };
JS
cat >"$WORK/quiet/netlify/edge-functions/hello.js" <<'JS'
export default () => new Response("hello");
export const config = { path: "/hello" };
JS
for s in noisy quiet; do "$BIN" sites create $s >/dev/null; "$BIN" deploy "$WORK/$s" --site $s --prod >/dev/null; done

latencies() { # LABEL: 400 sequential requests to the quiet site, p50/p99/max in ms
  for _ in $(seq 1 400); do
    curl -s -o /dev/null -w '%{time_total}\n' -H "Host: quiet.localhost" "http://$EDGE/hello"
  done | sort -n | awk -v label="$1" '{ v[NR] = $1 * 1000 } END {
    printf "%s: quiet site p50 %.2f ms, p99 %.2f ms, max %.2f ms (%d requests)\n", label, v[int(NR * 0.5)], v[int(NR * 0.99)], v[NR], NR }'
}
latencies "alone"
for _ in $(seq 1 8); do
  ( while kill -0 "$NODE" 2>/dev/null; do curl -s -o /dev/null -H "Host: noisy.localhost" "http://$EDGE/spin"; done ) &
done
sleep 1
latencies "with 8 clients on a 50 ms spinning function"
