#!/usr/bin/env bash
# Measures the analytics pipeline against a ClickHouse server that this script starts on
# 127.0.0.1 (Debian's clickhouse-server, installed with apt-get when missing). It prints
# events/s from the embedded log into ClickHouse through the sink, then the time of the
# report queries over the API calls the sink wrote. Stops the server and removes its data on
# exit.
#
# Usage: infra/bench/analytics.sh [EVENTS] [BATCH] [REPORTS] [ORDER]
#   EVENTS  ApiCall events appended to the log and sunk (default 1000000)
#   BATCH   records per ClickHouse insert (default 100000)
#   REPORTS 0 to skip timing the report queries over the events written (default 1)
#   ORDER   spread (default) puts event i at 7*i seconds modulo 30 days, so each batch
#           spans about 8 days. time puts the events in time order over the 30 days, as
#           in a live log.
#
# Record the printed results with the hardware line in docs/BENCHMARKS.md.
set -euo pipefail

events="${1:-1000000}"
batch="${2:-100000}"
reports="${3:-1}"
order="${4:-spread}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
cache_root="${HEARTH_CACHE_DIR:-/var/cache/hearth}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache_root/target}"

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
http_port="$(free_port)"
native_port="$(free_port)"
run_dir="$(mktemp -d)"
cleanup() {
    HEARTH_CLICKHOUSE_RUN_DIR="$run_dir" infra/clickhouse/stop.sh "$http_port" || true
    rm -rf "$run_dir"
}
trap cleanup EXIT

cargo build --release --locked -p hearth-analytics --example sink_throughput >&2
url="$(HEARTH_CLICKHOUSE_RUN_DIR="$run_dir" infra/clickhouse/start.sh "$http_port" "$native_port")"

echo "hardware: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(free -g | awk '/Mem:/ {print $2}') GB RAM"
echo "ClickHouse: $(curl -s "$url/?query=SELECT%20version()")"
echo "load average before: $(cut -d" " -f1-3 /proc/loadavg)"
HEARTH_BENCH_CLICKHOUSE_PID="$(cat "$run_dir/clickhouse.pid")" \
    "$CARGO_TARGET_DIR/release/examples/sink_throughput" "$url" "$events" "$batch" "$reports" "$order"
echo "load average after: $(cut -d" " -f1-3 /proc/loadavg)"
