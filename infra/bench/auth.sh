#!/usr/bin/env bash
# Measures token grants per second and the cost of the token check on FHIR requests, on
# a release build with the embedded log (every grant appends its events and waits until
# the auth store applied them). The load generator is services/auth/examples/token_load.rs.
# It gets every authorization code through the authorize and approval pages of a signed-in
# user. Then it times authorization_code exchanges with PKCE, refresh_token grants,
# client_credentials grants with ES384 client assertions, and FHIR reads with and without
# the token check. It runs on the same machine as the server and takes CPU from it.
#
# Usage: infra/bench/auth.sh [CONCURRENCY] [CODES_PER_ROUND] [ROUNDS]
#
# Builds the release binary and the load generator, unless HEARTH_BIN and TOKEN_LOAD_BIN
# name built ones. Prints one line per phase; record the results with the hardware in
# docs/BENCHMARKS.md.
set -euo pipefail

concurrency="${1:-32}"
codes_per_round="${2:-10000}"
rounds="${3:-3}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
cache_root="${HEARTH_CACHE_DIR:-/var/cache/hearth}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache_root/target}"

if [[ -z "${HEARTH_BIN:-}" || -z "${TOKEN_LOAD_BIN:-}" ]]; then
    cargo build --release --locked -p hearth -p hearth-auth --bin hearth --example token_load >&2
fi
hearth="${HEARTH_BIN:-$CARGO_TARGET_DIR/release/hearth}"
load="${TOKEN_LOAD_BIN:-$CARGO_TARGET_DIR/release/examples/token_load}"

work="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_for() {
    for _ in $(seq 1 600); do
        if curl -s -o /dev/null "$1"; then return 0; fi
        sleep 0.2
    done
    echo "no response from $1" >&2
    return 1
}

tar -xJf tests/data/synthea-r4.tar.xz -C "$work"
patient="6c5d9ca9-54d7-42f5-bfae-a7c19cd217f2"
port="$(free_port)"
admin="$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
HEARTH_LOG=warn "$hearth" serve --data-dir "$work/data" --listen "127.0.0.1:$port" --admin-token "$admin" &
server_pid=$!
pids+=($server_pid)
wait_for "http://127.0.0.1:$port/healthz"
base="http://127.0.0.1:$port"
"$hearth" load --quiet --url "$base" --admin-token="$admin" "$work/synthea" | tail -n 1 >&2

echo "cores: $(nproc), CPU: $(lscpu | sed -n 's/^Model name: *//p'), load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
HEARTH_PID="$server_pid" "$load" "$base" "$admin" "$patient" "$concurrency" "$codes_per_round" "$rounds"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "auth event log: $(du -sh "$work/data" | cut -f1) data directory"
