#!/usr/bin/env bash
# Runs every check and test of Hearth, the way CI does, on a machine with only the Rust
# toolchain, python3 and Node.js with npm: formatting, clippy, unit tests, then end-to-end
# tests. Those run the hearth binary against a Kafka-protocol broker and a ClickHouse
# server (Debian's clickhouse-server, installed with apt-get when missing, which needs
# root) that this script starts on 127.0.0.1 and stops again on exit, and against real
# SMART clients. For the clients it installs Debian's Chromium with apt-get when it is missing
# (which needs root), and keeps the npm packages of tests/clients/node and a Python
# virtual environment with tests/clients/python/requirements.txt under HEARTH_CACHE_DIR, and
# the packages of the STU3 server in tests/clients/stu3 that the EHR proxy tests start.
# The Bulk Data tests get an S3-compatible server (s3s-fs, built once into HEARTH_CACHE_DIR).
#
# Usage: infra/test.sh [extra arguments for the end-to-end cargo test run]
#
# Environment:
#   CARGO_TARGET_DIR   shared build directory (default /var/cache/hearth/target when
#                      writable, else target/ in the repository)
#   HEARTH_CACHE_DIR   where downloaded tools are kept (default /var/cache/hearth)
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

cache_root="${HEARTH_CACHE_DIR:-/var/cache/hearth}"
if [[ -z "${CARGO_TARGET_DIR:-}" ]]; then
    if mkdir -p "$cache_root/target" 2>/dev/null && [[ -w "$cache_root/target" ]]; then
        export CARGO_TARGET_DIR="$cache_root/target"
    else
        export CARGO_TARGET_DIR="$root/target"
    fi
fi
export HEARTH_CACHE_DIR="$cache_root"
echo "build directory: $CARGO_TARGET_DIR" >&2

step() {
    echo >&2
    echo "==> $*" >&2
}

step "formatting"
cargo fmt --all --check

step "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build"
cargo build --workspace --all-targets --locked

step "Kafka-protocol broker"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
export HEARTH_KAFKA_RUN_DIR="${TMPDIR:-/tmp}/hearth-test-tansu-$port"
stop_broker() {
    infra/kafka/stop.sh "$port" || true
}
trap stop_broker EXIT
HEARTH_TEST_KAFKA_BROKERS="$(infra/kafka/start.sh "$port")"
export HEARTH_TEST_KAFKA_BROKERS
echo "broker at $HEARTH_TEST_KAFKA_BROKERS" >&2

step "ClickHouse"
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
clickhouse_port="$(free_port)"
clickhouse_native_port="$(free_port)"
clickhouse_run_dir="${TMPDIR:-/tmp}/hearth-test-clickhouse-$clickhouse_port"
stop_clickhouse() {
    HEARTH_CLICKHOUSE_RUN_DIR="$clickhouse_run_dir" infra/clickhouse/stop.sh "$clickhouse_port" || true
    rm -rf "$clickhouse_run_dir"
}
trap 'stop_broker; stop_clickhouse' EXIT
HEARTH_TEST_CLICKHOUSE_URL="$(HEARTH_CLICKHOUSE_RUN_DIR="$clickhouse_run_dir" \
    infra/clickhouse/start.sh "$clickhouse_port" "$clickhouse_native_port")"
export HEARTH_TEST_CLICKHOUSE_URL
echo "ClickHouse at $HEARTH_TEST_CLICKHOUSE_URL" >&2

step "S3-compatible server"
s3_port="$(free_port)"
export HEARTH_S3_RUN_DIR="${TMPDIR:-/tmp}/hearth-test-s3-$s3_port"
stop_s3() {
    infra/s3/stop.sh "$s3_port" || true
    rm -rf "$HEARTH_S3_RUN_DIR"
}
trap 'stop_broker; stop_clickhouse; stop_s3' EXIT
HEARTH_TEST_S3_ENDPOINT="$(infra/s3/start.sh "$s3_port")"
export HEARTH_TEST_S3_ENDPOINT
echo "S3 endpoint at $HEARTH_TEST_S3_ENDPOINT" >&2

