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
# Installs wrk (Debian) when missing and builds the release binary unless HEARTH_BIN names
# one (infra/bench/server.sh). Prints one line per run; record the results with the
# hardware in docs/BENCHMARKS.md.
set -euo pipefail

duration="${1:-10}"
connections="${2:-16}"
# shellcheck source=infra/bench/server.sh
source "$(dirname "$0")/server.sh"

patient="6c5d9ca9-54d7-42f5-bfae-a7c19cd217f2"
read_path="Patient/$patient"
search_path="Observation?patient=Patient/$patient&code=http://loinc.org%7C8302-2"

start_hearth ehr
load_sample "$ehr_url" "$ehr_admin"
register_bench_app "$ehr_url" "$ehr_admin" '["default"]'
ehr_token="$(token_at "$ehr_url" "$ehr_url/auth")"

start_hearth front
jwks="$(curl -sf "$front_url/ehr-client/jwks")"
admin_post "$ehr_url" apps "$ehr_admin" \
    "{\"client_id\":\"hearth-front\",\"name\":\"Hearth front\",\"client_type\":\"confidential-asymmetric\",\"jwks\":$jwks,\"scope\":\"system/*.rs\",\"sites\":[\"default\"]}" >/dev/null
for site in cold warm; do
    freshness=0
    [[ "$site" == warm ]] && freshness=300
    admin_post "$front_url" sites "$front_admin" \
        "{\"site_id\":\"$site\",\"name\":\"$site\",\"backing\":\"ehr\",\"upstream_base_url\":\"$ehr_url/fhir\",\"upstream_auth_method\":\"backend-services\",\"upstream_client_id\":\"hearth-front\",\"default_cache_freshness_s\":$freshness}" >/dev/null
done
register_bench_app "$front_url" "$front_admin" '["cold","warm"]'
cold_token="$(token_at "$front_url" "$front_url/sites/cold/auth")"
warm_token="$(token_at "$front_url" "$front_url/sites/warm/auth")"

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
curl -sf -o /dev/null -H "Authorization: Bearer $warm_token" "$front_url/sites/warm/fhir/$read_path"
curl -sf -o /dev/null -H "Authorization: Bearer $warm_token" "$front_url/sites/warm/fhir/$search_path"
sleep 1

for path in "$read_path" "$search_path"; do
    kind=read
    [[ "$path" == "$search_path" ]] && kind=search
    for conns in 1 "$connections"; do
        echo "$kind c=$conns direct: $(measure "$ehr_url/fhir/$path" "$ehr_token" "$conns")"
        echo "$kind c=$conns proxied, no cache: $(measure "$front_url/sites/cold/fhir/$path" "$cold_token" "$conns")"
        echo "$kind c=$conns proxied, warm cache: $(measure "$front_url/sites/warm/fhir/$path" "$warm_token" "$conns")"
    done
done
