#!/usr/bin/env bash
# Measures `hearth load` throughput: resources per second from files on disk until they
# are readable over HTTP (a load request returns only after the repository applied it),
# once on the embedded log and once on Kafka (Tansu, started by infra/kafka/start.sh).
#
# Usage: infra/bench/load.sh [DATA_DIR]
#
# DATA_DIR holds FHIR Bundles; by default the Synthea sample in tests/data is unpacked
# and used. infra/bench/generate-patients.sh makes bigger sets. Builds the release binary
# first. Prints one line per backend; record results with the hardware in
# docs/BENCHMARKS.md.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${HEARTH_CACHE_DIR:-/var/cache/hearth}/target}"
cargo build --release --locked -p hearth >&2
hearth="$CARGO_TARGET_DIR/release/hearth"

work="$(mktemp -d)"
server_pid=""
broker_port=""
cleanup() {
    if [[ -n "$server_pid" ]]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
    if [[ -n "$broker_port" ]]; then infra/kafka/stop.sh "$broker_port" >/dev/null 2>&1 || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

data="${1:-}"
if [[ -z "$data" ]]; then
    tar -xJf tests/data/synthea-r4.tar.xz -C "$work"
    data="$work/synthea"
fi

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_ready() {
    for _ in $(seq 1 300); do
        if curl -sf "http://127.0.0.1:$1/healthz" >/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "hearth did not start on port $1" >&2
    return 1
}

run() {
    local name="$1"
    shift
    local port
    port="$(free_port)"
    rm -rf "$work/data"
    HEARTH_LOG=warn "$hearth" serve --data-dir "$work/data" --listen "127.0.0.1:$port" "$@" &
    server_pid=$!
    wait_ready "$port"
    local summary
    # The server writes its admin credential into its data directory at start.
    summary="$(HEARTH_ADMIN_TOKEN="$(cat "$work/data/admin-token")" \
        "$hearth" load --quiet --url "http://127.0.0.1:$port" "$data" | tail -n 1)"
    echo "$name: $summary"
    kill "$server_pid"
    wait "$server_pid" || true
    server_pid=""
}

run embedded
broker_port="$(free_port)"
export HEARTH_KAFKA_RUN_DIR="$work/tansu"
brokers="$(infra/kafka/start.sh "$broker_port")"
run kafka --kafka-brokers "$brokers" --kafka-topic-prefix "bench-$$."
