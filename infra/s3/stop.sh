#!/usr/bin/env bash
# Stops the s3s-fs server that infra/s3/start.sh started on PORT, using its PID file.
#
# Usage: infra/s3/stop.sh [PORT]
# Environment: HEARTH_S3_PORT and HEARTH_S3_RUN_DIR, as for start.sh.
set -euo pipefail

port="${1:-${HEARTH_S3_PORT:-9000}}"
run_dir="${HEARTH_S3_RUN_DIR:-${TMPDIR:-/tmp}/hearth-s3-$port}"
pid_file="$run_dir/s3s-fs.pid"

exec "$(dirname "$0")/../stop-process.sh" "$pid_file" s3s-fs 10
