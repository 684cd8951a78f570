#!/usr/bin/env bash
# Measures what an EHR-backed site adds to a FHIR read: two `hearth serve` processes, one
# as the EHR (the Synthea sample loaded into its default site) and one in front of it
# with two EHR-backed sites that authenticate upstream with SMART Backend Services. Site
# `cold` caches nothing, so every read goes to the EHR; site `warm` caches for 300 s.
# wrk runs each read with one connection (latency: p50, p99) and with CONNECTIONS
# connections (throughput), directly at the EHR and through both sites, and counts the
# `X-Cache: HIT` answers of the warm runs.
#
# Usage: infra/bench/ehr-proxy.sh [DURATION_SECONDS] [CONNECTIONS]
#
# Installs wrk (Debian) when missing and builds the release binary. Prints one line per
# run; record the results with the hardware in docs/BENCHMARKS.md.
set -euo pipefail

duration="${1:-10}"
connections="${2:-16}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
cache_root="${HEARTH_CACHE_DIR:-/var/cache/hearth}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache_root/target}"

command -v wrk >/dev/null || apt-get install -y wrk >&2
if [[ -z "${HEARTH_BIN:-}" ]]; then
    cargo build --release --locked -p hearth >&2
    HEARTH_BIN="$CARGO_TARGET_DIR/release/hearth"
fi
hearth="$HEARTH_BIN"

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
json_field() {
    python3 -c "import json, sys; print(json.load(sys.stdin)[\"$1\"])"
}
admin_post() {
    curl -sf -X POST "$1/admin/$2" -H "Authorization: Bearer $3" -H 'Content-Type: application/json' -d "$4"
}
# Registers a backend-services app with a secret at SITES of server BASE and prints a
# token from the site's token endpoint AUTH.
service_token() {
    local base="$1" admin="$2" sites="$3" auth="$4" secret
    secret="$(admin_post "$base" apps "$admin" \
        "{\"client_id\":\"bench\",\"name\":\"Benchmark\",\"client_type\":\"confidential-symmetric\",\"scope\":\"system/*.rs\",\"grant_types\":[\"client_credentials\"],\"sites\":$sites}" |
        json_field client_secret)"
    echo "$secret" >"$work/secret-$(echo "$base" | tr -dc 0-9)"
    curl -sf -u "bench:$secret" -d 'grant_type=client_credentials&scope=system/*.rs' "$auth/token" | json_field access_token
}
token_at() {
    local base="$1" auth="$2" secret
    secret="$(cat "$work/secret-$(echo "$base" | tr -dc 0-9)")"
    curl -sf -u "bench:$secret" -d 'grant_type=client_credentials&scope=system/*.rs' "$auth/token" | json_field access_token
}

tar -xJf tests/data/synthea-r4.tar.xz -C "$work"
patient="6c5d9ca9-54d7-42f5-bfae-a7c19cd217f2"
read_path="Patient/$patient"
search_path="Observation?patient=Patient/$patient&code=http://loinc.org%7C8302-2"

ehr_port="$(free_port)"
ehr="http://127.0.0.1:$ehr_port"
ehr_admin="$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
HEARTH_LOG=warn "$hearth" serve --data-dir "$work/ehr" --listen "127.0.0.1:$ehr_port" --admin-token "$ehr_admin" &
pids+=($!)
wait_for "$ehr/healthz"
"$hearth" load --quiet --url "$ehr" --admin-token="$ehr_admin" "$work/synthea" | tail -n 1 >&2
ehr_token="$(service_token "$ehr" "$ehr_admin" '["default"]' "$ehr/auth")"

front_port="$(free_port)"
front="http://127.0.0.1:$front_port"
front_admin="$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
HEARTH_LOG=warn "$hearth" serve --data-dir "$work/front" --listen "127.0.0.1:$front_port" --admin-token "$front_admin" &
pids+=($!)
wait_for "$front/healthz"
jwks="$(curl -sf "$front/ehr-client/jwks")"
admin_post "$ehr" apps "$ehr_admin" \
    "{\"client_id\":\"hearth-front\",\"name\":\"Hearth front\",\"client_type\":\"confidential-asymmetric\",\"jwks\":$jwks,\"scope\":\"system/*.rs\",\"sites\":[\"default\"]}" >/dev/null
for site in cold warm; do
    freshness=0
    [[ "$site" == warm ]] && freshness=300
    admin_post "$front" sites "$front_admin" \
        "{\"site_id\":\"$site\",\"name\":\"$site\",\"backing\":\"ehr\",\"upstream_base_url\":\"$ehr/fhir\",\"upstream_auth_method\":\"backend-services\",\"upstream_client_id\":\"hearth-front\",\"default_cache_freshness_s\":$freshness}" >/dev/null
done
cold_token="$(service_token "$front" "$front_admin" '["cold","warm"]' "$front/sites/cold/auth")"
warm_token="$(token_at "$front" "$front/sites/warm/auth")"

cat >"$work/count-hits.lua" <<'LUA'
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init() hits = 0; answers = 0 end
function response(status, headers)
    answers = answers + 1
    if headers["x-cache"] == "HIT" or headers["X-Cache"] == "HIT" then hits = hits + 1 end
end
function done()
    local h, a = 0, 0
    for _, t in ipairs(threads) do h = h + t:get("hits"); a = a + t:get("answers") end
    io.write(string.format("hits %d of %d\n", h, a))
end
LUA

# Prints "requests/s p50 p99 [hits N of M]" of one wrk run.
measure() {
    local url="$1" token="$2" conns="$3"
    wrk -t1 -c"$conns" -d"${duration}s" --latency -s "$work/count-hits.lua" \
        -H "Authorization: Bearer $token" "$url" |
        awk '/Requests\/sec/ {rps=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2} /^hits/ {hits=$0} END {print rps, p50, p99, hits}'
}

# Warm the cache of both paths and give the projection time to apply the entries.
curl -sf -o /dev/null -H "Authorization: Bearer $warm_token" "$front/sites/warm/fhir/$read_path"
curl -sf -o /dev/null -H "Authorization: Bearer $warm_token" "$front/sites/warm/fhir/$search_path"
sleep 1

for path in "$read_path" "$search_path"; do
    kind=read
    [[ "$path" == "$search_path" ]] && kind=search
    for conns in 1 "$connections"; do
        echo "$kind c=$conns direct: $(measure "$ehr/fhir/$path" "$ehr_token" "$conns")"
        echo "$kind c=$conns proxied, no cache: $(measure "$front/sites/cold/fhir/$path" "$cold_token" "$conns")"
        echo "$kind c=$conns proxied, warm cache: $(measure "$front/sites/warm/fhir/$path" "$warm_token" "$conns")"
    done
done
