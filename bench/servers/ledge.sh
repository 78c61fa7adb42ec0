# servers/ledge.sh — Ledge as one more row.
# shellcheck shell=bash disable=SC2034
#
# Ledge serves deploys, not a folder: servers/ledge-run.sh first deploys $SITE
# into a data folder kept under $BENCH_WORK (so only the first run uploads),
# routes the host the load generators send (127.0.0.1) to it as a custom
# domain, then runs `ledge serve` in the foreground on the bench port. The
# access log is off like every other row's (LEDGE_ACCESS_LOG=on, optionally
# with LEDGE_LOG_DRAIN=URL, measures logging). For proxy-cache the deployed
# site is one proxy rule to the harness's origin.

SRV_PORT=31085
SRV_SCENARIOS="static-1k static-100k redirect h2-tls proxy-cache conn-close many-files static-1m tls-handshake h1-tls fn-hello"

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
    proxy-cache) echo "proxy rule /* -> origin, ledge-cache memory tier (disk tier on)";;
    fn-hello) echo "Netlify edge function (QuickJS), ${LEDGE_FN_WORKERS:-1} sandboxed worker(s) on the server's core (0 = in process)";;
    h2-tls) echo "rustls (ring), certificate by SNI resolver, default cert for no-SNI";;
    static-*|many-files|conn-close) echo "deploy snapshot, file bytes from the in-memory blob cache (8 MiB objects)";;
  esac
}

srv_config() {
  local scen=$1 dir=$2 port=$3
  if [[ $scen == h2-tls || $scen == tls-handshake || $scen == h1-tls ]]; then
    # HTTPS on the bench port (the harness certificate is the operator's
    # default, as h2load connects by IP without SNI); plain HTTP elsewhere.
    cat >"$dir/ledge.toml" <<TOML
listen = "127.0.0.1:0"
tls_listen = "127.0.0.1:$port"
tls_cert = "$TLS_CERT"
tls_key = "$TLS_KEY"
api_listen = "127.0.0.1:0"
data = "$BENCH_WORK/ledge-data"
access_log = "${LEDGE_ACCESS_LOG:-off}"
TOML
  else
    cat >"$dir/ledge.toml" <<TOML
listen = "127.0.0.1:$port"
api_listen = "127.0.0.1:0"
data = "$BENCH_WORK/ledge-data"
access_log = "${LEDGE_ACCESS_LOG:-off}"
outbound_allow = ["127.0.0.0/8"]
TOML
    # LEDGE_ACCESS_LOG=on with LEDGE_LOG_DRAIN=URL measures a drain.
    if [[ -n ${LEDGE_LOG_DRAIN:-} ]]; then
      echo "log_drains = [\"$LEDGE_LOG_DRAIN\"]" >>"$dir/ledge.toml"
    fi
  fi
  if [[ $scen == fn-hello ]]; then
    # A site whose /hello is an edge function; its workers inherit the
    # server's pinned core.
    printf '\n[functions]\nworkers = %s\n' "${LEDGE_FN_WORKERS:-1}" >>"$dir/ledge.toml"
    mkdir -p "$dir/fn-site/netlify/edge-functions"
    echo "home" >"$dir/fn-site/index.html"
    cat >"$dir/fn-site/netlify/edge-functions/hello.js" <<'JS'
export default () =>
  new Response("hello from ledge\n", { headers: { "content-type": "text/plain" } });
export const config = { path: "/hello" };
JS
  fi
  if [[ $scen == proxy-cache ]]; then
    # A site that is one proxy rule to the harness's origin.
    mkdir -p "$dir/proxy-site"
    echo "/*  http://127.0.0.1:$ORIGIN_PORT/:splat  200" >"$dir/proxy-site/_redirects"
    echo "proxy" >"$dir/proxy-site/index.html"
  fi
}

srv_cmd() {
  local dir=$2
  local site=$SITE
  [[ $1 == proxy-cache ]] && site=$dir/proxy-site
  [[ $1 == fn-hello ]] && site=$dir/fn-site
  SRV_CMD=(bash "$BENCH_DIR/servers/ledge-run.sh" "$(ledge_bin)" "$dir/ledge.toml" "$site")
  SRV_ENV=(LEDGE_LOG=warn TOKIO_WORKER_THREADS="$SERVER_NCPU")
}
