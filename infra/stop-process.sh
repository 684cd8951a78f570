#!/usr/bin/env bash
# Stops the process whose PID a start script wrote to PID_FILE: SIGTERM, then SIGKILL when
# it is still running after TIMEOUT seconds. Removes the PID file. Does nothing when the
# file is missing, and only removes it when its PID no longer belongs to a process whose
# command line contains NAME, since the PID may have been reused. The stop scripts of the
# broker, ClickHouse and the S3 server call it.
#
# Usage: infra/stop-process.sh PID_FILE NAME TIMEOUT
set -euo pipefail

if (($# != 3)); then
    echo "usage: $0 PID_FILE NAME TIMEOUT" >&2
    exit 2
fi
pid_file="$1"
name="$2"
timeout="$3"
if ! [[ "$timeout" =~ ^[0-9]+$ ]]; then
    echo "invalid TIMEOUT: $timeout (expected whole seconds)" >&2
    exit 2
fi

if [[ ! -f "$pid_file" ]]; then
    echo "no PID file at $pid_file; nothing to stop" >&2
    exit 0
fi

pid="$(cat "$pid_file")"
if ! [[ "$pid" =~ ^[0-9]+$ ]] || ! kill -0 "$pid" 2>/dev/null ||
    ! grep -qa -- "$name" "/proc/$pid/cmdline"; then
    echo "process $pid from $pid_file is not a running $name; removing the stale file" >&2
    rm -f "$pid_file"
    exit 0
fi

kill "$pid"
for _ in $(seq 1 $((timeout * 10))); do
    if ! kill -0 "$pid" 2>/dev/null; then
        rm -f "$pid_file"
        echo "stopped $name (PID $pid)" >&2
        exit 0
    fi
    sleep 0.1
done

echo "$name (PID $pid) did not stop within $timeout s after SIGTERM; sending SIGKILL" >&2
kill -KILL "$pid" 2>/dev/null || true
rm -f "$pid_file"
