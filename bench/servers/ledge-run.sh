#!/usr/bin/env bash
# ledge-run.sh BIN CONFIG SITE_DIR — deploy SITE_DIR as site "bench" (served for
# Host 127.0.0.1), then exec `ledge serve --config CONFIG` in the foreground.
# The deploy runs on a throwaway node over the same data folder, on port 0, so
# the bench port opens only once the site is published.
set -euo pipefail
bin=$1 config=$2 site=$3
data=$(awk -F'"' '/^data =/ { print $2 }' "$config")
mkdir -p "$data"
out=$(mktemp)
prep_config=$(mktemp)
grep -v '^tls_' "$config" >"$prep_config"   # the prep node opens no bench port
"$bin" serve --config "$prep_config" --listen 127.0.0.1:0 --api-listen 127.0.0.1:0 >"$out" 2>&1 &
prep=$!
trap 'kill $prep 2>/dev/null || true; rm -f "$out" "$prep_config"' EXIT
for _ in $(seq 1 100); do grep -q "API listening" "$out" && break; sleep 0.1; done
api=$(sed -n 's/^ledge: API listening on //p' "$out")
[[ -n $api ]] || { cat "$out" >&2; exit 1; }
export LEDGE_API=$api LEDGE_TOKEN
LEDGE_TOKEN=$(cat "$data/admin-token")
"$bin" sites list | grep -q '^bench' || "$bin" sites create bench >/dev/null
"$bin" domains add 127.0.0.1 --site bench >/dev/null 2>&1 || true
"$bin" deploy "$site" --site bench --prod --json >/dev/null
kill -TERM $prep; wait $prep 2>/dev/null || true
trap - EXIT; rm -f "$out" "$prep_config"
exec "$bin" serve --config "$config"
