#!/usr/bin/env bash
# End-to-end load test of the reference servers with wrk, on loopback.
#
# For each front end (tenancy-server on axum, tenancy-server-actix on
# actix-web) it starts the release binary pinned to one core, sets up a
# tenant `load` with an API key through the HTTP API, and drives four routes
# with wrk pinned to another core, alternating them round by round:
#
#   bare   GET /healthz                  excluded from tenancy: the baseline
#   key    GET /api/v1/healthz           the same handler, X-API-Key (full scope)
#   hs256  GET /api/v1/healthz           the same handler, Bearer HS256 (shared realm)
#   es256  GET /api/v1/healthz           the same handler, Bearer ES256 (own realm, public_key_file)
#   write  POST /api/v1/incidents/…/ack  Bearer HS256; a state-changing, audited call
#
# The front end `axum-audit-off` is the axum server with TENANCY_AUDIT=off:
# its `write` row against axum's gives what enabling the audit log costs.
#
# It prints, per front end and route, the median req/s and the median p99
# latency over the rounds, and req/s relative to bare, as a markdown table.
#
# Environment:
#   ROUNDS       rounds of the four routes (default 3)
#   DURATION     wrk duration of one run (default 10s)
#   CONNECTIONS  wrk connections (default 32; one wrk thread)
#   SERVER_CPU   core of the server (default 0)
#   WRK_CPU      core of wrk (default 1)
#   FRONTS       front ends to run (default "axum actix axum-audit-off")
#   RESULTS_DIR  when set, the report is also written to
#                $RESULTS_DIR/load-<date>.md
#
# Needs wrk, curl and taskset; installs wrk and curl from Debian when missing
# and run as root. Only loopback traffic; the servers are stopped on exit.
set -euo pipefail

started_at=$(date +%s)
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
SERVER_CPU=${SERVER_CPU:-0}
WRK_CPU=${WRK_CPU:-1}
FRONTS=${FRONTS:-axum actix axum-audit-off}
RESULTS_DIR=${RESULTS_DIR:-}

case $DURATION in
*[!0-9]*) ;;
*) DURATION="${DURATION}s" ;;
esac
for n in "$ROUNDS" "$CONNECTIONS" "$SERVER_CPU" "$WRK_CPU"; do
    case $n in
    '' | *[!0-9]*)
        echo "load.sh: ROUNDS, CONNECTIONS, SERVER_CPU and WRK_CPU must be whole numbers" >&2
        exit 2
        ;;
    esac
done
if [ "$ROUNDS" -lt 1 ] || [ "$CONNECTIONS" -lt 1 ]; then
    echo "load.sh: ROUNDS and CONNECTIONS must be at least 1" >&2
    exit 2
fi

log() { echo "load.sh: $*" >&2; }
die() {
    log "$*"
    exit 1
}

# seconds DURATION: wrk's duration (10, 10s, 2m, 1h) in seconds.
seconds() {
    case $1 in
    *h) echo $((${1%h} * 3600)) ;;
    *m) echo $((${1%m} * 60)) ;;
    *s) echo "${1%s}" ;;
    *) echo "$1" ;;
    esac
}
case $(seconds "$DURATION" 2>/dev/null) in
'' | *[!0-9]* | 0) die "DURATION must be whole seconds, minutes or hours, e.g. 10s" ;;
esac

# --- tools ------------------------------------------------------------------

apt_updated=0
need() { # need COMMAND DEBIAN-PACKAGE
    command -v "$1" >/dev/null 2>&1 && return 0
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        if [ "$apt_updated" -eq 0 ]; then
            log "installing $2 (apt-get update first)"
            DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
            apt_updated=1
        fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >&2
        command -v "$1" >/dev/null 2>&1 || die "$2 was installed but $1 is still not on PATH"
    else
        die "$1 is missing: install the Debian package $2 (apt-get install $2), or run this script as root on Debian to have it installed"
    fi
}
need wrk wrk
need curl curl
need taskset util-linux

cpus=$(nproc)
if [ "$SERVER_CPU" -ge "$cpus" ] || [ "$WRK_CPU" -ge "$cpus" ] || [ "$SERVER_CPU" -eq "$WRK_CPU" ]; then
    die "needs two distinct cores: SERVER_CPU=$SERVER_CPU WRK_CPU=$WRK_CPU, $cpus online"
fi

# --- build ------------------------------------------------------------------

log "building the reference servers and mint_es256 (release)"
(cd "$root" && cargo build --release -p tenancy-examples --bins >&2)
(cd "$root" && cargo build --release -p tenancy-benches --bin mint_es256 >&2)
bin=${CARGO_TARGET_DIR:-$root/target}/release
for b in tenancy-server tenancy-server-actix mint_es256; do
    [ -x "$bin/$b" ] || die "$bin/$b was not built"
done

# --- set-up -----------------------------------------------------------------

