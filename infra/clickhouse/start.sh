#!/usr/bin/env bash
# Installs ClickHouse with apt-get if it is missing and starts a server on 127.0.0.1 whose
# configuration, data, logs and PID file all live under one run directory. Prints the
# HTTP URL on stdout and everything else on stderr, so
# `url=$(infra/clickhouse/start.sh 8123 9000)` works.
#
# Usage: infra/clickhouse/start.sh [HTTP_PORT [NATIVE_PORT]]
#
# Environment:
#   HEARTH_CLICKHOUSE_HTTP_PORT    HTTP port when no argument is given (default 8123)
#   HEARTH_CLICKHOUSE_NATIVE_PORT  native protocol port when no second argument is given
#                                  (default HTTP_PORT + 1)
#   HEARTH_CLICKHOUSE_RUN_DIR      configuration, data, logs and PID file (default
#                                  ${TMPDIR:-/tmp}/hearth-clickhouse-HTTP_PORT)
#
# Starting again on an existing run directory keeps its data, so a test can stop the
# server and start it again. Debian 12 packages ClickHouse 18.16; any later server
# binary named clickhouse-server on the PATH works too.
set -euo pipefail

http_port="${1:-${HEARTH_CLICKHOUSE_HTTP_PORT:-8123}}"
native_port="${2:-${HEARTH_CLICKHOUSE_NATIVE_PORT:-$((http_port + 1))}}"
for port in "$http_port" "$native_port"; do
    if ! [[ "$port" =~ ^[0-9]+$ ]] || ((port < 1 || port > 65535)); then
        echo "invalid port: $port (expected a number from 1 to 65535)" >&2
        exit 2
    fi
done
if ((http_port == native_port)); then
    echo "the HTTP and native ports must differ, both are $http_port" >&2
    exit 2
fi

run_dir="${HEARTH_CLICKHOUSE_RUN_DIR:-${TMPDIR:-/tmp}/hearth-clickhouse-$http_port}"
pid_file="$run_dir/clickhouse.pid"
log_dir="$run_dir/log"
config="$run_dir/config.xml"
users="$run_dir/users.xml"
url="http://127.0.0.1:$http_port"

port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# GET /ping through bash's /dev/tcp, so the script needs no HTTP client.
ping_ok() {
    timeout 2 bash -c '
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf "GET /ping HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" >&3
        grep -q "^Ok\." <&3
    ' ping "$1" 2>/dev/null
}

if ! command -v clickhouse-server >/dev/null 2>&1; then
    if [[ $EUID -ne 0 ]]; then
        echo "clickhouse-server is missing; install Debian's clickhouse-server and clickhouse-client packages as root" >&2
        exit 1
    fi
    echo "installing clickhouse-server and clickhouse-client with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -qq clickhouse-server clickhouse-client >&2; then
        apt-get update -qq >&2
        apt-get install -y -qq clickhouse-server clickhouse-client >&2
    fi
fi

mkdir -p "$run_dir"/{data,tmp,user_files,format_schemas,log}
if [[ -f "$pid_file" ]]; then
    old_pid="$(cat "$pid_file")"
    if kill -0 "$old_pid" 2>/dev/null && grep -qa clickhouse "/proc/$old_pid/cmdline"; then
        echo "clickhouse-server is already running with PID $old_pid" >&2
        echo "$url"
        exit 0
    fi
    rm -f "$pid_file"
fi
for port in "$http_port" "$native_port"; do
    if port_open "$port"; then
        echo "port $port on 127.0.0.1 is already in use by another process" >&2
        exit 1
    fi
done

# Every path points into the run directory, so nothing under /etc or /var/lib is used.
# Debian's 18.16 reads <yandex> as the root element; later servers accept it too.
cat >"$config" <<XML
<?xml version="1.0"?>
<yandex>
    <logger>
        <level>information</level>
        <log>$log_dir/clickhouse-server.log</log>
        <errorlog>$log_dir/clickhouse-server.err.log</errorlog>
        <size>100M</size>
        <count>2</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <http_port>$http_port</http_port>
    <tcp_port>$native_port</tcp_port>
    <path>$run_dir/data/</path>
    <tmp_path>$run_dir/tmp/</tmp_path>
    <user_files_path>$run_dir/user_files/</user_files_path>
    <format_schema_path>$run_dir/format_schemas/</format_schema_path>
    <users_config>$users</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <max_concurrent_queries>100</max_concurrent_queries>
    <mark_cache_size>268435456</mark_cache_size>
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
</yandex>
XML

cat >"$users" <<XML
<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>4000000000</max_memory_usage>
            <load_balancing>random</load_balancing>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks>
                <ip>127.0.0.1</ip>
                <ip>::1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
XML

echo "starting clickhouse-server on $url (native port $native_port, log: $log_dir)" >&2
cd "$run_dir"
nohup clickhouse-server --config-file="$config" >"$log_dir/stdout.log" 2>&1 </dev/null &
pid=$!
echo "$pid" >"$pid_file"

for _ in $(seq 1 300); do
    if ping_ok "$http_port"; then
        echo "$url"
        exit 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "clickhouse-server exited during startup; last lines of its logs:" >&2
        tail -n 20 "$log_dir/stdout.log" "$log_dir/clickhouse-server.err.log" >&2 || true
        rm -f "$pid_file"
        exit 1
    fi
    sleep 0.1
done

echo "clickhouse-server did not answer $url/ping within 30 s; stopping it" >&2
kill "$pid" 2>/dev/null || true
rm -f "$pid_file"
exit 1
