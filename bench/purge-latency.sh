#!/usr/bin/env bash
# purge-latency.sh [N] — purge-to-effect latency on one node: how long
# `POST /api/v1/sites/{site}/purge` takes to answer. The API answers only once
# this node's edge applied the purge (read-your-writes), so the answer time is
# the time to effect. Each purge is checked: the next request for the cached
# URL must reach the origin again.
# Uses target/release/ledge (or $LEDGE_BIN), python3 for the origin and stats.
set -euo pipefail
n=${1:-300}
here=$(cd "$(dirname "$0")" && pwd)
bin=${LEDGE_BIN:-$here/../target/release/ledge}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

# A counting origin: every answer is cacheable for an hour and tagged.
cat >"$work/origin.py" <<'PY'
import http.server, sys
count = 0
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        global count
        count += 1
        body = f"origin request {count}".encode()
        self.send_response(200)
        self.send_header("Cache-Control", "public, max-age=3600")
        self.send_header("Cache-Tag", "bench")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
oport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 "$work/origin.py" "$oport" &
"$bin" serve --data "$work/data" --listen 127.0.0.1:0 --api-listen 127.0.0.1:0 \
  --outbound-allow 127.0.0.0/8 --access-log off >"$work/out" 2>&1 &
for _ in $(seq 1 100); do grep -q "API listening" "$work/out" && break; sleep 0.1; done
api=$(sed -n 's/^ledge: API listening on //p' "$work/out")
edge=$(sed -n 's/^ledge: edge listening on //p' "$work/out")
export LEDGE_API=$api LEDGE_TOKEN; LEDGE_TOKEN=$(cat "$work/data/admin-token")
"$bin" sites create bench >/dev/null
mkdir -p "$work/site"; echo "/*  http://127.0.0.1:$oport/:splat  200" >"$work/site/_redirects"
"$bin" deploy "$work/site" --site bench --prod --json >/dev/null
url="$edge/x"
: >"$work/times"
for i in $(seq 1 "$n"); do
  before=$(curl -s -H "Host: bench.localhost" "$url")
  [[ $(curl -s -H "Host: bench.localhost" "$url") == "$before" ]] || { echo "not cached" >&2; exit 1; }
  if (( i % 2 )); then body='{}'; else body='{"tags":["bench"]}'; fi
  curl -s -o /dev/null -w '%{time_total}\n' -X POST -H "Authorization: Bearer $LEDGE_TOKEN" \
    -H 'Content-Type: application/json' -d "$body" "$api/api/v1/sites/bench/purge" >>"$work/times"
  after=$(curl -s -H "Host: bench.localhost" "$url")
  [[ $after != "$before" ]] || { echo "purge $i did not take effect" >&2; exit 1; }
done
python3 - "$work/times" <<'PY'
import sys
t = sorted(float(x) * 1000 for x in open(sys.argv[1]))
q = lambda p: t[min(len(t) - 1, int(p * len(t)))]
print(f"purges={len(t)} p50_ms={q(0.5):.2f} p99_ms={q(0.99):.2f} max_ms={t[-1]:.2f} (API answer = effect on this node; every purge verified)")
PY
