# servers/ledge.sh — Ledge as one more row.
# shellcheck shell=bash disable=SC2034
#
# Ledge serves deploys, not a folder: servers/ledge-run.sh first deploys $SITE
# into a data folder kept under $BENCH_WORK (so only the first run uploads),
# routes the host the load generators send (127.0.0.1) to it as a custom
# domain, then runs `ledge serve` in the foreground on the bench port. No
# access log exists yet, so logging is off like every other row.

SRV_PORT=31085
SRV_SCENARIOS="static-1k static-100k redirect h2-tls conn-close many-files static-1m tls-handshake"

ledge_bin() {
  if [[ -n ${LEDGE_BIN:-} ]]; then echo "$LEDGE_BIN"
  elif [[ -x $BENCH_DIR/../target/release/ledge ]]; then echo "$BENCH_DIR/../target/release/ledge"
  else echo ledge; fi
}

srv_available() { command -v "$(ledge_bin)" >/dev/null 2>&1 || [[ -x $(ledge_bin) ]]; }
srv_version() { "$(ledge_bin)" --version 2>/dev/null | head -1; }
srv_note() {
  case $1 in
    redirect) echo "Netlify _redirects, compiled";;
    h2-tls) echo "rustls (ring), certificate by SNI resolver, default cert for no-SNI";;
    static-*|many-files|conn-close) echo "deploy snapshot, file bytes from the in-memory blob cache (8 MiB objects)";;
  esac
}

srv_config() {
  local scen=$1 dir=$2 port=$3
  if [[ $scen == h2-tls || $scen == tls-handshake ]]; then
    # HTTPS on the bench port (the harness certificate is the operator's
    # default, as h2load connects by IP without SNI); plain HTTP elsewhere.
    cat >"$dir/ledge.toml" <<TOML
listen = "127.0.0.1:0"
tls_listen = "127.0.0.1:$port"
tls_cert = "$TLS_CERT"
tls_key = "$TLS_KEY"
api_listen = "127.0.0.1:0"
data = "$BENCH_WORK/ledge-data"
TOML
  else
    cat >"$dir/ledge.toml" <<TOML
listen = "127.0.0.1:$port"
api_listen = "127.0.0.1:0"
data = "$BENCH_WORK/ledge-data"
TOML
  fi
}

srv_cmd() {
  local dir=$2
  SRV_CMD=(bash "$BENCH_DIR/servers/ledge-run.sh" "$(ledge_bin)" "$dir/ledge.toml" "$SITE")
  SRV_ENV=(LEDGE_LOG=warn TOKIO_WORKER_THREADS="$SERVER_NCPU")
}
