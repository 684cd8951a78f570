#!/usr/bin/env bash
# Stops the ClickHouse server that infra/clickhouse/start.sh started on HTTP_PORT, using
# its PID file. The run directory and its data stay, so start.sh can start the server
# again on the same data.
#
# Usage: infra/clickhouse/stop.sh [HTTP_PORT]
# Environment: HEARTH_CLICKHOUSE_HTTP_PORT and HEARTH_CLICKHOUSE_RUN_DIR, as for start.sh.
set -euo pipefail

http_port="${1:-${HEARTH_CLICKHOUSE_HTTP_PORT:-8123}}"
run_dir="${HEARTH_CLICKHOUSE_RUN_DIR:-${TMPDIR:-/tmp}/hearth-clickhouse-$http_port}"
pid_file="$run_dir/clickhouse.pid"

if [[ ! -f "$pid_file" ]]; then
    echo "no PID file at $pid_file; nothing to stop" >&2
    exit 0
fi

pid="$(cat "$pid_file")"
# The PID may have been reused since start.sh wrote it: only signal a ClickHouse server.
if ! kill -0 "$pid" 2>/dev/null || ! grep -qa clickhouse "/proc/$pid/cmdline"; then
    echo "process $pid from $pid_file is not a running clickhouse-server; removing the stale file" >&2
    rm -f "$pid_file"
    exit 0
fi

kill "$pid"
for _ in $(seq 1 300); do
    if ! kill -0 "$pid" 2>/dev/null; then
        rm -f "$pid_file"
        echo "stopped clickhouse-server (PID $pid)" >&2
        exit 0
    fi
    sleep 0.1
done

echo "clickhouse-server (PID $pid) did not stop within 30 s after SIGTERM; sending SIGKILL" >&2
kill -KILL "$pid" 2>/dev/null || true
rm -f "$pid_file"
