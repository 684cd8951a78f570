#!/usr/bin/env bash
# Runs every check and test of Hearth, the way CI does, on a machine with only the Rust
# toolchain and python3: formatting, clippy, unit tests, then end-to-end tests that run
# the hearth binary against a Kafka-protocol broker this script installs and starts on
# 127.0.0.1 (and stops again on exit).
#
# Usage: infra/test.sh [extra arguments for the end-to-end cargo test run]
#
# Environment:
#   CARGO_TARGET_DIR   shared build directory (default /var/cache/hearth/target when
#                      writable, else target/ in the repository)
#   HEARTH_CACHE_DIR   where downloaded tools are kept (default /var/cache/hearth)
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

cache_root="${HEARTH_CACHE_DIR:-/var/cache/hearth}"
if [[ -z "${CARGO_TARGET_DIR:-}" ]]; then
    if mkdir -p "$cache_root/target" 2>/dev/null && [[ -w "$cache_root/target" ]]; then
        export CARGO_TARGET_DIR="$cache_root/target"
    else
        export CARGO_TARGET_DIR="$root/target"
    fi
fi
export HEARTH_CACHE_DIR="$cache_root"
echo "build directory: $CARGO_TARGET_DIR" >&2

step() {
    echo >&2
    echo "==> $*" >&2
}

step "formatting"
cargo fmt --all --check

step "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build"
cargo build --workspace --all-targets --locked

step "Kafka-protocol broker"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
export HEARTH_KAFKA_RUN_DIR="${TMPDIR:-/tmp}/hearth-test-tansu-$port"
stop_broker() {
    infra/kafka/stop.sh "$port" || true
}
trap stop_broker EXIT
HEARTH_TEST_KAFKA_BROKERS="$(infra/kafka/start.sh "$port")"
export HEARTH_TEST_KAFKA_BROKERS
echo "broker at $HEARTH_TEST_KAFKA_BROKERS" >&2

step "unit and component tests"
cargo test --workspace --exclude hearth-e2e --locked

step "end-to-end tests"
export HEARTH_BIN="$CARGO_TARGET_DIR/debug/hearth"
cargo test -p hearth-e2e --locked -- "$@"

step "all tests passed"
