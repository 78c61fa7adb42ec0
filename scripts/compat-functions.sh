#!/usr/bin/env bash
# Edge function compatibility: serves tests/compat/edge-functions/ (a site
# written for Netlify, unchanged) with `netlify dev --offline` and with Ledge,
# sends both the same requests and compares the answers
# (scripts/compat-functions.mjs says what is compared and what is not).
# Exits non-zero on any difference or if either server cannot be started.
#
#   scripts/compat-functions.sh
#
# Environment:
#   LEDGE_BIN                 the ledge binary (default: $CARGO_TARGET_DIR or
#                             target/, then debug/ledge)
#   LEDGE_SHARED_DIR          the shared folder (default: ../shared beside the
#                             checkout), for oracles/netlify-dev-offline.sh
#   LEDGE_NETLIFY_DEV_DIR     where netlify-cli and deno are installed
#                             (default: ~/.cache/ledge-netlify-dev; reused)
#   COMPAT_KEEP=1             keep the temporary folder (logs) after the run
#
# Needs node and npm; the first run installs netlify-cli@26.2.0 and
# deno@2.9.6 from the npm registry (about 500 MB).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

NETLIFY_CLI_VERSION=26.2.0
DENO_VERSION=2.9.6
SITE_NAME=compat
GREETING="hello from the environment"

shared="${LEDGE_SHARED_DIR:-$(cd .. && pwd)/shared}"
oracle="$shared/oracles/netlify-dev-offline.sh"
[ -f "$oracle" ] || { echo "compat: cannot find $oracle (set LEDGE_SHARED_DIR)" >&2; exit 1; }
bin="${LEDGE_BIN:-${CARGO_TARGET_DIR:-$repo/target}/debug/ledge}"
[ -x "$bin" ] || { echo "compat: no ledge binary at $bin (cargo build -p ledge, or set LEDGE_BIN)" >&2; exit 1; }
command -v node >/dev/null && command -v npm >/dev/null \
  || { echo "compat: node and npm are needed" >&2; exit 1; }

log() { echo "compat: $*" >&2; }
started=$SECONDS

# --- netlify-cli and deno, installed once ----------------------------------
inst="${LEDGE_NETLIFY_DEV_DIR:-$HOME/.cache/ledge-netlify-dev}"
installed() {
  [ "$(node -p "require('$inst/node_modules/netlify-cli/package.json').version" 2>/dev/null)" = "$NETLIFY_CLI_VERSION" ] \
    && [ "$(node -p "require('$inst/node_modules/deno/package.json').version" 2>/dev/null)" = "$DENO_VERSION" ] \
    && [ -x "$inst/node_modules/.bin/deno" ] \
    && "$inst/node_modules/.bin/deno" --version >/dev/null 2>&1
}
mkdir -p "$inst"
# One install at a time when several runs share the folder.
exec 9>"$inst/.lock"
flock -w 1000 9 || { echo "compat: $inst is locked by another install for too long" >&2; exit 1; }
if ! installed; then
  log "installing netlify-cli@$NETLIFY_CLI_VERSION and deno@$DENO_VERSION into $inst"
  t0=$SECONDS
  if ! (cd "$inst" && { [ -f package.json ] || npm init -y >/dev/null; } \
        && timeout 900 npm install --no-audit --no-fund --loglevel=error \
             "netlify-cli@$NETLIFY_CLI_VERSION" "deno@$DENO_VERSION" >"$inst/install.log" 2>&1); then
    echo "compat: npm install failed or took longer than 15 minutes; the end of $inst/install.log:" >&2
    tail -n 20 "$inst/install.log" >&2 || true
    exit 1
  fi
  installed || { echo "compat: npm install finished but netlify-cli/deno are not usable in $inst" >&2; exit 1; }
  log "installed in $((SECONDS - t0)) s"
fi
exec 9>&-

