#!/usr/bin/env bash
# pgo-build.sh — a profile-guided release build of `ledge`.
#
#   ./scripts/pgo-build.sh            build, train, build again
#   PGO_SECONDS=8 ./scripts/pgo-build.sh   longer training runs (default 4 s each)
#
# 1. Builds an instrumented binary (target/pgo-gen, `-Cprofile-generate`).
# 2. Trains it on the benchmark harness's own scenarios (bench/run.sh with
#    SERVERS=ledge: static files, redirects, h1 and h2 over TLS, the caching
#    proxy, connection churn, many files, an edge function), so every path
#    the harness measures is in the profile, not only one of them. Needs what
#    the harness needs (wrk, h2load, curl; `bench/setup.sh --fixtures` runs
#    by itself).
# 3. Merges the profiles (llvm-profdata from rustup's llvm-tools component)
#    and builds again with `-Cprofile-use` into target/pgo/release/ledge.
#
# The profiles are written in LLVM's continuous mode (`%c`): the counters
# live in a file mapped at start-up, so a server stopped by a signal keeps
# its counts, and a function worker, whose sandbox forbids opening files,
# writes its own through the mapping it made before its sandbox was applied
# (the node hands LLVM_PROFILE_FILE to its workers for that reason).
# Continuous mode cannot hold value profiles (llvm-profdata calls such a
# file truncated), so the instrumented build has none (`-disable-vp`): no
# indirect-call promotion from the profile.
#
# The C (QuickJS, mimalloc, ring, SQLite; built by the cc crate) is
# profile-guided by GCC's own instrumentation, which writes its counts
# (`.gcda`, beside each object) only when a process exits normally and
# cannot write from a sandboxed worker. So the training also runs the edge
# function in process (`workers = 0`), where the node runs QuickJS itself
# and writes its counts when the harness stops it. The profile-guided
# build's objects live elsewhere (another target dir, other hashes in
# their paths): its first pass compiles the C without profiles, the counts
# are then copied beside its objects, and a second pass with
# `-fprofile-use` compiles the C again (and what depends on it).
# `-fprofile-partial-training` keeps code the training never ran optimised
# for speed, not for size: tenants' code runs more of QuickJS than a hello.
#
# A plain `cargo build --release` is unaffected and stays the default build.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

host=$(rustc -vV | sed -n 's/^host: //p')
profdata="$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata"
if [[ ! -x $profdata ]]; then
  echo "pgo-build: installing rustup's llvm-tools (for llvm-profdata)" >&2
  rustup component add llvm-tools >&2
fi

gen_dir=$repo/target/pgo-gen
use_dir=$repo/target/pgo
profiles=$repo/target/pgo-profiles
rm -rf "$profiles"
mkdir -p "$profiles"

# The C flags of every build of the tree: a CFLAGS of the environment, as
# cargo gives it precedence, else the tree's own (.cargo/config.toml).
c_base=${CFLAGS:-$(sed -n 's/^CFLAGS = "\(.*\)"$/\1/p' "$repo/.cargo/config.toml")}
[[ -n $c_base ]] || { echo "pgo-build: no CFLAGS in the environment or .cargo/config.toml" >&2; exit 1; }

echo "pgo-build: 1/3 instrumented build" >&2
# GCC's counters need libgcov, linked into the binary alone (`cargo rustc`
# passes the flag to the last crate only). Counts of an earlier run go.
if [[ -d $gen_dir/release/build ]]; then
  find "$gen_dir/release/build" -name '*.gcda' -delete
fi
CFLAGS="$c_base -fprofile-generate -fprofile-update=atomic" \
  RUSTFLAGS="-Cprofile-generate=$profiles -Cllvm-args=-runtime-counter-relocation -Cllvm-args=-disable-vp=true" \
  CARGO_TARGET_DIR=$gen_dir cargo rustc --release --locked -p ledge --bin ledge -- -Clink-arg=-lgcov

