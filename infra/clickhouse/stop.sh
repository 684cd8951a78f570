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

exec "$(dirname "$0")/../stop-process.sh" "$pid_file" clickhouse 30