# --- temporary folders, child processes, cleanup ---------------------------
tmp="$(mktemp -d /tmp/ledge-compat.XXXXXX)"
netlify_pid=""
ledge_pid=""
stop() {
  # Each server was started with setsid: its id is its process group, which
  # also holds what it started (netlify dev's deno and static server).
  local pid=$1
  [ -n "$pid" ] || return 0
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  stop "$netlify_pid"
  stop "$ledge_pid"
  if [ "${COMPAT_KEEP:-}" = 1 ] || [ "$rc" -ne 0 ]; then
    log "logs kept in $tmp"
  else
    rm -rf "$tmp"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_for SECS WHAT PID CMD…: polls CMD every half second for up to SECS;
# fails early when process PID has exited.
wait_for() {
  local secs=$1 what=$2 pid=$3; shift 3
  local until=$((SECONDS + secs))
  while ! "$@" >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "compat: $what did not happen: the server exited" >&2
      return 1
    fi
    if [ "$SECONDS" -ge "$until" ]; then
      echo "compat: $what did not happen within ${secs}s" >&2
      return 1
    fi
    sleep 0.5
  done
}
free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}
# True when the site at $1 answers /api/ready with the api function's JSON:
# the edge functions are loaded.
functions_ready() {
  node -e '
    const http = require("node:http");
    const u = new URL("/api/ready", process.argv[1]);
    const req = http.get({ host: u.hostname, port: u.port, path: u.pathname,
      headers: { host: "compat.localhost" }, timeout: 5000 }, (res) => {
      let b = ""; res.on("data", (d) => (b += d));
      res.on("end", () => process.exit(res.statusCode === 200 && b.includes("\"name\":\"ready\"") ? 0 : 1));
    });
    req.on("timeout", () => req.destroy()); req.on("error", () => process.exit(1));' "$1"
}

# --- netlify dev --offline, on a copy of the site --------------------------
mkdir -p "$tmp/netlify"
cp -R tests/compat/edge-functions "$tmp/netlify/site"
# Netlify dev reads site environment variables from .env; Ledge from its site
# settings (below). Same variable, each platform's own way to set it.
printf 'COMPAT_GREETING=%s\n' "$GREETING" >"$tmp/netlify/site/.env"
nport="$(free_port)"
sport="$(free_port)"
log "starting netlify dev --offline on port $nport"
(cd "$tmp/netlify" && exec setsid bash "$oracle" "$inst" "$tmp/netlify/site" "$nport" --staticServerPort "$sport") \
  >"$tmp/netlify.log" 2>&1 </dev/null &
netlify_pid=$!

# --- ledge serve, with the site deployed ------------------------------------
log "starting $bin serve"
setsid "$bin" serve --listen 127.0.0.1:0 --api-listen 127.0.0.1:0 --data "$tmp/ledge-data" \
  >"$tmp/ledge.log" 2>&1 </dev/null &
ledge_pid=$!
listening() { grep -q '^ledge: edge listening on ' "$tmp/ledge.log" && grep -q '^ledge: API listening on ' "$tmp/ledge.log"; }
wait_for 60 "ledge serve listening" "$ledge_pid" listening \
  || { tail -n 20 "$tmp/ledge.log" >&2; exit 1; }
ledge_url="http://$(sed -n 's/^ledge: edge listening on http:\/\///p' "$tmp/ledge.log" | head -n1)"
export LEDGE_API="http://$(sed -n 's/^ledge: API listening on http:\/\///p' "$tmp/ledge.log" | head -n1)"
LEDGE_TOKEN="$(cat "$tmp/ledge-data/admin-token")"
export LEDGE_TOKEN
cp -R tests/compat/edge-functions "$tmp/ledge-site"
timeout 60 "$bin" sites create "$SITE_NAME" >/dev/null
timeout 60 "$bin" sites set "$SITE_NAME" "env.COMPAT_GREETING=$GREETING" >/dev/null
if ! timeout 300 "$bin" deploy "$tmp/ledge-site" --site "$SITE_NAME" --prod >"$tmp/deploy.log" 2>&1; then
  echo "compat: ledge deploy failed:" >&2
  cat "$tmp/deploy.log" >&2
  exit 1
fi
wait_for 60 "Ledge serving the site's functions" "$ledge_pid" functions_ready "$ledge_url" \
  || { tail -n 20 "$tmp/ledge.log" >&2; exit 1; }
log "ledge ready at $ledge_url (site $SITE_NAME)"

netlify_url="http://127.0.0.1:$nport"
if ! wait_for 240 "netlify dev serving the site's functions" "$netlify_pid" functions_ready "$netlify_url"; then
  tail -n 40 "$tmp/netlify.log" >&2
  exit 1
fi
log "netlify dev ready at $netlify_url"

# --- the comparison ---------------------------------------------------------
set +e
node scripts/compat-functions.mjs "$netlify_url" "$ledge_url"
rc=$?
set -e
log "finished in $((SECONDS - started)) s"
exit "$rc"