echo "pgo-build: 2/3 training on the harness's scenarios" >&2
results=$(mktemp -d)
trap 'rm -rf "$results"' EXIT
LLVM_PROFILE_FILE="$profiles/ledge-%p%c.profraw" \
  LEDGE_BIN=$gen_dir/release/ledge SERVERS=ledge \
  DURATION=${PGO_SECONDS:-4} WARMUP=1 REPEAT=1 RESULTS_DIR=$results RUN_ID=pgo \
  "$repo/bench/run.sh" static-1k static-100k redirect h2-tls proxy-cache conn-close \
  many-files h1-tls fn-hello >&2
# The edge function again, in process: QuickJS's counts for GCC.
LLVM_PROFILE_FILE="$profiles/ledge-%p%c.profraw" LEDGE_FN_WORKERS=0 \
  LEDGE_BIN=$gen_dir/release/ledge SERVERS=ledge \
  DURATION=${PGO_SECONDS:-4} WARMUP=1 REPEAT=1 RESULTS_DIR=$results RUN_ID=pgo-in-process \
  "$repo/bench/run.sh" fn-hello >&2
shopt -s nullglob
raw=("$profiles"/*.profraw)
(( ${#raw[@]} > 0 )) || { echo "pgo-build: the training wrote no profile" >&2; exit 1; }
"$profdata" merge -o "$profiles/merged.profdata" "${raw[@]}"
echo "pgo-build: merged ${#raw[@]} profiles" >&2
# The function workers' counts must be in: without them the worker's code
# would be built as never run (cold). `Worker::handle` runs only there.
worker_counts=$("$profdata" show --all-functions --counts "$profiles/merged.profdata" |
  awk '/worker5child6Worker6handle17/ { found = 1; next }
       found == 1 && /Block counts/ { gsub(/[^0-9,]/, ""); n = split($0, c, ","); for (i = 1; i <= n; i++) s += c[i]; found = 2 }
       END { print s + 0 }')
if [[ -z $worker_counts || $worker_counts == 0 ]]; then
  echo "pgo-build: the function workers wrote no counts" >&2
  exit 1
fi
gcda=()
while IFS= read -r -d '' f; do gcda+=("$f"); done < <(find "$gen_dir/release/build" -name '*.gcda' -print0)
if ! printf '%s\n' "${gcda[@]}" | grep -q '/rquickjs-sys-[^/]*/out/.*quickjs\.gcda$'; then
  echo "pgo-build: QuickJS wrote no counts (.gcda)" >&2
  exit 1
fi
echo "pgo-build: ${#gcda[@]} C objects have counts" >&2

echo "pgo-build: 3/3 profile-guided build" >&2
# Cargo does not see a new profile behind the same flags: start clean.
rm -rf "$use_dir"
use_rust="-Cprofile-use=$profiles/merged.profdata -Cllvm-args=-disable-vp=true"
CFLAGS="$c_base" RUSTFLAGS="$use_rust" \
  CARGO_TARGET_DIR=$use_dir cargo build --release --locked -p ledge
# Each count file goes beside the same object of this build: the same crate
# (`build/<crate>-<hash>/`, another hash) and the same path under `out/`.
placed=0
for g in "${gcda[@]}"; do
  rel=${g#"$gen_dir/release/build/"}
  unit=${rel%%/*}
  inner=${rel#*/}
  for d in "$use_dir/release/build/${unit%-*}"-*/; do
    if [[ -f $d${inner%.gcda}.o ]]; then
      cp "$g" "$d$inner"
      placed=$((placed + 1))
    fi
  done
done
(( placed > 0 )) || { echo "pgo-build: no object of the build matches a count file" >&2; exit 1; }
echo "pgo-build: counts placed beside $placed objects; compiling the C again" >&2
# Other CFLAGS make the cc build scripts run again (same out dirs). The
# sources are copies under `out/` too, so GCC sees their functions at other
# paths and would refuse every count: `-Wno-coverage-mismatch` lets it take
# them where the function's control flow is the same (it still drops the
# count of any function whose control flow changed).
CFLAGS="$c_base -fprofile-use -fprofile-partial-training -fprofile-correction -Wno-missing-profile -Wno-coverage-mismatch" \
  RUSTFLAGS="$use_rust" CARGO_TARGET_DIR=$use_dir cargo build --release --locked -p ledge
echo "$use_dir/release/ledge"
