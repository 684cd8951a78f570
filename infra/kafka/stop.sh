#!/usr/bin/env bash
# Stops the Tansu broker that infra/kafka/start.sh started on PORT, using its PID file.
#
# Usage: infra/kafka/stop.sh [PORT]
# Environment: HEARTH_KAFKA_PORT and HEARTH_KAFKA_RUN_DIR, as for start.sh.
set -euo pipefail

port="${1:-${HEARTH_KAFKA_PORT:-9092}}"
run_dir="${HEARTH_KAFKA_RUN_DIR:-${TMPDIR:-/tmp}/hearth-tansu-$port}"
pid_file="$run_dir/tansu.pid"

exec "$(dirname "$0")/../stop-process.sh" "$pid_file" tansu 10