work=$(mktemp -d "${TMPDIR:-/tmp}/tenancy-load.XXXXXX")
server_pid=""

stop_server() {
    [ -n "$server_pid" ] || return 0
    if kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$server_pid" 2>/dev/null || true
    fi
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
}

cleanup() {
    local status=$?
    stop_server
    rm -rf "$work"
    log "total run time $(($(date +%s) - started_at)) s"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

jwt_secret="load-test-secret-not-for-production-0123456789abcdef"
es256_issuer="https://id.load.example/realms/es256"
ec_private="$root/tenancy-core/src/credential/jwt/testdata/ec_private.pem"
ec_public="$root/tenancy-core/src/credential/jwt/testdata/ec_public.pem"
[ -r "$ec_private" ] && [ -r "$ec_public" ] || die "missing the P-256 test key pair under tenancy-core/src/credential/jwt/testdata"

cat >"$work/tenancy.toml" <<EOF
# An ES256 realm of its own issuer, verified with a PEM public key file.
[[realms]]
name = "es256"
issuer = "$es256_issuer"

[[realms.keys]]
algorithm = "ES256"
public_key_file = "$ec_public"

# A plan whose limits never refuse the load.
[plans.load]
events_per_month = "unlimited"
api_keys = "unlimited"
users = "unlimited"
rps = 1000000000
retention_days = 1
EOF

export TENANCY_JWT_SECRET="$jwt_secret"
export TENANCY_CONFIG="$work/tenancy.toml"
export TENANCY_BIND="127.0.0.1:0"
export RUST_LOG=warn

token() { "$bin/tenancy-server" token --ttl 86400 "$@"; }
admin_token=$(token --tenant platform --role super_admin --sub bench-admin)
hs256_token=$(token --tenant load --role admin --sub bench)
es256_token=$("$bin/mint_es256" --key "$ec_private" --iss "$es256_issuer" \
    --tenant load --role admin --sub bench --ttl 86400)

# start_server NAME BINARY: starts it on core SERVER_CPU, sets $base_url.
start_server() {
    local name=$1 exe=$2 out="$work/$1.out"
    taskset -c "$SERVER_CPU" "$exe" >"$out" 2>"$work/$name.err" &
    server_pid=$!
    base_url=""
    for _ in $(seq 1 300); do
        if ! kill -0 "$server_pid" 2>/dev/null; then
            cat "$work/$name.err" >&2
            die "$name exited at start"
        fi
        base_url=$(sed -nE 's/.* listening on (http:\/\/[0-9.]+:[0-9]+).*/\1/p' "$out" | head -n 1)
        if [ -n "$base_url" ] && curl -fsS -o /dev/null "$base_url/healthz" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    die "$name did not answer /healthz within 30 s"
}

# api METHOD PATH BODY: a call as the platform super_admin; prints the body.
api() {
    curl -fsS -X "$1" -H "Authorization: Bearer $admin_token" \
        -H 'Content-Type: application/json' -d "$3" "$base_url$2" ||
        die "$1 $2 failed"
}

# set_up: tenant `load` on the `load` plan and a full-scope key without an
# own rate limit; sets $api_key.
set_up() {
    api POST /api/v1/tenants \
        '{"tenant_id":"load","name":"Load test","plan":"load","contact_email":"load@example.com"}' >/dev/null
    local answer
    answer=$(api POST /api/v1/apikeys '{"tenant_id":"load","name":"wrk","scope":"full"}')
    api_key=$(printf '%s' "$answer" | sed -nE 's/.*"api_key":"([^"]+)".*/\1/p')
    [ -n "$api_key" ] || die "no api_key in the answer: $answer"
}

route_path() {
    case $1 in
    bare) echo /healthz ;;
    write) echo /api/v1/incidents/inc-1/ack ;;
    *) echo /api/v1/healthz ;;
    esac
}

route_header() {
    case $1 in
    bare) echo "Accept: application/json" ;;
    key) echo "X-API-Key: $api_key" ;;
    hs256 | write) echo "Authorization: Bearer $hs256_token" ;;
    es256) echo "Authorization: Bearer $es256_token" ;;
    esac
}

check_routes() {
    local r code
    for r in $ROUTES; do
        code=$(curl -sS -o "$work/check.body" -w '%{http_code}' -X "$(route_method "$r")" \
            -H "$(route_header "$r")" "$base_url$(route_path "$r")")
        [ "$code" = 200 ] || die "route $r answered $code: $(cat "$work/check.body")"
    done
}

route_method() {
    case $1 in
    write) echo POST ;;
    *) echo GET ;;
    esac
}

ROUTES="bare key hs256 es256 write"
printf 'wrk.method = "POST"\n' >"$work/post.lua"

