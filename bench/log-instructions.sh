#!/usr/bin/env bash
# log-instructions.sh [SECONDS] — what the access log costs in instructions:
# static-1k served by Ledge under callgrind (one worker), counted over a
# wrk run (8 connections) with the log off and with the default file log,
# and, with UA=1, with a browser's User-Agent and a Referer on every request.
# Prints instructions per request for each and the log's share.
#
# Instruction counts barely move with the machine's load, unlike requests
# per CPU-second (`log-cost.sh`), so they show changes of a few percent that
# the throughput runs cannot. They do not see what an instruction costs
# (cache misses, `lock`-prefixed adds, system calls): read them beside
# `log-cost.sh`, not instead of it.
#
# Uses target/release/ledge (or $LEDGE_BIN), valgrind, wrk, and the fixture
# that ./setup.sh --fixtures builds.
set -euo pipefail
seconds=${1:-8}
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib/common.sh"
bin=${LEDGE_BIN:-$here/../target/release/ledge}
site=$BENCH_WORK/site
[[ -d $site ]] || "$here/setup.sh" --fixtures
command -v valgrind >/dev/null || { echo "log-instructions.sh needs valgrind" >&2; exit 1; }
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
port=31996
url=http://127.0.0.1:$port/assets/asset-1k.css
headers=()
if [[ ${UA:-0} == 1 ]]; then
  headers=(-H "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
    -H "Referer: https://news.example/a/page")
fi

for c in off on; do
  printf 'listen = "127.0.0.1:%s"\napi_listen = "127.0.0.1:0"\ndata = "%s/data"\naccess_log = "%s"\n' \
    "$port" "$work" "$c" >"$work/$c.toml"
done
deploy_fixture "$bin" "$work/off.toml" "$site" "$url" "$work/deploy.log"

declare -A per
for c in off on; do
  out=$work/$c.callgrind
  serve_under_callgrind "$bin" "$work/$c.toml" "$out" "$work/$c.log" "$url"
  vpid=$VPID
  # Warm: the answer is kept and every buffer has its size.
  wrk -t1 -c8 -d2s "${headers[@]}" "$url" >/dev/null
  callgrind_control -i on "$vpid" >/dev/null 2>&1
  result=$(wrk -t1 -c8 -d"${seconds}s" "${headers[@]}" "$url")
  callgrind_control -i off "$vpid" >/dev/null 2>&1
  callgrind_control -d "$vpid" >/dev/null 2>&1
  sleep 1
  kill "$vpid"; wait "$vpid" 2>/dev/null || true
  reqs=$(awk '/requests in/ {print $1}' <<<"$result")
  # The dump made on request is the largest file.
  dump=$(ls -S "$out"* | head -1)
  ir=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
  [[ -n $reqs && -n $ir && $reqs -gt 0 ]] || { echo "$c: no count" >&2; exit 1; }
  per[$c]=$((ir / reqs))
  echo "log $c: $reqs requests, ${per[$c]} instructions per request"
done
awk -v off="${per[off]}" -v on="${per[on]}" 'BEGIN {
  printf "the file log: %d instructions per request, %.1f %% of the user-space\n", on - off, (on - off) * 100 / off
  printf "instructions of a request without it (the kernel work is not counted)\n" }'
