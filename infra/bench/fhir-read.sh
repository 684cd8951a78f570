#!/usr/bin/env bash
# Measures FHIR reads per second with wrk: a Patient read and a typical Observation search
# (patient, code, date), each with a backend-services access token checked on every
# request and an ApiCall event logged for every call, on the loaded Synthea sample. Then
# the same requests against a peer: Medplum's FHIR router over its in-memory repository
# (infra/bench/peer), which has no database and no authorization.
#
# Usage: infra/bench/fhir-read.sh [DURATION_SECONDS] [CONNECTIONS]
#
# With HEARTH_BENCH_CLICKHOUSE_URL set to the HTTP URL of a ClickHouse server, Hearth also
# runs the analytics sink into its database bench_fhir_read, which is dropped first. Each
# Hearth line then ends with the sink's lag during the run. A sample, taken every second,
# is the seconds between now and the newest call in ClickHouse, and the line shows their
# median and maximum. Calls carry whole seconds there, so a sample overstates the lag by
# up to 1 s.
#
# Installs wrk (Debian) and the peer's npm packages (into the cache directory) when
# missing. Builds the release binary, or uses the binary named by HEARTH_BIN. Prints one
# line per request and server; record the results with the hardware in
# docs/BENCHMARKS.md.
set -euo pipefail

duration="${1:-15}"
connections="${2:-16}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
cache_root="${HEARTH_CACHE_DIR:-/var/cache/hearth}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache_root/target}"

command -v wrk >/dev/null || apt-get install -y wrk >&2
peer_dir="$cache_root/bench-peer"
if [[ ! -d "$peer_dir/node_modules/@medplum/fhir-router" ]]; then
    mkdir -p "$peer_dir"
    cp infra/bench/peer/package.json "$peer_dir/"
    (cd "$peer_dir" && npm install --legacy-peer-deps --no-audit --no-fund >&2)
fi
cp infra/bench/peer/medplum-server.cjs "$peer_dir/"
if [[ -n "${HEARTH_BIN:-}" ]]; then
    hearth="$HEARTH_BIN"
else
    cargo build --release --locked -p hearth >&2
    hearth="$CARGO_TARGET_DIR/release/hearth"
fi

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
    echo "nothing answered at $1" >&2
    return 1
}

tar -xJf tests/data/synthea-r4.tar.xz -C "$work"
data="$work/synthea"
patient="6c5d9ca9-54d7-42f5-bfae-a7c19cd217f2"
read_path="Patient/$patient"
search_path="Observation?patient=Patient/$patient&code=http://loinc.org%7C8302-2&date=ge2000-01-01"

# Prints "requests/s p50 p99" of one wrk run. The timeout is long, so that a slow server
# is measured instead of having its requests dropped (wrk's default is 2 s).
measure() {
    local url="$1"
    shift
    wrk -t2 -c"$connections" -d"${duration}s" --timeout 30s --latency "$@" "$url" |
        awk '/Requests\/sec/ {rps=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2} END {print rps, p50, p99}'
}

clickhouse_url="${HEARTH_BENCH_CLICKHOUSE_URL:-}"
serve_args=()
if [[ -n "$clickhouse_url" ]]; then
    curl -sf "$clickhouse_url" --data-binary "DROP DATABASE IF EXISTS bench_fhir_read" >&2
    serve_args+=(--clickhouse-url "$clickhouse_url" --clickhouse-database bench_fhir_read)
fi

# Prints "lag p50 P max M s" from samples taken every second until it is killed.
sample_lag() {
    local sql="SELECT toUInt32(now()) - toUInt32(max(occurred_at)) FROM api_calls"
    while sleep 1; do
        curl -s "$clickhouse_url/?database=bench_fhir_read" --data-binary "$sql" || true
    done >"$work/lag"
}
lag_summary() {
    sort -n "$work/lag" | awk '/^[0-9]+$/ {v[n++]=$1} END {if (n) printf "lag p50 %s max %s s", v[int(n/2)], v[n-1]; else printf "lag unknown"}'
}

port="$(free_port)"
admin="$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
HEARTH_LOG=warn "$hearth" serve --data-dir "$work/data" --listen "127.0.0.1:$port" --admin-token "$admin" "${serve_args[@]}" &
pids+=($!)
wait_for "http://127.0.0.1:$port/healthz"
base="http://127.0.0.1:$port"
"$hearth" load --quiet --url "$base" --admin-token="$admin" "$data" | tail -n 1 >&2
secret="$(curl -sf -X POST "$base/admin/apps" -H "Authorization: Bearer $admin" -H 'Content-Type: application/json' \
    -d '{"client_id":"bench","name":"Benchmark","client_type":"confidential-symmetric","scope":"system/*.rs","grant_types":["client_credentials"],"sites":["default"]}' |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["client_secret"])')"
token="$(curl -sf -u "bench:$secret" -d 'grant_type=client_credentials&scope=system/*.rs' "$base/auth/token" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')"

# Measures Hearth, with the sink's lag when analytics is on.
measure_hearth() {
    if [[ -z "$clickhouse_url" ]]; then
        measure "$@"
        return
    fi
    sample_lag &
    local sampler=$!
    local result
    result="$(measure "$@")"
    kill "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
    echo "$result $(lag_summary)"
}

echo "hearth read:   $(measure_hearth "$base/fhir/$read_path" -H "Authorization: Bearer $token")"
echo "hearth search: $(measure_hearth "$base/fhir/$search_path" -H "Authorization: Bearer $token")"

peer_port="$(free_port)"
node "$peer_dir/medplum-server.cjs" "$peer_port" "$data" 2>/dev/null &
pids+=($!)
wait_for "http://127.0.0.1:$peer_port/fhir/metadata"
echo "peer read:     $(measure "http://127.0.0.1:$peer_port/fhir/$read_path")"
echo "peer search:   $(measure "http://127.0.0.1:$peer_port/fhir/$search_path")"
