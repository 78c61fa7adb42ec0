# servers/workerd.sh — anchor row for edge functions: Cloudflare's workerd
# running the hello worker (../shared/bench-anchors/, port rewritten).
# Binary from `npm install workerd` (setup.sh --anchors) or WORKERD_BIN.
# shellcheck shell=bash disable=SC2034

SRV_PORT=31089
SRV_SCENARIOS="fn-hello"

workerd_bin() { echo "${WORKERD_BIN:-$BENCH_WORK/npm/node_modules/.bin/workerd}"; }
anchors_dir() { echo "${BENCH_ANCHORS:-$BENCH_DIR/../../shared/bench-anchors}"; }

srv_available() { [[ -x $(workerd_bin) && -f $(anchors_dir)/workerd-hello.capnp ]]; }
srv_version() { "$(workerd_bin)" --version 2>/dev/null | head -1; }
srv_note() { echo "*anchor*: workerd hello worker"; }

srv_config() {
  local dir=$2 port=$3
  cp "$(anchors_dir)/hello-worker.js" "$dir/"
  sed "s/127.0.0.1:8787/127.0.0.1:$port/" "$(anchors_dir)/workerd-hello.capnp" >"$dir/config.capnp"
}

srv_cmd() {
  local dir=$2
  SRV_CMD=("$(workerd_bin)" serve "$dir/config.capnp")
  SRV_ENV=()
}
