# servers/deno.sh — anchor row for edge functions: Deno.serve answering hello
# (../shared/bench-anchors/deno-hello.ts, port rewritten). V8 + hyper, one
# thread. Binary from `npm install deno` (setup.sh --anchors) or DENO_BIN.
# shellcheck shell=bash disable=SC2034

SRV_PORT=31088
SRV_SCENARIOS="fn-hello"

deno_bin() { echo "${DENO_BIN:-$BENCH_WORK/npm/node_modules/.bin/deno}"; }
anchors_dir() { echo "${BENCH_ANCHORS:-$BENCH_DIR/../../shared/bench-anchors}"; }

srv_available() { [[ -x $(deno_bin) && -f $(anchors_dir)/deno-hello.ts ]]; }
srv_version() { "$(deno_bin)" --version 2>/dev/null | head -1; }
srv_note() { echo "*anchor*: Deno.serve hello (V8 + hyper), one thread"; }

srv_config() {
  local dir=$2 port=$3
  sed "s/port: 8788/port: $port/" "$(anchors_dir)/deno-hello.ts" >"$dir/hello.ts"
}

srv_cmd() {
  local dir=$2
  SRV_CMD=("$(deno_bin)" run --allow-net --no-prompt "$dir/hello.ts")
  SRV_ENV=(DENO_NO_UPDATE_CHECK=1 DENO_V8_FLAGS=--single-threaded)
}
