#!/usr/bin/env bash
# Measures Bulk Data export throughput at the system level: resources per second from the
# kick-off until the manifest is complete, for NDJSON and for Parquet, the server's CPU
# time and peak resident memory during each export, and the load average at the end. On
# a shared machine the CPU time (resources per CPU-second) varies less than the rate. Runs the release binary on the embedded log
# with files in the local store.
#
# Usage: infra/bench/bulk-export.sh [DATA_DIR]
#
# Environment: HEARTH_BIN, a release binary to use instead of building one.
#
# DATA_DIR holds FHIR Bundles (infra/bench/generate-patients.sh makes them); by default
# the Synthea sample in tests/data is unpacked and used. The data is loaded once, then
# the server is restarted before each export so that the peak memory (VmHWM) belongs to
# that export alone. Prints one line per format; record results with the hardware in
# docs/BENCHMARKS.md.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
if [[ -n "${HEARTH_BIN:-}" ]]; then
    hearth="$HEARTH_BIN"
else
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${HEARTH_CACHE_DIR:-/var/cache/hearth}/target}"
    cargo build --release --locked -p hearth >&2
    hearth="$CARGO_TARGET_DIR/release/hearth"
fi

work="$(mktemp -d)"
server_pid=""
cleanup() {
    if [[ -n "$server_pid" ]]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

data="${1:-}"
if [[ -z "$data" ]]; then
    tar -xJf tests/data/synthea-r4.tar.xz -C "$work"
    data="$work/synthea"
fi

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"

start_server() {
    HEARTH_LOG=warn "$hearth" serve --data-dir "$work/data" --listen "127.0.0.1:$port" &
    server_pid=$!
    for _ in $(seq 1 600); do
        if curl -sf "$base/healthz" >/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "hearth did not start on port $port" >&2
    return 1
}

stop_server() {
    kill "$server_pid"
    wait "$server_pid" || true
    server_pid=""
}

# User plus system CPU time of PID, in clock ticks.
cpu_ticks() {
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}

# Field NAME (kB) of /proc/PID/status.
memory_kb() {
    awk -v name="$2:" '$1 == name { print $2 }' "/proc/$1/status"
}

start_server
token="$(cat "$work/data/admin-token")"
echo "loading $data" >&2
HEARTH_ADMIN_TOKEN="$token" "$hearth" load --quiet --url "$base" "$data" >&2
stop_server

for format in ndjson parquet; do
    start_server
    before_kb="$(memory_kb "$server_pid" VmRSS)"
    cpu_before="$(cpu_ticks "$server_pid")"
    started="$(date +%s.%N)"
    status_url="$(curl -sf -D - -o /dev/null \
        -H "Authorization: Bearer $token" -H 'Accept: application/fhir+json' \
        -H 'Prefer: respond-async' "$base/fhir/\$export?_outputFormat=$format" |
        awk 'tolower($1) == "content-location:" { print $2 }' | tr -d '\r')"
    if [[ -z "$status_url" ]]; then
        echo "the $format kick-off was not accepted" >&2
        exit 1
    fi
    while true; do
        code="$(curl -s -o "$work/manifest.json" -w '%{http_code}' \
            -H "Authorization: Bearer $token" "$status_url")"
        if [[ "$code" != 202 ]]; then break; fi
        sleep 0.2
    done
    finished="$(date +%s.%N)"
    if [[ "$code" != 200 ]]; then
        echo "the $format export failed with $code: $(cat "$work/manifest.json")" >&2
        exit 1
    fi
    cpu_ticks_used=$(( $(cpu_ticks "$server_pid") - cpu_before ))
    peak_kb="$(memory_kb "$server_pid" VmHWM)"
    bytes="$(du -sb "$work/data/bulk" | cut -f1)"
    python3 - "$format" "$started" "$finished" "$before_kb" "$peak_kb" "$bytes" "$work/manifest.json" \
        "$cpu_ticks_used" "$(getconf CLK_TCK)" "$(cut -d' ' -f1-3 /proc/loadavg)" <<'EOF'
import json, sys
fmt, started, finished, before_kb, peak_kb, size, path, ticks, tck, load = sys.argv[1:]
cpu = int(ticks) / int(tck)
manifest = json.load(open(path))
resources = sum(entry["count"] for entry in manifest["output"])
seconds = float(finished) - float(started)
print(f"{fmt}: {resources} resources in {len(manifest['output'])} files, {seconds:.2f} s, "
      f"{resources / seconds:,.0f} resources/s, {int(size) / 1e6:.1f} MB written, "
      f"RSS before {int(before_kb) / 1024:.0f} MiB, peak {int(peak_kb) / 1024:.0f} MiB, "
      f"CPU {cpu:.2f} s ({resources / max(cpu, 0.01):,.0f} resources per CPU-second), "
      f"load average {load}")
EOF
    stop_server
    rm -rf "$work/data/bulk"
done
