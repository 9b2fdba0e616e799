#!/usr/bin/env bash
# Builds the three Lambda functions for arm64 (provided.al2023) the way `sam build` does, and
# prints the time it took and the binary sizes. Not part of the test command or CI: a cold
# release build takes many minutes.
#
# Needs a Rust toolchain with rustup and python3 (3.11+, with venv/pip). It installs
# cargo-lambda from PyPI into ./.venv (the package brings the zig it cross-compiles with, so no
# Docker and no cross toolchain are needed) and the aarch64 standard library with rustup.
#
# Output: target/lambda/{receiver,consumer,reconciler}/bootstrap (under CARGO_TARGET_DIR when
# set; cargo-lambda's --target-dir flag is broken, the variable works). Extra arguments go to
# `cargo lambda build` (e.g. --output-format zip).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

VENV="$REPO/.venv"
PYTHON="${PYTHON:-python3}"
# The version this script was last run with; pinned so a new release cannot change the build.
CARGO_LAMBDA_VERSION="${CARGO_LAMBDA_VERSION:-1.9.2}"
TARGET=aarch64-unknown-linux-gnu
FUNCTIONS=(receiver consumer reconciler)
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"

section() { printf '\n==> %s\n' "$*"; }
die() {
  printf '\nERROR: %s\n' "$*" >&2
  exit 1
}

section "cargo-lambda $CARGO_LAMBDA_VERSION (.venv)"
command -v "$PYTHON" >/dev/null || die "$PYTHON not found; install Python 3.11+ with venv and pip"
if [[ ! -x "$VENV/bin/python" ]]; then
  "$PYTHON" -m venv "$VENV" || die "could not create $VENV (on Debian/Ubuntu: apt-get install python3-venv)"
fi
if [[ "$("$VENV/bin/cargo-lambda" lambda --version 2>/dev/null || true)" != *"$CARGO_LAMBDA_VERSION"* ]]; then
  "$VENV/bin/python" -m pip install --disable-pip-version-check --quiet "cargo-lambda==$CARGO_LAMBDA_VERSION" ||
    die "pip install cargo-lambda failed (needs network access to PyPI)"
fi
# `cargo lambda` is found on PATH as cargo-lambda; zig is found through the venv's python.
export PATH="$VENV/bin:$PATH"
cargo lambda --version

section "rustup target add $TARGET"
command -v rustup >/dev/null || die "rustup not found: the arm64 standard library comes from rustup"
rustup target add "$TARGET"

section "cargo lambda build --release --arm64 (${FUNCTIONS[*]})"
# One invocation for the three packages: they share one dependency build, and cargo unifies
# features across these three only, so the CLI's aws-config features stay out.
packages=()
for f in "${FUNCTIONS[@]}"; do packages+=(--package "$f"); done
start=$(date +%s)
cargo lambda build --release --arm64 "${packages[@]}" "$@"
end=$(date +%s)

section "result"
printf 'built in %d s\n' "$((end - start))"
for f in "${FUNCTIONS[@]}"; do
  bin="$TARGET_DIR/lambda/$f/bootstrap"
  [[ -f "$bin" ]] || die "$bin is missing"
  printf '%-11s %8.1f MiB  %s\n' "$f" "$(awk -v b="$(wc -c <"$bin")" 'BEGIN { print b / 1048576 }')" "$bin"
  if command -v file >/dev/null; then
    file -b "$bin" | cut -d, -f1-2 | sed 's/^/            /'
  fi
done