# run_wrk ROUTE DURATION OUT: one wrk run, bounded by a timeout.
run_wrk() {
    local script=()
    [ "$(route_method "$1")" = POST ] && script=(-s "$work/post.lua")
    timeout $(($(seconds "$2") + 30)) taskset -c "$WRK_CPU" wrk -t1 -c"$CONNECTIONS" -d"$2" \
        --timeout 5s --latency "${script[@]}" -H "$(route_header "$1")" \
        "$base_url$(route_path "$1")" >"$3"
}

# parse_wrk FILE: prints "req_per_sec p99_microseconds non_2xx".
parse_wrk() {
    awk '
        function us(v) {
            if (v ~ /us$/) return v + 0
            if (v ~ /ms$/) return (v + 0) * 1000
            if (v ~ /m$/) return (v + 0) * 60000000
            if (v ~ /s$/) return (v + 0) * 1000000
            return v + 0
        }
        /^Requests\/sec:/ { rps = $2 }
        /^[ \t]+99%/ { p99 = us($2) }
        /Non-2xx or 3xx responses:/ { bad += $NF }
        /Socket errors:/ { for (i = 4; i <= NF; i += 2) bad += $i }
        END {
            if (rps == "" || p99 == "") exit 1
            printf "%s %.0f %d\n", rps, p99, bad + 0
        }' "$1"
}

# --- runs -------------------------------------------------------------------

results="$work/results"
: >"$results"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

for front in $FRONTS; do
    case $front in
    axum) exe="$bin/tenancy-server" audit=on ;;
    actix) exe="$bin/tenancy-server-actix" audit=on ;;
    axum-audit-off) exe="$bin/tenancy-server" audit=off ;;
    *) die "unknown front end $front (expected axum, actix or axum-audit-off)" ;;
    esac
    export TENANCY_AUDIT=$audit
    log "$front: starting $(basename "$exe") on core $SERVER_CPU"
    start_server "$front" "$exe"
    set_up
    check_routes
    for r in $ROUTES; do # warm-up: connections, caches
        run_wrk "$r" 1s "$work/warm.out"
    done
    for round in $(seq 1 "$ROUNDS"); do
        for r in $ROUTES; do
            out="$work/$front-$r-$round.out"
            run_wrk "$r" "$DURATION" "$out"
            line=$(parse_wrk "$out") || {
                cat "$out" >&2
                die "cannot read wrk output of $front/$r round $round"
            }
            log "$front round $round $r: $line (req/s p99_us non2xx)"
            echo "$front $r $round $line" >>"$results"
        done
    done
    stop_server
done

load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# --- report -----------------------------------------------------------------

report=$(
    echo "# Load test: reference servers under wrk"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)," \
        "$(uname -sr), $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
    echo
    echo "Server on core $SERVER_CPU, wrk on core $WRK_CPU (\`wrk -t1 -c$CONNECTIONS -d$DURATION --latency\`)," \
        "loopback; $ROUNDS rounds, routes alternated within each round; medians over the rounds." \
        "Load average (1, 5, 15 min): $load_before before, $load_after after."
    echo
    echo "| front end | route | req/s | p99 | req/s vs bare | errors |"
    echo "|---|---|---:|---:|---:|---:|"
    awk '
        function median(list,    n, a, i, j, t) {
            n = split(list, a, " ")
            for (i = 2; i <= n; i++) {
                t = a[i] + 0
                for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]
                a[j + 1] = t
            }
            return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
        }
        function lat(u) {
            return (u >= 1000) ? sprintf("%.2f ms", u / 1000) : sprintf("%.0f µs", u)
        }
        {
            k = $1 SUBSEP $2
            rps[k] = rps[k] " " $4
            p99[k] = p99[k] " " $5
            bad[k] += $6
            if (!seen[$1]++) fronts[++nf] = $1
        }
        END {
            nr = split("bare key hs256 es256 write", routes, " ")
            names["bare"] = "bare (`/healthz`, no tenancy)"
            names["key"] = "API key"
            names["hs256"] = "HS256 bearer"
            names["es256"] = "ES256 bearer"
            names["write"] = "audited write (POST, HS256)"
            for (f = 1; f <= nf; f++) {
                base = median(rps[fronts[f] SUBSEP "bare"])
                for (r = 1; r <= nr; r++) {
                    k = fronts[f] SUBSEP routes[r]
                    if (!(k in rps)) continue
                    m = median(rps[k])
                    printf "| %s | %s | %.0f | %s | %.1f %% | %d |\n", fronts[f], names[routes[r]],
                        m, lat(median(p99[k])), (base > 0) ? 100 * m / base : 0, bad[k]
                }
            }
        }' "$results"
)

echo "$report"
if [ -n "$RESULTS_DIR" ]; then
    mkdir -p "$RESULTS_DIR"
    file="$RESULTS_DIR/load-$(date -u +%Y%m%dT%H%M%SZ).md"
    echo "$report" >"$file"
    log "report written to $file"
fi
