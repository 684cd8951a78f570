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
# missing. Builds the release binary, or uses the binary named by HEARTH_BIN
# (infra/bench/server.sh). Prints one line per request and server; record the results
# with the hardware in docs/BENCHMARKS.md.
set -euo pipefail

duration="${1:-15}"
connections="${2:-16}"
# shellcheck source=infra/bench/server.sh
source "$(dirname "$0")/server.sh"

peer_dir="$cache_root/bench-peer"
if [[ ! -d "$peer_dir/node_modules/@medplum/fhir-router" ]]; then
    mkdir -p "$peer_dir"
    cp infra/bench/peer/package.json "$peer_dir/"
    (cd "$peer_dir" && npm install --legacy-peer-deps --no-audit --no-fund >&2)
fi
cp infra/bench/peer/medplum-server.cjs "$peer_dir/"

unpack_sample
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

start_hearth main "${serve_args[@]}"
base="$main_url"
load_sample "$base" "$main_admin"
register_bench_app "$base" "$main_admin" '["default"]'
token="$(token_at "$base" "$base/auth")"

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
