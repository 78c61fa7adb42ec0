#!/usr/bin/env bash
# equal-load.sh FILE RATE [ROUNDS] — CPU per request at the same load for
# nginx, hyper-min (when FILE is the 1 KB asset it serves) and Ledge.
#
# At saturation the harness's wrk is often the limit (98–99 % of its core),
# and the servers then run at different loads: one at 90 % of its core
# answers fewer requests per wake-up than one at 99 %, and pays more per
# request for it. Here h2load (HTTP/1.1, 64 connections) sends RATE requests
# a second to each server in turn, below what each can serve, so all of them
# do the same work and the figure is what each spent on it: user and system
# CPU time per request, from /proc, of the whole process tree. Each server is
# pinned to CPU 0 with one worker, h2load to CPU 1, alternating per round.
#
#   ./equal-load.sh /assets/asset-100k.js 25000 3
#   ./equal-load.sh /assets/asset-1k.css 80000 3
#
# PROTO=h2 measures h2 over TLS 1.3 instead (the harness's h2-tls: h2load
# with 16 connections of 4 streams, the fixture's ECDSA certificate) for
# nginx, h2o and Ledge:
#
#   PROTO=h2 ./equal-load.sh /assets/asset-1k.css 60000 3
#
# Uses target/release/ledge (or $LEDGE_BIN), nginx, h2o, h2load, and the
# fixtures and hyper-min that ./setup.sh builds. Ledge's access log is off,
# as in the harness.
set -euo pipefail
file=${1:?FILE}
rate=${2:?RATE}
rounds=${3:-3}
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib/common.sh"
bin=${LEDGE_BIN:-$here/../target/release/ledge}
site=$BENCH_WORK/site
[[ -f $site$file ]] || "$here/setup.sh" --fixtures
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
tck=$(getconf CLK_TCK)

proto=${PROTO:-h1}
scen=static-1k scheme=http
[[ $proto == h2 ]] && scen=h2-tls scheme=https
TLS_CERT=$BENCH_WORK/tls/cert.pem TLS_KEY=$BENCH_WORK/tls/key.pem
[[ $proto == h1 || -f $TLS_CERT ]] || "$here/setup.sh" --fixtures

# nginx and h2o as the harness configures them, on ports of their own.
SERVER_NCPU=1 SITE=$site
for s in nginx h2o; do
  source "$here/servers/$s.sh"
  mkdir -p "$work/$s"
  srv_config "$scen" "$work/$s" "$([[ $s == nginx ]] && echo 31980 || echo 31983)"
done
printf 'listen = "127.0.0.1:31981"\napi_listen = "127.0.0.1:0"\ndata = "%s/data"\naccess_log = "off"\n' "$work" >"$work/ledge.toml"

deploy_fixture "$bin" "$work/ledge.toml" "$site" "http://127.0.0.1:31981$file" "$work/deploy.log"
if [[ $proto == h2 ]]; then
  printf 'tls_listen = "127.0.0.1:31984"\ntls_cert = "%s"\ntls_key = "%s"\n' "$TLS_CERT" "$TLS_KEY" >>"$work/ledge.toml"
fi

servers=(nginx ledge)
hyper=$BENCH_WORK/target/release/hyper-min
[[ $proto == h1 && $file == /assets/asset-1k.css && -x $hyper ]] && servers=(nginx hyper-min ledge)
[[ $proto == h2 ]] && servers=(nginx h2o ledge)

measure() { # NAME PORT CMD...
  local name=$1 port=$2
  shift 2
  taskset -c 0 "$@" >"$work/$name.log" 2>&1 &
  local pid=$! url=$scheme://127.0.0.1:$port$file
  for _ in $(seq 1 200); do curl -skf -o /dev/null "$url" && break; sleep 0.1; done
  if [[ $proto == h2 ]]; then
    taskset -c 1 h2load -c16 -m4 -D 2 "$url" >/dev/null
  else
    taskset -c 1 wrk -t1 -c64 -d2s "$url" >/dev/null
  fi
  ticks() { # user and system ticks of the tree
    local u=0 s=0 p
    for p in $pid $(pgrep -P "$pid" || true); do
      read -r a b < <(awk '{print $14, $15}' "/proc/$p/stat")
      u=$((u + a)) s=$((s + b))
    done
    echo "$u $s"
  }
  read -r u0 s0 < <(ticks)
  local out
  if [[ $proto == h2 ]]; then
    out=$(taskset -c 1 h2load -t1 -c16 -m4 --rps=$((rate / 16)) -D 8 "$url")
  else
    out=$(taskset -c 1 h2load --h1 -t1 -c64 --rps=$((rate / 64)) -D 8 "$url")
  fi
  read -r u1 s1 < <(ticks)
  kill "$pid"; wait "$pid" 2>/dev/null || true
  local reqs
  reqs=$(awk '/^requests:/ {print $8}' <<<"$out")
  [[ -n $reqs && $reqs -gt 0 ]] || { echo "round $r $name: failed" >&2; exit 1; }
  awk -v n="$name" -v r="$r" -v q="$reqs" -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v t="$tck" 'BEGIN {
    printf "round %d %-9s %7d requests  user %5.2f µs  system %5.2f µs  total %5.2f µs per request\n",
      r, n, q, u * 1e6 / t / q, s * 1e6 / t / q, (u + s) * 1e6 / t / q }'
}

for r in $(seq 1 "$rounds"); do
  for s in "${servers[@]}"; do
    case $s in
      nginx) measure nginx 31980 nginx -p "$work/nginx/" -c "$work/nginx/nginx.conf" -e "$work/nginx/error.log" ;;
      h2o) measure h2o 31983 h2o -c "$work/h2o/h2o.conf" ;;
      hyper-min) THREADS=1 measure hyper-min 31982 "$hyper" 127.0.0.1:31982 "$site$file" ;;
      ledge) TOKIO_WORKER_THREADS=1 measure ledge "$([[ $proto == h2 ]] && echo 31984 || echo 31981)" "$bin" serve --config "$work/ledge.toml" ;;
    esac
  done
done
