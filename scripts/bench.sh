#!/usr/bin/env bash
# The one benchmark command (docs/BENCHMARKS.md). Not a test: nothing here runs in CI.
#
#   scripts/bench.sh                      # verification + ingest at 10k, 100k, 1M lines
#   LINES=10k,100k scripts/bench.sh       # smaller ingest sizes
#   STORE=counting scripts/bench.sh       # pipeline only (no database); default: counting and sqlite
#   scripts/bench.sh --only coldstart     # one part: verify | ingest | dynamodb | memory | coldstart | dev
#                                         # (default: all)
#   WRITES_IN_FLIGHT=8 scripts/bench.sh --only dynamodb   # a consumer knob
#
# Needs a Rust toolchain and python3 (3.11+, with venv/pip). It builds the benchmark binaries in
# release mode, creates ./.venv-bench with the pinned Python libraries compared against (first run
# only, needs PyPI), then prints the verification table and the ingest table. Each measured ingest
# runs in a process of its own so its peak RSS (VmHWM) is its own; the file server is a separate
# process too. Environment knobs: LINES, STORE (counting|sqlite|all), ROWS_PER_WRITE (rows per
# store write and per Python transaction, default 500 as in `gemini-hooks dev`), PYTHON (interpreter used to
# create the venv), CARGO_TARGET_DIR (honoured by cargo as usual), RUNS and INVOCATIONS (cold
# starts per contender, warm invocations; default 10 and 200), DELIVERIES (dev latency, default 50),
# DDB_LATENCY_MS (the DynamoDB stand-in's answer delay, default 10), DDB_ROWS_PER_WRITE,
# MAX_CONCURRENCY and WRITES_IN_FLIGHT (consumer settings for the DynamoDB and memory parts; unset
# keeps the library's defaults), MEMORY_MESSAGES, MEMORY_LINES, MEMORY_LINE_BYTES (default 4, 25, 8m).
# The DynamoDB part ingests LINES lines when LINES is set, else 10k,100k.
# The cold-start part starts a moto server from .venv-bench on a free port for both receivers.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

VENV="$REPO/.venv-bench"
REQS="$REPO/bench/python/requirements.txt"
STAMP="$VENV/.requirements.sha256"
PYTHON="${PYTHON:-python3}"
# The DynamoDB ingest waits 10 ms per 25 rows when writes are sequential: 1M lines is opt-in.
DDB_LINES="${LINES:-10k,100k}"
LINES="${LINES:-10k,100k,1m}"
STORE="${STORE:-all}"
ROWS_PER_WRITE="${ROWS_PER_WRITE:-500}"
TARGET="${CARGO_TARGET_DIR:-$REPO/target}"
WORK="$REPO/target/bench"
RUNS="${RUNS:-10}"
INVOCATIONS="${INVOCATIONS:-200}"
DELIVERIES="${DELIVERIES:-50}"
DDB_LATENCY_MS="${DDB_LATENCY_MS:-10}"
MEMORY_MESSAGES="${MEMORY_MESSAGES:-4}"
MEMORY_LINES="${MEMORY_LINES:-25}"
MEMORY_LINE_BYTES="${MEMORY_LINE_BYTES:-8m}"
# Consumer knobs, passed only when set (the binaries refuse a knob the library does not have).
KNOBS=()
[[ -n "${DDB_ROWS_PER_WRITE:-}" ]] && KNOBS+=(--rows-per-write "$DDB_ROWS_PER_WRITE")
[[ -n "${MAX_CONCURRENCY:-}" ]] && KNOBS+=(--max-concurrency "$MAX_CONCURRENCY")
[[ -n "${WRITES_IN_FLIGHT:-}" ]] && KNOBS+=(--writes-in-flight "$WRITES_IN_FLIGHT")
ONLY="all"
MOTO_PID=""

while (($#)); do
  case "$1" in
    --only) ONLY="${2:-}"; shift 2 || { echo "--only needs a value" >&2; exit 2; } ;;
    --only=*) ONLY="${1#--only=}"; shift ;;
    *) echo "unknown argument: $1 (usage: scripts/bench.sh [--only verify|ingest|dynamodb|memory|coldstart|dev])" >&2; exit 2 ;;
  esac
done
case "$ONLY" in
  all | verify | ingest | dynamodb | memory | coldstart | dev) ;;
  *) echo "--only takes verify, ingest, dynamodb, memory, coldstart or dev, not '$ONLY'" >&2; exit 2 ;;
esac
want_part() { [[ "$ONLY" == all || "$ONLY" == "$1" ]]; }

