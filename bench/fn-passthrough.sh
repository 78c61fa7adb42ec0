#!/usr/bin/env bash
# fn-passthrough.sh — a function that passes context.next()'s response on
# with one header set, over a 1 KB and a 100 KB static file; one or more
# ledge builds one after the other in the same run (e.g. before and after a
# change), each: server and its sandboxed worker pinned to CPU 0, wrk -c16 on
# CPU 1, 2 s warm-up, 6 s measured; CPU ticks of the server and its workers
# from /proc.
#
# usage: bench/fn-passthrough.sh BIN [BIN...]   (WORKERS=0 runs in process)
set -euo pipefail
[[ $# -ge 1 ]] || { echo "usage: $0 BIN [BIN...]" >&2; exit 2; }
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d)
PORT=${PORT:-31996}
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

mkdir -p "$WORK/site/netlify/edge-functions"
head -c 768 /dev/urandom | base64 -w0 >"$WORK/site/k1.txt"
head -c 76800 /dev/urandom | base64 -w0 >"$WORK/site/k100.txt"
echo home >"$WORK/site/index.html"
cat >"$WORK/site/netlify/edge-functions/pass.js" <<'JS'
export default async (req, context) => {
  const r = await context.next();
  r.headers.set("x-fn", "1");
  return r;
};
export const config = { path: ["/k1.txt", "/k100.txt"] };
JS

ticks() { # PID: user+system ticks of PID and its children processes
  local t
  t=$(awk '{print $14+$15}' "/proc/$1/stat")
  for c in $(pgrep -P "$1" || true); do t=$((t + $(awk '{print $14+$15}' "/proc/$c/stat"))); done
  echo "$t"
}

echo "| build | file | req/s | req per server CPU-s |"
echo "|---|---|---:|---:|"
for bin in "$@"; do
  bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
  rm -rf "$WORK/data"
  cat >"$WORK/ledge.toml" <<TOML
listen = "127.0.0.1:$PORT"
api_listen = "127.0.0.1:0"
data = "$WORK/data"
access_log = "off"

[functions]
workers = ${WORKERS:-1}
TOML
  TOKIO_WORKER_THREADS=1 taskset -c 0 "$HERE/servers/ledge-run.sh" "$bin" "$WORK/ledge.toml" "$WORK/site" >"$WORK/node.log" 2>&1 &
  for _ in $(seq 1 150); do
    curl -sf -o /dev/null -H 'Host: 127.0.0.1' "http://127.0.0.1:$PORT/k1.txt" && break
    sleep 0.2
  done
  server=$(pgrep -f "serve --config $WORK/ledge.toml" | head -1)
  for f in k1.txt k100.txt; do
    taskset -c 1 wrk -t1 -c16 -d2s "http://127.0.0.1:$PORT/$f" >/dev/null
    t0=$(ticks "$server")
    out=$(taskset -c 1 wrk -t1 -c16 -d6s "http://127.0.0.1:$PORT/$f")
    t1=$(ticks "$server")
    n=$(awk '/requests in/ {print $1}' <<<"$out")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    hz=$(getconf CLK_TCK)
    echo "| $bin | $f | $rps | $((n * hz / (t1 - t0))) |"
  done
  kill "$server" 2>/dev/null || true
  wait 2>/dev/null || true
done