step "SMART clients"
install_smart_clients() {
    local clients="$root/tests/clients"
    local installed="$cache_root/smart-clients"

    if [[ ! -x /usr/bin/chromium ]]; then
        if [[ $EUID -ne 0 ]]; then
            echo "/usr/bin/chromium is missing; install Debian's chromium package as root" >&2
            return 1
        fi
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    fi
    echo "chromium: $(/usr/bin/chromium --version 2>/dev/null)" >&2

    # Each install is redone only when its lock or requirements file changed. The copy
    # of that file beside the install is written last, so an interrupted install is
    # redone too.
    local node_dir="$installed/node"
    if ! cmp -s "$clients/node/package-lock.json" "$node_dir/installed-package-lock.json"; then
        rm -rf "$node_dir"
        mkdir -p "$node_dir"
        cp "$clients/node/package.json" "$clients/node/package-lock.json" "$node_dir/"
        (cd "$node_dir" && npm ci --legacy-peer-deps --no-audit --no-fund --loglevel=error)
        cp "$clients/node/package-lock.json" "$node_dir/installed-package-lock.json"
    fi
    export HEARTH_TEST_NODE_DIR="$node_dir"

    local venv="$installed/python"
    if ! cmp -s "$clients/python/requirements.txt" "$venv/installed-requirements.txt"; then
        rm -rf "$venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check \
            -r "$clients/python/requirements.txt"
        cp "$clients/python/requirements.txt" "$venv/installed-requirements.txt"
    fi
    export HEARTH_TEST_PYTHON="$venv/bin/python"
    echo "node packages in $HEARTH_TEST_NODE_DIR, python at $HEARTH_TEST_PYTHON" >&2

    # The STU3 upstream of the EHR proxy tests. Install scripts stay off: a dependency
    # of node-fhir-server-core (snyk) downloads a program of its own in one, and the
    # server needs none of them.
    local stu3_dir="$installed/stu3"
    if ! cmp -s "$clients/stu3/package-lock.json" "$stu3_dir/installed-package-lock.json"; then
        rm -rf "$stu3_dir"
        mkdir -p "$stu3_dir"
        cp "$clients/stu3/package.json" "$clients/stu3/package-lock.json" "$stu3_dir/"
        (cd "$stu3_dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
        cp "$clients/stu3/package-lock.json" "$stu3_dir/installed-package-lock.json"
    fi
    export HEARTH_TEST_STU3_SERVER_DIR="$stu3_dir"
    echo "STU3 server packages in $HEARTH_TEST_STU3_SERVER_DIR" >&2
}
install_smart_clients

step "test data"
# The Synthea bundles of tests/data, unpacked, and the official R4 examples (npm package
# hl7.fhir.r4.examples), for the tests that read every resource of both.
prepare_test_data() {
    local data="$cache_root/test-data"
    local synthea="$data/synthea-r4"
    if [[ ! -f "$synthea/unpacked" || tests/data/synthea-r4.tar.xz -nt "$synthea/unpacked" ]]; then
        rm -rf "$synthea"
        mkdir -p "$synthea"
        tar -xJf tests/data/synthea-r4.tar.xz -C "$synthea"
        touch "$synthea/unpacked"
    fi
    export HEARTH_SYNTHEA_DIR="$synthea/synthea"

    local examples="$data/r4-examples-$r4_examples_version"
    if [[ ! -f "$examples/unpacked" ]]; then
        rm -rf "$examples"
        mkdir -p "$examples"
        (cd "$examples" && npm pack --silent "hl7.fhir.r4.examples@$r4_examples_version" >/dev/null)
        tar -xzf "$examples/hl7.fhir.r4.examples-$r4_examples_version.tgz" -C "$examples"
        rm "$examples/hl7.fhir.r4.examples-$r4_examples_version.tgz"
        touch "$examples/unpacked"
    fi
    export HEARTH_R4_EXAMPLES="$examples/package"
    echo "Synthea bundles in $HEARTH_SYNTHEA_DIR, R4 examples in $HEARTH_R4_EXAMPLES" >&2
}
r4_examples_version="4.0.1"
prepare_test_data

step "unit and component tests"
cargo test --workspace --exclude hearth-e2e --locked

step "end-to-end tests"
export HEARTH_BIN="$CARGO_TARGET_DIR/debug/hearth"
cargo test -p hearth-e2e --locked -- "$@"

step "all tests passed"
