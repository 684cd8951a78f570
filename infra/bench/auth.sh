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
source "$(dirname "$0")/server.sh"

if [[ -z "${TOKEN_LOAD_BIN:-}" ]]; then
    cargo build --release --locked -p hearth-auth --example token_load >&2
fi
load="${TOKEN_LOAD_BIN:-$CARGO_TARGET_DIR/release/examples/token_load}"

patient="6c5d9ca9-54d7-42f5-bfae-a7c19cd217f2"
start_hearth server
server_pid="${pids[-1]}"
load_sample "$server_url" "$server_admin"

echo "cores: $(nproc), CPU: $(lscpu | sed -n 's/^Model name: *//p'), load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
HEARTH_PID="$server_pid" "$load" "$server_url" "$server_admin" "$patient" "$concurrency" "$codes_per_round" "$rounds"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "auth event log: $(du -sh "$work/server" | cut -f1) data directory"
