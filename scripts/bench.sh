#!/usr/bin/env bash
# The one benchmark command (docs/BENCHMARKS.md). Not a test: nothing here runs in CI.
#
#   scripts/bench.sh                      # verification + ingest at 10k, 100k, 1M lines
#   LINES=10k,100k scripts/bench.sh       # smaller ingest sizes
#   STORE=counting scripts/bench.sh       # pipeline only (no database); default: counting and sqlite
#
# Needs a Rust toolchain and python3 (3.11+, with venv/pip). It builds the benchmark binaries in
# release mode, creates ./.venv-bench with the pinned Python libraries compared against (first run
# only, needs PyPI), then prints the verification table and the ingest table. Each measured ingest
# runs in a process of its own so its peak RSS (VmHWM) is its own; the file server is a separate
# process too. Environment knobs: LINES, STORE (counting|sqlite|all), ROWS_PER_WRITE (rows per
# store write and per Python transaction, default 500 as in `gemini-hooks dev`), PYTHON (interpreter used to
# create the venv), CARGO_TARGET_DIR (honoured by cargo as usual).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

VENV="$REPO/.venv-bench"
REQS="$REPO/bench/python/requirements.txt"
STAMP="$VENV/.requirements.sha256"
PYTHON="${PYTHON:-python3}"
LINES="${LINES:-10k,100k,1m}"
STORE="${STORE:-all}"
ROWS_PER_WRITE="${ROWS_PER_WRITE:-500}"
TARGET="${CARGO_TARGET_DIR:-$REPO/target}"
WORK="$REPO/target/bench"

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

# --- 4. Verification --------------------------------------------------------------------------
section "verification (issue 6 item 5)"
"$TARGET/release/verify" --dir "$WORK/verify" --python "$VENV/bin/python" --script bench/python/verify.py

# --- 5. Ingest --------------------------------------------------------------------------------
section "ingest (issue 3 item 8, issue 6 item 7): lines $LINES, store $STORE"
"$TARGET/release/ingest" --lines "$LINES" --store "$STORE" --rows-per-write "$ROWS_PER_WRITE" \
  --python "$VENV/bin/python" --script bench/python/ingest.py --db-dir "$WORK"

# --- 6. Where the ingest CPU goes ---------------------------------------------------------------
section "ingest CPU by stage (no HTTP, no store)"
"$TARGET/release/ingest" stages --lines 100k
