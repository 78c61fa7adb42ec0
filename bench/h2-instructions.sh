#!/usr/bin/env bash
# h2-instructions.sh [SECONDS] — instructions per request of the `h2-tls`
# scenario (static-1k over h2 and TLS 1.3, h2load 16 connections × 4
# streams): Ledge under callgrind with one worker thread, counted over one
# h2load run after a warm-up. Prints the total per request and the part the
# run's 16 TLS handshakes took (h2load opens new connections for each run),
# which the harness, with its longer runs, spreads over far more requests.
#
# Instruction counts barely move with the machine's load, unlike requests
# per CPU-second, so they show changes of a few percent that the harness
# cannot. They do not see what an instruction costs (cache misses, system
# calls): read them beside the harness, not instead of it.
#
# Uses target/release/ledge (or $LEDGE_BIN), valgrind, h2load, and the
# fixture and certificate that ./setup.sh --fixtures builds.
set -euo pipefail
seconds=${1:-6}
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib/common.sh"
bin=${LEDGE_BIN:-$here/../target/release/ledge}
site=$BENCH_WORK/site
[[ -d $site && -f $BENCH_WORK/tls/cert.pem ]] || "$here/setup.sh" --fixtures
command -v valgrind >/dev/null || { echo "h2-instructions.sh needs valgrind" >&2; exit 1; }
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
port=31994 tls_port=31993
plain=http://127.0.0.1:$port/assets/asset-1k.css
url=https://127.0.0.1:$tls_port/assets/asset-1k.css

cat >"$work/ledge.toml" <<TOML
listen = "127.0.0.1:$port"
tls_listen = "127.0.0.1:$tls_port"
tls_cert = "$BENCH_WORK/tls/cert.pem"
tls_key = "$BENCH_WORK/tls/key.pem"
api_listen = "127.0.0.1:0"
data = "$work/data"
access_log = "off"
TOML
deploy_fixture "$bin" "$work/ledge.toml" "$site" "$plain" "$work/deploy.log"

out=$work/h2.callgrind
serve_under_callgrind "$bin" "$work/ledge.toml" "$out" "$work/serve.log" "$url" -skf
vpid=$VPID
# Warm: the answer is kept and every buffer has its size.
h2load -c16 -m4 -D 2 "$url" >/dev/null
callgrind_control -i on "$vpid" >/dev/null 2>&1
reqs=$(h2load -c16 -m4 -D "$seconds" "$url" | awk '/^requests:/ {print $8}')
callgrind_control -i off "$vpid" >/dev/null 2>&1
callgrind_control -d "$vpid" >/dev/null 2>&1
sleep 1
kill "$vpid"; wait "$vpid" 2>/dev/null || true
# The dump made on request is the largest file.
dump=$(ls -S "$out"* | head -1)
report=$(callgrind_annotate --auto=no --inclusive=yes "$dump" 2>/dev/null)
ir=$(awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}' <<<"$report")
hs=$(awk '/StartHandshake<IO>::into_stream \[/ {gsub(",", "", $1); print $1; exit}' <<<"$report")
[[ -n $reqs && -n $ir && $reqs -gt 0 ]] || { echo "no count" >&2; exit 1; }
echo "h2-tls: $reqs requests, $((ir / reqs)) instructions per request" \
  "($(( ${hs:-0} / reqs )) of them the run's 16 handshakes)"
