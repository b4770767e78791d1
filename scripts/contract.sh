#!/usr/bin/env bash
# Checks the reference server's published API contract:
#
#   scripts/contract.sh            # after `cargo build -p tenancy-examples --bins`
#
# - validates GET /openapi.json against the OpenAPI 3.1 schema
#   (openapi-spec-validator);
# - runs schemathesis against both front ends (tenancy-server and
#   tenancy-server-actix), once with a super_admin token, once with a tenant
#   admin's token and once with an API key: no 5xx, every answer conforms to
#   the document: status codes, content types, bodies and the documented
#   headers.
#
# Both tools come from PyPI, pinned in scripts/contract-requirements.txt,
# into a virtual environment under ~/.cache/tenancy made on first use.
# scripts/test.sh runs this after the tests. Servers run on the in-memory
# stores on free loopback ports and are stopped on exit.
set -euo pipefail

readonly REQUIREMENTS=scripts/contract-requirements.txt
readonly SECRET=contract-test-secret-0123456789abcdef
readonly STARTUP_TIMEOUT_SECS=30
# Examples per operation and auth; schemathesis's phases add their own.
readonly MAX_EXAMPLES=${TENANCY_CONTRACT_EXAMPLES:-50}

TMP_DIR=""
SERVER_PID=""
# Where cargo put the debug binaries.
BIN_DIR="${CARGO_TARGET_DIR:-target}/debug"

log() { printf 'scripts/contract.sh: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

cleanup() {
    local status=$?
    set +e
    [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    [[ -n $TMP_DIR ]] && rm -rf "$TMP_DIR"
    exit "$status"
}

# The virtual environment of $REQUIREMENTS, made when missing; sets VENV.
ensure_venv() {
    local hash
    hash=$(sha256sum "$REQUIREMENTS" | cut -c1-16)
    VENV="${XDG_CACHE_HOME:-$HOME/.cache}/tenancy/contract-venv-$hash"
    [[ -x $VENV/bin/schemathesis && -x $VENV/bin/openapi-spec-validator ]] && return
    command -v python3 >/dev/null || die "python3 not found"
    log "installing $(grep -v '^#' "$REQUIREMENTS" | tr '\n' ' ')into $VENV"
    rm -rf "$VENV"
    python3 -m venv "$VENV" || die "python3 -m venv failed (on Debian: apt-get install python3-venv)"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQUIREMENTS" ||
        die "pip install -r $REQUIREMENTS failed"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts binary $1 on a free port; sets BASE and SERVER_PID.
start_server() {
    local bin=$1 port
    port=$(free_port)
    BASE="http://127.0.0.1:$port"
    # schemathesis sends thousands of requests from one address, many of
    # them refused on purpose: the throttle of failed authentications (50,
    # then 10/s) would answer most of them 429 before they reach the API.
    TENANCY_BIND="127.0.0.1:$port" TENANCY_JWT_SECRET=$SECRET RUST_LOG=warn \
        TENANCY_AUTH_FAILURES_PER_SEC=100000 TENANCY_AUTH_FAILURE_BURST=100000 \
        "$BIN_DIR/$bin" >"$TMP_DIR/$bin.log" 2>&1 &
    SERVER_PID=$!
    local deadline=$((SECONDS + STARTUP_TIMEOUT_SECS))
    until curl -fsS "$BASE/healthz" >/dev/null 2>&1; do
        kill -0 "$SERVER_PID" 2>/dev/null || {
            tail -n 20 "$TMP_DIR/$bin.log" >&2
            die "$bin exited during startup"
        }
        ((SECONDS < deadline)) || die "$bin did not answer within ${STARTUP_TIMEOUT_SECS}s"
        sleep 0.2
    done
}

stop_server() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}

token() {
    TENANCY_JWT_SECRET=$SECRET "$BIN_DIR/tenancy-server" token --tenant "$1" --role "$2" --sub "$3"
}

# Runs schemathesis against $BASE as the credential in header $2 (named $1);
# prints the number of test cases it generated. It sends that credential
# only: generating values for the documented credential headers too would
# put a random API key beside it, and refuse nearly every request.
fuzz() {
    local who=$1 header=$2
    # From the temporary directory: schemathesis keeps state in its working
    # directory.
    (cd "$TMP_DIR" && "$VENV/bin/schemathesis" run "$BASE/openapi.json" \
        --header "$header" \
        --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
        --max-examples "$MAX_EXAMPLES" --seed 1 --no-color --warnings off \
        --generation-with-security-parameters false --generation-database none \
        >"$TMP_DIR/$3-$1.out" 2>&1) || {
        cat "$TMP_DIR/$3-$1.out" >&2
        die "schemathesis found failures on $3 as $who"
    }
    grep -Eo '[0-9]+ generated' "$TMP_DIR/$3-$1.out" | head -n 1 | grep -Eo '[0-9]+' || echo 0
}

main() {
    cd "$(dirname "${BASH_SOURCE[0]}")/.."
    trap cleanup EXIT
    TMP_DIR=$(mktemp -d "${TMPDIR:-/tmp}/tenancy-contract.XXXXXXXX")
    for bin in tenancy-server tenancy-server-actix; do
        [[ -x $BIN_DIR/$bin ]] || die "$BIN_DIR/$bin is missing: cargo build -p tenancy-examples --bins"
    done
    ensure_venv

    local root admin bin total n
    root=$(token platform super_admin root@platform)
    admin=$(token acme admin admin@acme)
    for bin in tenancy-server tenancy-server-actix; do
        start_server "$bin"
        curl -fsS "$BASE/openapi.json" >"$TMP_DIR/$bin.json"
        "$VENV/bin/openapi-spec-validator" --schema 3.1 "$TMP_DIR/$bin.json" >/dev/null ||
            die "$bin: /openapi.json is not a valid OpenAPI 3.1 document"
        curl -fsS -H "Authorization: Bearer $root" -H 'content-type: application/json' \
            -d '{"tenant_id":"acme","name":"Acme","plan":"pro"}' "$BASE/api/v1/tenants" >/dev/null
        local key
        key=$(curl -fsS -H "Authorization: Bearer $admin" -H 'content-type: application/json' \
            -d '{"name":"contract","scope":"full"}' "$BASE/api/v1/apikeys" |
            python3 -c 'import json, sys; print(json.load(sys.stdin)["api_key"])')
        total=0
        # The super_admin last: its run may suspend or archive acme, which
        # would refuse most of the other two's requests.
        for who in api_key admin super_admin; do
            case $who in
            super_admin) n=$(fuzz "$who" "Authorization: Bearer $root" "$bin") ;;
            admin) n=$(fuzz "$who" "Authorization: Bearer $admin" "$bin") ;;
            api_key) n=$(fuzz "$who" "X-API-Key: $key" "$bin") ;;
            esac
            log "$bin as $who: $n test cases, no failure"
            total=$((total + n))
        done
        log "$bin: $total test cases in all"
        stop_server
    done
    cmp -s "$TMP_DIR/tenancy-server.json" "$TMP_DIR/tenancy-server-actix.json" ||
        die "the two front ends serve different /openapi.json"
    log "both front ends serve the same valid OpenAPI 3.1 document"
}

main "$@"
