#!/usr/bin/env bash
# Stops the Tansu broker that infra/kafka/start.sh started on PORT, using its PID file.
#
# Usage: infra/kafka/stop.sh [PORT]
# Environment: HEARTH_KAFKA_PORT and HEARTH_KAFKA_RUN_DIR, as for start.sh.
set -euo pipefail

port="${1:-${HEARTH_KAFKA_PORT:-9092}}"
run_dir="${HEARTH_KAFKA_RUN_DIR:-${TMPDIR:-/tmp}/hearth-tansu-$port}"
pid_file="$run_dir/tansu.pid"

if [[ ! -f "$pid_file" ]]; then
    echo "no PID file at $pid_file; nothing to stop" >&2
    exit 0
fi

pid="$(cat "$pid_file")"
# The PID may have been reused since start.sh wrote it: only signal a tansu process.
if ! kill -0 "$pid" 2>/dev/null || ! grep -qa tansu "/proc/$pid/cmdline"; then
    echo "process $pid from $pid_file is not a running tansu; removing the stale file" >&2
    rm -f "$pid_file"
    exit 0
fi

kill "$pid"
for _ in $(seq 1 100); do
    if ! kill -0 "$pid" 2>/dev/null; then
        rm -f "$pid_file"
        echo "stopped tansu (PID $pid)" >&2
        exit 0
    fi
    sleep 0.1
done

echo "tansu (PID $pid) did not stop within 10 s after SIGTERM; sending SIGKILL" >&2
kill -KILL "$pid" 2>/dev/null || true
rm -f "$pid_file"
