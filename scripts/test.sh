#!/usr/bin/env bash
# Runs every test of the workspace on a fresh machine: installs the pinned
# Netlify oracle packages (npm) that the rules differential tests compare
# against, runs the whole test suite, then compares edge functions with
# `netlify dev --offline` (scripts/compat-functions.sh; installs netlify-cli
# and deno from npm into ~/.cache/ledge-netlify-dev on its first run).
set -euo pipefail
cd "$(dirname "$0")/.."

shared="${LEDGE_SHARED_DIR:-$(cd .. && pwd)/shared}"
if [ ! -f "$shared/oracles/install.sh" ]; then
  echo "test.sh: cannot find shared/oracles beside the checkout (set LEDGE_SHARED_DIR)" >&2
  exit 1
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "test.sh: installing node and npm (Debian packages)" >&2
  apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
fi
# Debian packages the end-to-end tests run for real: pebble (ACME server) and
# openssl (a TLS client that can omit SNI).
missing=()
command -v pebble >/dev/null || missing+=(pebble)
command -v openssl >/dev/null || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
  echo "test.sh: installing ${missing[*]} (Debian packages)" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
ORACLE_NODE_MODULES_DIR="$(bash "$shared/oracles/install.sh")"
# The GeoIP tests write a small MaxMind database with this package.
python3 -c 'import mmdb_writer' 2>/dev/null || python3 -m pip install --quiet mmdb-writer
# nats-server (JetStream) and tansu (Kafka) for the telemetry drain tests.
bash scripts/telemetry-deps.sh
export ORACLE_NODE_MODULES_DIR LEDGE_SHARED_DIR="$shared"

cargo test --workspace --locked "$@"

# Edge functions: the same Netlify-style site (tests/compat/edge-functions/)
# under `netlify dev --offline` and under Ledge, compared request by request.
# The binary is the one `cargo test` just built for the end-to-end tests (a
# separate `cargo build -p ledge` would resolve features differently and
# rebuild much of the tree).
LEDGE_BIN="$(cd "${CARGO_TARGET_DIR:-target}" && pwd)/debug/ledge"
if [ ! -x "$LEDGE_BIN" ]; then
  echo "test.sh: $LEDGE_BIN was not built by cargo test" >&2
  exit 1
fi
LEDGE_BIN="$LEDGE_BIN" bash scripts/compat-functions.sh
