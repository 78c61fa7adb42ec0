#!/usr/bin/env bash
# fn-instructions.sh [SECONDS] — instructions per fn-hello request on the
# node's side: Ledge under callgrind (one tokio worker, one sandboxed
# function worker, which callgrind does not follow), counted over a wrk run
# (8 connections) on the harness's hello function, and, for comparison, on
# a static file of the same site. Prints both and their difference (what
# the function path costs the node, without the worker process and without
# the kernel). The worker's own part is `examples/invoke_count`'s.
#
# Instruction counts barely move with the machine's load, unlike requests
# per CPU-second (`run.sh fn-hello`): read them beside it, not instead.
#
# Uses target/release/ledge (or $LEDGE_BIN), valgrind and wrk.
set -euo pipefail
seconds=${1:-8}
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib/common.sh"
bin=${LEDGE_BIN:-$here/../target/release/ledge}
command -v valgrind >/dev/null || { echo "fn-instructions.sh needs valgrind" >&2; exit 1; }
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
port=31997
base=http://127.0.0.1:$port

site=$work/site
mkdir -p "$site/netlify/edge-functions"
echo "home" >"$site/index.html"
cat >"$site/netlify/edge-functions/hello.js" <<'JS'
export default () =>
  new Response("hello from ledge\n", { headers: { "content-type": "text/plain" } });
export const config = { path: "/hello" };
JS
printf 'listen = "127.0.0.1:%s"\napi_listen = "127.0.0.1:0"\ndata = "%s/data"\naccess_log = "off"\n\n[functions]\nworkers = 1\n' \
  "$port" "$work" >"$work/ledge.toml"
deploy_fixture "$bin" "$work/ledge.toml" "$site" "$base/hello" "$work/deploy.log"

out=$work/node.callgrind
serve_under_callgrind "$bin" "$work/ledge.toml" "$out" "$work/node.log" "$base/hello"
vpid=$VPID
declare -A per
for path in hello index.html; do
  url=$base/$path
  # Warm: the isolate, the answer's buffers.
  wrk -t1 -c8 -d2s "$url" >/dev/null
  callgrind_control -z "$vpid" >/dev/null 2>&1
  callgrind_control -i on "$vpid" >/dev/null 2>&1
  result=$(wrk -t1 -c8 -d"${seconds}s" "$url")
  callgrind_control -i off "$vpid" >/dev/null 2>&1
  callgrind_control -d "$path" "$vpid" >/dev/null 2>&1
  sleep 1
  reqs=$(awk '/requests in/ {print $1}' <<<"$result")
  dump=$(ls -t "$out"* | head -1)
  ir=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
  [[ -n $reqs && -n $ir && $reqs -gt 0 ]] || { echo "$path: no count" >&2; exit 1; }
  per[$path]=$((ir / reqs))
  echo "/$path: $reqs requests, ${per[$path]} instructions per request (node)"
  [[ -n ${KEEP:-} ]] && cp "$dump" "$KEEP-$path.callgrind"
done
kill "$vpid"; wait "$vpid" 2>/dev/null || true
echo "the function path costs the node $((per[hello] - per[index.html])) instructions per request more than a static file"
