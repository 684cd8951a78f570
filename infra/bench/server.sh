# Shared start-up of the benchmark scripts, which source this file. It builds the binary
# and makes a work directory that is removed on exit, together with every server started
# here. Its helpers start `hearth serve`, load the Synthea sample and get backend-services
# tokens.
#
# After sourcing, `root` is the repository, `work` a fresh temporary directory, and
# `hearth` the release binary (built unless HEARTH_BIN names one). wrk is installed from
# Debian when missing.

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
cache_root="${HEARTH_CACHE_DIR:-/var/cache/hearth}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache_root/target}"

command -v wrk >/dev/null || apt-get install -y wrk >&2
if [[ -z "${HEARTH_BIN:-}" ]]; then
    cargo build --release --locked -p hearth >&2
    HEARTH_BIN="$CARGO_TARGET_DIR/release/hearth"
fi
hearth="$HEARTH_BIN"

work="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits up to 120 s until URL responds.
wait_for() {
    for _ in $(seq 1 600); do
        if curl -s -o /dev/null "$1"; then return 0; fi
        sleep 0.2
    done
    echo "no response from $1 within 120 s" >&2
    return 1
}

json_field() {
    python3 -c "import json, sys; print(json.load(sys.stdin)[\"$1\"])"
}

random_secret() {
    python3 -c 'import secrets; print(secrets.token_hex(32))'
}

# Starts `hearth serve` with data in $work/NAME on a free port, with any further arguments
# added, and waits until it responds. Sets NAME_url (its base URL) and NAME_admin (its
# admin token).
start_hearth() {
    local name="$1" port admin
    shift
    port="$(free_port)"
    admin="$(random_secret)"
    HEARTH_LOG=warn "$hearth" serve --data-dir "$work/$name" --listen "127.0.0.1:$port" \
        --admin-token "$admin" "$@" &
    pids+=($!)
    printf -v "${name}_url" '%s' "http://127.0.0.1:$port"
    printf -v "${name}_admin" '%s' "$admin"
    wait_for "http://127.0.0.1:$port/healthz"
}

# Unpacks the Synthea sample into $work/synthea once.
unpack_sample() {
    [[ -d "$work/synthea" ]] || tar -xJf tests/data/synthea-r4.tar.xz -C "$work"
}

# Loads the Synthea sample into the default site of the server at BASE.
load_sample() {
    local base="$1" admin="$2"
    unpack_sample
    "$hearth" load --quiet --url "$base" --admin-token="$admin" "$work/synthea" | tail -n 1 >&2
}

admin_post() {
    curl -sf -X POST "$1/admin/$2" -H "Authorization: Bearer $3" -H 'Content-Type: application/json' -d "$4"
}

# Registers the backend-services app `bench` with a client secret, active at SITES (a
# JSON list) of the server at BASE, and keeps the secret for token_at.
register_bench_app() {
    local base="$1" admin="$2" sites="$3"
    admin_post "$base" apps "$admin" \
        "{\"client_id\":\"bench\",\"name\":\"Benchmark\",\"client_type\":\"confidential-symmetric\",\"scope\":\"system/*.rs\",\"grant_types\":[\"client_credentials\"],\"sites\":$sites}" |
        json_field client_secret >"$work/secret-$(echo "$base" | tr -dc 0-9)"
}

# Prints an access token of the `bench` app of server BASE from the token endpoint AUTH.
token_at() {
    local base="$1" auth="$2" secret
    secret="$(cat "$work/secret-$(echo "$base" | tr -dc 0-9)")"
    curl -sf -u "bench:$secret" -d 'grant_type=client_credentials&scope=system/*.rs' "$auth/token" |
        json_field access_token
}
