#!/usr/bin/env bash
# Stops the s3s-fs server that infra/s3/start.sh started on PORT, using its PID file.
#
# Usage: infra/s3/stop.sh [PORT]
# Environment: HEARTH_S3_PORT and HEARTH_S3_RUN_DIR, as for start.sh.
set -euo pipefail

port="${1:-${HEARTH_S3_PORT:-9000}}"
run_dir="${HEARTH_S3_RUN_DIR:-${TMPDIR:-/tmp}/hearth-s3-$port}"
pid_file="$run_dir/s3s-fs.pid"

if [[ ! -f "$pid_file" ]]; then
    echo "no PID file at $pid_file; nothing to stop" >&2
    exit 0
fi

pid="$(cat "$pid_file")"
# The PID may have been reused since start.sh wrote it: only signal an s3s-fs process.
if ! kill -0 "$pid" 2>/dev/null || ! grep -qa s3s-fs "/proc/$pid/cmdline"; then
    echo "process $pid from $pid_file is not a running s3s-fs; removing the stale file" >&2
    rm -f "$pid_file"
    exit 0
fi

kill "$pid"
for _ in $(seq 1 100); do
    if ! kill -0 "$pid" 2>/dev/null; then
        rm -f "$pid_file"
        echo "stopped s3s-fs (PID $pid)" >&2
        exit 0
    fi
    sleep 0.1
done

echo "s3s-fs (PID $pid) did not stop within 10 s after SIGTERM; sending SIGKILL" >&2
kill -KILL "$pid" 2>/dev/null || true
rm -f "$pid_file"
