#!/usr/bin/env bash
# The one test command: README and CI (.ci/run) call exactly this.
#
# Needs only a Rust toolchain, python3 (3.11+, with venv/pip) and Node.js 20+ with npm. On first run
# it creates ./.venv with the pinned tools in scripts/requirements-test.txt and ./.dynalite with the
# dynalite pinned by scripts/dynalite/package-lock.json; later runs skip each install while its pins
# are unchanged. It then starts a moto server and a dynalite server on free ports, lints
# template.yaml, builds every binary (the end-to-end tests spawn them) and runs
# `cargo test --workspace "$@"`.
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
DYNALITE_DIR="$REPO/.dynalite"
DYNALITE_PINS="$REPO/scripts/dynalite"
DYNALITE_STAMP="$DYNALITE_DIR/.package-lock.sha256"
DYNALITE_CLI="$DYNALITE_DIR/node_modules/dynalite/cli.js"
DYNALITE_LOG="$LOG_DIR/dynalite.log"
DYNALITE_PID=""

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
  if [[ -n "$DYNALITE_PID" ]] && kill -0 "$DYNALITE_PID" 2>/dev/null; then
    kill "$DYNALITE_PID" 2>/dev/null || true
    wait "$DYNALITE_PID" 2>/dev/null || true
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
# wait_for_server NAME PATH NEEDLE PORT PID: polls http://127.0.0.1:PORT/PATH from Python (no
# curl needed) until it answers (with NEEDLE in the body, when given), the server dies, or 30 s
# pass.
wait_for_server() {
  "$VENV/bin/python" - "$@" <<'PY'
import os, sys, time, urllib.request
name, path, needle, port, pid = sys.argv[1], sys.argv[2], sys.argv[3].encode(), sys.argv[4], int(sys.argv[5])
end = time.monotonic() + 30
while time.monotonic() < end:
    try:
        if needle in urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2).read():
            sys.exit(0)
    except Exception:
        pass
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit(f"{name} exited during start-up")
    time.sleep(0.05)
sys.exit(f"{name} did not answer within 30 s")
PY
}

mkdir -p "$LOG_DIR"
t0="$(now)"
# scripts/moto_server.py is moto_server with DynamoDB's atomic conditional writes restored.
"$VENV/bin/python" scripts/moto_server.py -H 127.0.0.1 -p "$PORT" >"$MOTO_LOG" 2>&1 &
MOTO_PID=$!
if ! wait_for_server "moto server" "/moto-api/" "" "$PORT" "$MOTO_PID"; then
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

# --- 2b. dynalite (a stricter DynamoDB emulator) ---------------------------------------------
# dynalite refuses what real DynamoDB refuses and moto accepts (two writes of one key in one
# BatchWriteItem, numbers just past DynamoDB's range or precision). Only the tests that ask for it
# (tests/src/dynalite.rs) use it, through DYNALITE_ENDPOINT_URL; AWS_ENDPOINT_URL_DYNAMODB is
# deliberately left unset so every other test and every spawned binary keeps using moto.
section "dynalite (.dynalite)"
command -v node >/dev/null || die "node not found; install Node.js 20+ with npm (Debian/Ubuntu: apt-get install nodejs npm)"
command -v npm >/dev/null || die "npm not found; install npm alongside Node.js 20+ (Debian/Ubuntu: apt-get install npm)"
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' ||
  die "node $(node --version) is too old for dynalite 4.0.0; install Node.js 20+"
# The stamp ties the install to the exact lockfile and Node version, so reruns skip npm.
want="$( { cat "$DYNALITE_PINS/package-lock.json"; node --version; } | sha256sum | cut -d' ' -f1)"
if [[ -f "$DYNALITE_STAMP" && "$(cat "$DYNALITE_STAMP")" == "$want" && -f "$DYNALITE_CLI" ]]; then
  echo "up to date: dynalite@$(node -p 'require(process.argv[1]).version' "$DYNALITE_DIR/node_modules/dynalite/package.json")"
else
  echo "installing dynalite from scripts/dynalite/package-lock.json ..."
  t0="$(now)"
  mkdir -p "$DYNALITE_DIR"
  cp "$DYNALITE_PINS/package.json" "$DYNALITE_PINS/package-lock.json" "$DYNALITE_DIR/"
  # --ignore-scripts: the only install script is classic-level's native build check, and its
  # prebuilt binaries ship in the package; in-memory dynalite does not touch LevelDB anyway.
  npm ci --prefix "$DYNALITE_DIR" --ignore-scripts --no-audit --no-fund --loglevel=error ||
    die "npm ci in $DYNALITE_DIR failed (the first run needs network access to the npm registry)"
  [[ -f "$DYNALITE_CLI" ]] || die "npm ci finished but $DYNALITE_CLI is missing"
  echo "$want" >"$DYNALITE_STAMP"
  echo "installed in $(elapsed "$t0") s"
fi
DYNALITE_PORT="$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
t0="$(now)"
# In memory (no --path); tables become ACTIVE at once instead of after dynalite's default 500 ms.
node "$DYNALITE_CLI" --host 127.0.0.1 --port "$DYNALITE_PORT" \
  --createTableMs 0 --deleteTableMs 0 --updateTableMs 0 >"$DYNALITE_LOG" 2>&1 &
DYNALITE_PID=$!
# dynalite answers GET / with 200 "healthy: ..." once it listens.
if ! wait_for_server "dynalite" "/" "healthy" "$DYNALITE_PORT" "$DYNALITE_PID"; then
  tail -n 40 "$DYNALITE_LOG" >&2 || true
  die "dynalite failed to start on 127.0.0.1:$DYNALITE_PORT (log: $DYNALITE_LOG)"
fi
echo "dynalite listening on 127.0.0.1:$DYNALITE_PORT (pid $DYNALITE_PID, up in $(elapsed "$t0") s, log: target/dynalite.log)"
export DYNALITE_ENDPOINT_URL="http://127.0.0.1:$DYNALITE_PORT"
# Never a DynamoDB-only override: moto stays the endpoint of everything else.
unset AWS_ENDPOINT_URL_DYNAMODB

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
