#!/usr/bin/env bash
# The one test command: README and CI (.ci/run) call exactly this.
#
# Needs only a Rust toolchain and python3 (3.11+, with venv/pip). On first run it creates ./.venv
# with the pinned tools in scripts/requirements-test.txt; later runs skip the install while the
# requirements are unchanged. It then starts a moto server on a free port, lints template.yaml,
# builds every binary (the end-to-end tests spawn them) and runs `cargo test --workspace "$@"`.
# Extra arguments go to `cargo test`; a package selection (-p NAME) replaces --workspace.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

VENV="$REPO/.venv"
REQS="$REPO/scripts/requirements-test.txt"
STAMP="$VENV/.requirements.sha256"
PYTHON="${PYTHON:-python3}"
LOG_DIR="$REPO/target"
MOTO_LOG="$LOG_DIR/moto.log"
MOTO_PID=""

section() { printf '\n==> %s\n' "$*"; }
die() {
  printf '\nERROR: %s\n' "$*" >&2
  exit 1
}
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

cleanup() {
  local rc=$?
  if [[ -n "$MOTO_PID" ]] && kill -0 "$MOTO_PID" 2>/dev/null; then
    kill "$MOTO_PID" 2>/dev/null || true
    wait "$MOTO_PID" 2>/dev/null || true
  fi
  if ((rc != 0)); then
    printf '\n==> FAILED (exit %s)\n' "$rc" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- 1. Python tools --------------------------------------------------------------------------
section "Python test tools (.venv)"
command -v "$PYTHON" >/dev/null || die "$PYTHON not found; install Python 3.11+ with venv and pip"
if [[ ! -x "$VENV/bin/python" ]]; then
  echo "creating $VENV"
  "$PYTHON" -m venv "$VENV" || die "could not create $VENV (on Debian/Ubuntu: apt-get install python3-venv)"
fi
# The stamp ties the install to the exact requirements and interpreter, so reruns skip pip.
want="$( { cat "$REQS"; "$VENV/bin/python" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" && -x "$VENV/bin/moto_server" && -x "$VENV/bin/cfn-lint" ]]; then
  echo "up to date: $(grep -v '^#' "$REQS" | xargs)"
else
  echo "installing from scripts/requirements-test.txt ..."
  t0="$(now)"
  "$VENV/bin/python" -m pip install --disable-pip-version-check --quiet -r "$REQS" ||
    die "pip install failed (the first run needs network access to PyPI)"
  echo "$want" >"$STAMP"
  echo "installed in $(elapsed "$t0") s"
fi

# --- 2. moto server ---------------------------------------------------------------------------
section "moto server"
PORT="$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
mkdir -p "$LOG_DIR"
t0="$(now)"
# scripts/moto_server.py is moto_server with DynamoDB's atomic conditional writes restored.
"$VENV/bin/python" scripts/moto_server.py -H 127.0.0.1 -p "$PORT" >"$MOTO_LOG" 2>&1 &
MOTO_PID=$!
# Poll from Python (no curl needed) until /moto-api/ answers, the server dies, or 30 s pass.
wait_for_moto='
import os, sys, time, urllib.request
port, pid = sys.argv[1], int(sys.argv[2])
end = time.monotonic() + 30
while time.monotonic() < end:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=2).read()
        sys.exit(0)
    except Exception:
        pass
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("moto server exited during start-up")
    time.sleep(0.1)
sys.exit("moto server did not answer within 30 s")
'
if ! "$VENV/bin/python" -c "$wait_for_moto" "$PORT" "$MOTO_PID"; then
  tail -n 40 "$MOTO_LOG" >&2 || true
  die "moto server failed to start on 127.0.0.1:$PORT (log: $MOTO_LOG)"
fi
echo "moto listening on 127.0.0.1:$PORT (pid $MOTO_PID, up in $(elapsed "$t0") s, log: target/moto.log)"

# Tests and spawned function binaries reach moto only through these; nothing may reach real AWS.
export AWS_ENDPOINT_URL="http://127.0.0.1:$PORT"
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
export AWS_EC2_METADATA_DISABLED=true
unset AWS_PROFILE AWS_DEFAULT_PROFILE AWS_SESSION_TOKEN

# --- 3. Template lint -------------------------------------------------------------------------
section "cfn-lint --non-zero-exit-code error template.yaml"
"$VENV/bin/cfn-lint" --non-zero-exit-code error template.yaml
echo "template.yaml: no errors"

# --- 4. Layer rule ----------------------------------------------------------------------------
section "layer rule (scripts/check-layers.py)"
"$VENV/bin/python" scripts/check-layers.py --self-test
"$VENV/bin/python" scripts/check-layers.py

# --- 5. Build ---------------------------------------------------------------------------------
section "cargo build --workspace --bins --examples"
cargo build --workspace --bins --examples

# --- 6. Tests ---------------------------------------------------------------------------------
# `--workspace` would override a package selection, so it is only added when none is given.
scope=(--workspace)
for arg in "$@"; do
  [[ "$arg" == "--" ]] && break
  case "$arg" in
    -p | -p* | --package | --package=* | --workspace | --all) scope=() ;;
  esac
done
cmd=(cargo test "${scope[@]}" "$@")
section "${cmd[*]}"
"${cmd[@]}"

section "all checks passed"
