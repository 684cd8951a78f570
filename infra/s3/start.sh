#!/usr/bin/env bash
# Installs s3s-fs, an S3-compatible server that keeps objects in a directory, if it is
# missing, and starts it on 127.0.0.1. Prints the endpoint URL on stdout and everything
# else on stderr, so `endpoint=$(infra/s3/start.sh)` works.
#
# Usage: infra/s3/start.sh [PORT]
#
# Environment:
#   HEARTH_S3_PORT        port when no argument is given (default 9000)
#   HEARTH_CACHE_DIR      cache root (default /var/cache/hearth)
#   HEARTH_S3_ROOT        cargo install root of s3s-fs (default $HEARTH_CACHE_DIR/s3s-fs)
#   HEARTH_S3_RUN_DIR     PID file, log and stored objects (default ${TMPDIR:-/tmp}/hearth-s3-PORT)
#   HEARTH_S3_ACCESS_KEY  access key id the server accepts (default hearth-test)
#   HEARTH_S3_SECRET_KEY  secret access key the server accepts (default hearth-test-secret)
#   HEARTH_S3_BUCKET      bucket created at start (default hearth-test)
#
# s3s-fs is built from crates.io with `cargo install` the first time (measured: 3 min 40 s
# on two busy cores) and kept under the cache root. It is a test server: one directory,
# one key pair, no durability guarantees.
set -euo pipefail

s3s_version="0.14.1"

port="${1:-${HEARTH_S3_PORT:-9000}}"
if ! [[ "$port" =~ ^[0-9]+$ ]] || ((port < 1 || port > 65535)); then
    echo "invalid port: $port (expected a number from 1 to 65535)" >&2
    exit 2
fi

cache_root="${HEARTH_CACHE_DIR:-/var/cache/hearth}"
install_root="${HEARTH_S3_ROOT:-$cache_root/s3s-fs}"
s3s_bin="$install_root/bin/s3s-fs"
run_dir="${HEARTH_S3_RUN_DIR:-${TMPDIR:-/tmp}/hearth-s3-$port}"
pid_file="$run_dir/s3s-fs.pid"
log_file="$run_dir/s3s-fs.log"
data_dir="$run_dir/data"
access_key="${HEARTH_S3_ACCESS_KEY:-hearth-test}"
secret_key="${HEARTH_S3_SECRET_KEY:-hearth-test-secret}"
bucket="${HEARTH_S3_BUCKET:-hearth-test}"

port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

if [[ ! -x "$s3s_bin" ]]; then
    echo "installing s3s-fs $s3s_version into $install_root (takes a few minutes once)" >&2
    # Its own target directory, so the install neither waits on nor evicts the
    # workspace's build directory.
    CARGO_TARGET_DIR="$install_root/build" cargo install --quiet --locked \
        --root "$install_root" --version "$s3s_version" --features binary s3s-fs >&2
    rm -rf "$install_root/build"
fi

# s3s-fs keeps each bucket as a directory of its root, so creating it is one mkdir.
mkdir -p "$run_dir" "$data_dir/$bucket"
if [[ -f "$pid_file" ]]; then
    old_pid="$(cat "$pid_file")"
    if kill -0 "$old_pid" 2>/dev/null && grep -qa s3s-fs "/proc/$old_pid/cmdline"; then
        echo "s3s-fs is already running with PID $old_pid" >&2
        echo "http://127.0.0.1:$port"
        exit 0
    fi
    rm -f "$pid_file"
fi
if port_open "$port"; then
    echo "port $port on 127.0.0.1 is already in use by another process" >&2
    exit 1
fi

echo "starting s3s-fs on 127.0.0.1:$port (log: $log_file)" >&2
nohup "$s3s_bin" --host 127.0.0.1 --port "$port" \
    --access-key "$access_key" --secret-key "$secret_key" \
    "$data_dir" >"$log_file" 2>&1 </dev/null &
pid=$!
echo "$pid" >"$pid_file"

for _ in $(seq 1 300); do
    if port_open "$port"; then
        echo "http://127.0.0.1:$port"
        exit 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "s3s-fs exited during startup; last lines of $log_file:" >&2
        tail -n 20 "$log_file" >&2
        rm -f "$pid_file"
        exit 1
    fi
    sleep 0.1
done

echo "s3s-fs did not accept connections on 127.0.0.1:$port within 30 s; stopping it" >&2
kill "$pid" 2>/dev/null || true
rm -f "$pid_file"
exit 1
