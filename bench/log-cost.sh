#!/usr/bin/env bash
# log-cost.sh [ROUNDS] — what the access log costs: static-1k (wrk, 64
# connections, 8 s after a 2 s warm-up) per server CPU-second with the log
# off, to the default file drain, and to a NATS JetStream drain, alternating
# in each round (each round starting with the next one) so all three see
# the same machine. Ledge runs with one worker thread on CPU 0 (its log
# threads too); wrk and nats-server share CPU 1.
# Prints one line per run (with the records the log lost, which must be 0
# for the comparison to hold) and the medians; exits 1 if a run fails.
# Uses target/release/ledge (or $LEDGE_BIN), wrk, and nats-server from PATH
# (the NATS case is skipped without it). Fixtures: ./setup.sh --fixtures.
#
# RATE=N measures at a fixed load instead: h2load (HTTP/1.1, 64 connections)
# sends N requests a second, below what every configuration can serve, so
# each serves the same load and the figure is what the server spent on it.
# At saturation, wrk (which shares its core with nats-server) is the limit
# with the log off, and a server given fewer requests per wake-up spends
# more per request: the fixed load keeps that out of the comparison.
set -euo pipefail
rounds=${1:-8}
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib/common.sh"
bin=${LEDGE_BIN:-$here/../target/release/ledge}
site=$BENCH_WORK/site
[[ -d $site ]] || "$here/setup.sh" --fixtures
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
port=31998 nats_port=31997
url=http://127.0.0.1:$port/assets/asset-1k.css

configs=(off file)
write_config() { # NAME EXTRA
  printf 'listen = "127.0.0.1:%s"\napi_listen = "127.0.0.1:0"\ndata = "%s/data"\n%s\n' \
    "$port" "$work" "$2" >"$work/$1.toml"
}
write_config off 'access_log = "off"'
write_config file 'access_log = "on"'
if command -v nats-server >/dev/null; then
  write_config nats "access_log = \"on\"
log_drains = [\"nats://127.0.0.1:$nats_port/ledge.logs.bench\"]"
  configs+=(nats)
  taskset -c 1 nats-server -js -a 127.0.0.1 -p "$nats_port" -sd "$work/nats" >/dev/null 2>&1 &
  sleep 1
  # A stream for the drain: memory storage, oldest records dropped past 512 MiB.
  python3 - "$nats_port" <<'PY'
import json, socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.recv(4096)
cfg = json.dumps({"name": "BENCH", "subjects": ["ledge.logs.>"], "storage": "memory",
                  "max_bytes": 512 << 20, "discard": "old"}).encode()
s.sendall(b'CONNECT {"verbose":false}\r\nSUB _INBOX.b 1\r\nPUB $JS.API.STREAM.CREATE.BENCH _INBOX.b %d\r\n' % len(cfg)
          + cfg + b"\r\nPING\r\n")
time.sleep(0.5)
reply = s.recv(65536).decode()
if "stream_create_response" not in reply or '"error"' in reply:
    sys.exit("creating the stream failed: " + reply[:300])
PY
fi

# Deploy the fixture once (a throwaway node over the same data folder).
deploy_fixture "$bin" "$work/off.toml" "$site" "$url" "$work/deploy.log"

tck=$(getconf CLK_TCK)
declare -A results
for r in $(seq 1 "$rounds"); do
  # Each round starts with the next configuration: the first run of a
  # round came out a few percent cheaper than the others (session 15),
  # and a fixed order would give that to one configuration every time.
  n=${#configs[@]}
  for k in $(seq 0 $((n - 1))); do
    c=${configs[$(( (r - 1 + k) % n ))]}
    TOKIO_WORKER_THREADS=1 taskset -c 0 "$bin" serve --config "$work/$c.toml" >"$work/server.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 200); do curl -sf -o /dev/null "$url" && break; sleep 0.1; done
    taskset -c 1 wrk -t1 -c64 -d2s "$url" >/dev/null
    t0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    if [[ -n ${RATE:-} ]]; then
      out=$(taskset -c 1 h2load --h1 -t1 -c64 --rps=$(( RATE / 64 )) -D 8 "$url")
      # As wrk says it, for the line below.
      out=$(awk '/^requests:/ {print $8 " requests in"}' <<<"$out")
    else
      out=$(taskset -c 1 wrk -t1 -c64 -d8s "$url")
    fi
    t1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    # Records lost anywhere (queue full, a drain's buffer full or a batch
    # given up): the comparison only holds if this is 0.
    lost=-
    if [[ $c != off ]]; then
      api=$(sed -n 's/^ledge: API listening on //p' "$work/server.log")
      lost=$(curl -s -H "Authorization: Bearer $(cat "$work/data/admin-token")" "$api/metrics" |
        awk '/^ledge_telemetry_(queue|sink)_dropped_total / {n += $2; seen = 1} END {print seen ? n : "?"}')
    fi
    kill "$pid"; wait "$pid" 2>/dev/null || true
    reqs=$(awk '/requests in/ {print $1}' <<<"$out")
    [[ -n $reqs && $t1 -gt $t0 ]] || { echo "round $r $c: failed" >&2; exit 1; }
    per=$(( reqs * tck / (t1 - t0) ))
    results[$c]+="$per "
    echo "round $r $c: $reqs requests, $(( t1 - t0 )) ticks, $per req per CPU-s, records lost: $lost"
  done
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
off=$(median <<<"${results[off]}")
for c in "${configs[@]}"; do
  m=$(median <<<"${results[$c]}")
  echo "median $c: $m req per CPU-s ($(awk -v a="$m" -v b="$off" 'BEGIN {printf "%.3f", a/b}')x off)"
done