cleanup() {
  if [[ -n "$MOTO_PID" ]] && kill -0 "$MOTO_PID" 2>/dev/null; then
    kill "$MOTO_PID" 2>/dev/null || true
    wait "$MOTO_PID" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

section() { printf '\n==> %s\n' "$*" >&2; }
die() {
  printf '\nERROR: %s\n' "$*" >&2
  exit 1
}

# --- 1. Python venv for the comparisons -------------------------------------------------------
section "Python comparison libraries (.venv-bench)"
command -v "$PYTHON" >/dev/null || die "$PYTHON not found; install Python 3.11+ with venv and pip"
if [[ ! -x "$VENV/bin/python" ]]; then
  echo "creating $VENV" >&2
  "$PYTHON" -m venv "$VENV" || die "could not create $VENV (on Debian/Ubuntu: apt-get install python3-venv)"
fi
# The stamp ties the install to the exact requirements and interpreter, so reruns skip pip.
want="$( { cat "$REQS"; "$VENV/bin/python" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
  echo "up to date: $(grep -v '^#' "$REQS" | xargs)" >&2
else
  echo "installing from bench/python/requirements.txt ..." >&2
  "$VENV/bin/python" -m pip install --disable-pip-version-check --quiet -r "$REQS" ||
    die "pip install failed (the first run needs network access to PyPI)"
  echo "$want" >"$STAMP"
fi

# --- 2. Release build -------------------------------------------------------------------------
section "cargo build --release -p gemini-hooks-bench"
cargo build --release -p gemini-hooks-bench
if want_part coldstart || want_part dev; then
  # The measured binaries themselves (the cold start spawns `receiver`, the dev latency `gemini-hooks`).
  # One package per invocation: a combined selection unifies features differently and would
  # compile the dependencies a second time.
  section "cargo build --release -p receiver; cargo build --release -p gemini-hooks-cli"
  want_part coldstart && cargo build --release -p receiver
  want_part dev && cargo build --release -p gemini-hooks-cli
fi

# --- 3. Machine -------------------------------------------------------------------------------
section "machine"
echo "machine: load average $(cut -d' ' -f1-3 /proc/loadavg) (other work on this machine inflates wall times; the CPU columns are much less affected)"
{
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs) ($(nproc) cores)"
  grep -qw sha_ni /proc/cpuinfo && echo "sha_ni: yes" || echo "sha_ni: no"
  echo "rustc: $(rustc --version)"
  echo "python: $("$VENV/bin/python" --version 2>&1), sqlite $("$VENV/bin/python" -c 'import sqlite3; print(sqlite3.sqlite_version)')"
}

mkdir -p "$WORK"

if want_part verify; then
  # --- 4. Verification --------------------------------------------------------------------------
  section "verification (issue 6 item 5)"
  "$TARGET/release/verify" --dir "$WORK/verify" --python "$VENV/bin/python" --script bench/python/verify.py
fi

if want_part ingest; then
  # --- 5. Ingest --------------------------------------------------------------------------------
  section "ingest (issue 3 item 8, issue 6 item 7): lines $LINES, store $STORE"
  "$TARGET/release/ingest" --lines "$LINES" --store "$STORE" --rows-per-write "$ROWS_PER_WRITE" \
    --python "$VENV/bin/python" --script bench/python/ingest.py --db-dir "$WORK"

  # --- 6. Where the ingest CPU goes ---------------------------------------------------------------
  section "ingest CPU by stage (no HTTP, no store)"
  "$TARGET/release/ingest" stages --lines 100k
fi

# --- 7. DynamoDB ingest ----------------------------------------------------------------------
if want_part dynamodb; then
  section "DynamoDB ingest (issue 11): lines $DDB_LINES, stand-in latency $DDB_LATENCY_MS ms${KNOBS[*]:+, knobs ${KNOBS[*]}}"
  echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  # The Python twin gets dummy credentials and the stand-in's URL as arguments; nothing may
  # reach real AWS or the instance metadata service.
  AWS_EC2_METADATA_DISABLED=true "$TARGET/release/dynamodb" --lines "$DDB_LINES" --latency-ms "$DDB_LATENCY_MS" \
    ${KNOBS[@]+"${KNOBS[@]}"} --python "$VENV/bin/python" --script bench/python/ingest_dynamodb.py
  echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
fi

# --- 8. Memory at scale -----------------------------------------------------------------------
if want_part memory; then
  section "memory at scale (issue 11): $MEMORY_MESSAGES messages x $MEMORY_LINES lines x $MEMORY_LINE_BYTES bytes through DynamoDB"
  AWS_EC2_METADATA_DISABLED=true "$TARGET/release/memory" --messages "$MEMORY_MESSAGES" --lines "$MEMORY_LINES" \
    --line-bytes "$MEMORY_LINE_BYTES" --latency-ms "$DDB_LATENCY_MS" ${KNOBS[@]+"${KNOBS[@]}"}
  if ! want_part ingest; then
    # Flat from 10k to 1M lines: the ingest table's peak RSS column (Rust rows only here; with
    # the ingest part, its own table already shows it).
    section "memory: peak RSS from 10k to 1M lines (ingest, Rust only)"
    "$TARGET/release/ingest" --lines 10k,1m --store "$STORE" --rows-per-write "$ROWS_PER_WRITE" --db-dir "$WORK"
  fi
fi

# --- 9. Receiver cold start -------------------------------------------------------------------
if want_part coldstart; then
  section "receiver cold start and invocation time (issue 6 item 6): $RUNS runs, $INVOCATIONS invocations"
  PORT="$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
  "$VENV/bin/moto_server" -H 127.0.0.1 -p "$PORT" >"$WORK/moto.log" 2>&1 &
  MOTO_PID=$!
  "$VENV/bin/python" - "$PORT" <<'PY' || die "moto server did not start (log: target/bench/moto.log)"
import sys, time, urllib.request
end = time.monotonic() + 30
while time.monotonic() < end:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/moto-api/", timeout=2).read()
        sys.exit(0)
    except Exception:
        time.sleep(0.1)
sys.exit(1)
PY
  # Both receivers reach moto only through these; nothing may reach real AWS.
  export AWS_ENDPOINT_URL="http://127.0.0.1:$PORT"
  export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
  export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
  export AWS_EC2_METADATA_DISABLED=true
  unset AWS_PROFILE AWS_DEFAULT_PROFILE AWS_SESSION_TOKEN
  echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  "$TARGET/release/coldstart" --runs "$RUNS" --invocations "$INVOCATIONS" \
    --python "$VENV/bin/python" --script-dir bench/python --dir "$WORK/coldstart"
  echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
fi

# --- 10. Local end-to-end latency --------------------------------------------------------------
if want_part dev; then
  section "gemini-hooks dev: delivery accepted -> ingestion started (issue 6 item 8): $DELIVERIES deliveries"
  echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  "$TARGET/release/dev_latency" --deliveries "$DELIVERIES"
  echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
fi
