#!/usr/bin/env bash
# The one test command of the workspace.
#
# Starts private Redis and ClickHouse servers on free loopback ports in a
# temporary directory, points the store tests at them and runs the tests:
#
#   scripts/test.sh                      # cargo test --workspace --all-features
#   scripts/test.sh -p tenancy-core      # extra arguments go to `cargo test`
#
# Also starts a Redis that speaks only TLS, and gives ClickHouse an HTTPS
# port, with a throw-away CA and certificate made by openssl; a Redis
# Cluster of 3 masters and 3 replicas, another of 3 masters over TLS, and a
# second ClickHouse server that makes, with the first, a cluster of two
# shards.
#
# A run of the whole workspace then checks the API contract of the
# reference server (scripts/contract.sh: openapi-spec-validator and
# schemathesis, installed from PyPI into a virtual environment).
#
# Needs the Debian packages `redis-server`, `clickhouse-server`, `curl`,
# `openssl` and `python3`; when they are missing and the script runs as root
# it installs them with apt-get. The servers are stopped and the temporary
# directory removed on every exit.
set -euo pipefail

readonly STARTUP_TIMEOUT_SECS=60
readonly SHUTDOWN_TIMEOUT_SECS=15
readonly PACKAGES=(redis-server clickhouse-server curl openssl python3 python3-venv)

# Debian installs clickhouse-server into /usr/sbin, which is not on the PATH
# of ordinary users.
PATH="$PATH:/usr/sbin:/sbin"

TMP_DIR=""
REDIS_PID=""
REDIS_TLS_PID=""
REDIS_CLUSTER_PIDS=()
CLICKHOUSE_PIDS=()
TLS_DIR=""

# The name of the two-shard ClickHouse cluster in both servers' config.
readonly CLICKHOUSE_CLUSTER=tenancy_test_shards

log() { printf 'scripts/test.sh: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# --- installation -----------------------------------------------------------

ensure_servers_installed() {
    local missing=()
    command -v redis-server >/dev/null || missing+=(redis-server)
    command -v redis-cli >/dev/null || missing+=(redis-cli)
    command -v clickhouse-server >/dev/null || missing+=(clickhouse-server)
    command -v openssl >/dev/null || missing+=(openssl)
    # docs/keycloak.md's calls are run as printed (examples/tests/guide.rs).
    command -v curl >/dev/null || missing+=(curl)
    # scripts/contract.sh installs schemathesis into a virtual environment.
    command -v python3 >/dev/null || missing+=(python3)
    python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
    ((${#missing[@]} == 0)) && return

    if ((EUID != 0)); then
        die "${missing[*]} not found; install them with:" \
            "sudo apt-get install --no-install-recommends ${PACKAGES[*]}"
    fi
    command -v apt-get >/dev/null || die "${missing[*]} not found and apt-get is unavailable"
    log "installing ${PACKAGES[*]} (missing: ${missing[*]})"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${PACKAGES[@]}"
}

# --- small network helpers (bash only: no curl or python needed) ------------

# Succeeds when something accepts TCP connections on 127.0.0.1:$1.
port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Prints $1 distinct loopback TCP ports that are free right now.
free_ports() {
    local count=$1
    if command -v python3 >/dev/null; then
        # Let the kernel pick: bind all sockets at once so the ports differ.
        python3 - "$count" <<'EOF'
import socket, sys
sockets = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in sockets:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in sockets))
EOF
        return
    fi
    # Without python3: random ports below the kernel's ephemeral range
    # (32768-60999 on Debian) that nothing listens on.
    local ports=() port
    while ((${#ports[@]} < count)); do
        port=$((20000 + RANDOM % 12000))
        [[ " ${ports[*]} " == *" $port "* ]] && continue
        port_in_use "$port" && continue
        ports+=("$port")
    done
    echo "${ports[*]}"
}

# Prints the body of an HTTP GET of path $2 on 127.0.0.1:$1.
http_get() {
    local port=$1 path=$2 response
    # HTTP/1.0 so that the server closes the connection after its answer.
    response=$(
        exec 3<>"/dev/tcp/127.0.0.1/$port"
        printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$path" >&3
        timeout 5 cat <&3
    ) || return 1
    [[ $response == "HTTP/1."[01]" 200"* ]] || return 1
    printf '%s' "${response#*$'\r\n\r\n'}"
}

# Polls command "$@" until it succeeds. Fails with the tails of the *.log files
# in directory $3 when the server process $2 dies or after STARTUP_TIMEOUT_SECS.
wait_until_ready() {
    local name=$1 pid=$2 log_dir=$3
    shift 3
    local deadline=$((SECONDS + STARTUP_TIMEOUT_SECS))
    until "$@"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "$name exited during startup; last log lines:"
        elif ((SECONDS >= deadline)); then
            log "$name did not answer within ${STARTUP_TIMEOUT_SECS}s; last log lines:"
        else
            sleep 0.2
            continue
        fi
        tail -n 30 "$log_dir"/*.log >&2 || true
        exit 1
    done
}

# --- Redis ------------------------------------------------------------------

start_redis() {
    local port=$1 dir="$TMP_DIR/redis"
    mkdir -p "$dir"
    # No persistence: the data lives and dies with this run.
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
        --dir "$dir" --daemonize no >"$dir/redis.log" 2>&1 &
    REDIS_PID=$!
    wait_until_ready redis-server "$REDIS_PID" "$dir" redis_ready "$port"
    export TENANCY_TEST_REDIS_URL="redis://127.0.0.1:$port/"
    log "redis $(redis-server --version | grep -o 'v=[^ ]*') on $TENANCY_TEST_REDIS_URL (pid $REDIS_PID)"
}

redis_ready() {
    [[ "$(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" == PONG ]]
}

# A second Redis that speaks only TLS, with the certificate of make_tls_certs.
start_redis_tls() {
    local port=$1 dir="$TMP_DIR/redis-tls"
    mkdir -p "$dir"
    redis-server --port 0 --tls-port "$port" --bind 127.0.0.1 --save "" --appendonly no \
        --tls-cert-file "$TLS_DIR/server.crt" --tls-key-file "$TLS_DIR/server.key" \
        --tls-ca-cert-file "$TLS_DIR/ca.crt" --tls-auth-clients no \
        --dir "$dir" --daemonize no >"$dir/redis.log" 2>&1 &
    REDIS_TLS_PID=$!
    wait_until_ready "redis-server (TLS)" "$REDIS_TLS_PID" "$dir" redis_tls_ready "$port"
    export TENANCY_TEST_REDIS_TLS_URL="rediss://127.0.0.1:$port/"
    log "redis over TLS on $TENANCY_TEST_REDIS_TLS_URL (pid $REDIS_TLS_PID)"
}

redis_tls_ready() {
    [[ "$(redis-cli --tls --cacert "$TLS_DIR/ca.crt" -h 127.0.0.1 -p "$1" ping 2>/dev/null)" == PONG ]]
}

# A Redis Cluster with a short node timeout, so that a failover takes
# seconds. $1 is `plain` or `tls` (TLS only, on the client port and on the
# cluster bus, with the certificate of make_tls_certs), $2 the replicas per
# master, $3 the variable that receives the nodes' URLs; the rest are free
# ports, two per node: first the client ports, then the bus ports (set apart,
# since the default bus port, the client port + 10000, may be out of range
# or taken). Three masters, and as many nodes as there are port pairs.
start_redis_cluster() {
    local mode=$1 replicas=$2 var=$3
    shift 3
    local ports=("$@") count=$(($# / 2)) dir="$TMP_DIR/redis-cluster-$mode" i port nodes=() urls=()
    local cli=(redis-cli) listen scheme=redis ready=redis_ready
    if [[ $mode == tls ]]; then
        cli+=(--tls --cacert "$TLS_DIR/ca.crt")
        scheme=rediss
        ready=redis_tls_ready
    fi
    mkdir -p "$dir"
    for ((i = 0; i < count; i++)); do
        port=${ports[$i]}
        if [[ $mode == tls ]]; then
            listen=(--port 0 --tls-port "$port" --tls-cluster yes --tls-replication yes
                --tls-cert-file "$TLS_DIR/server.crt" --tls-key-file "$TLS_DIR/server.key"
                --tls-ca-cert-file "$TLS_DIR/ca.crt" --tls-auth-clients no)
        else
            listen=(--port "$port")
        fi
        mkdir -p "$dir/$port"
        redis-server "${listen[@]}" --cluster-port "${ports[$((i + count))]}" \
            --bind 127.0.0.1 --save "" --appendonly no \
            --cluster-enabled yes --cluster-config-file "$dir/$port/nodes.conf" \
            --cluster-node-timeout 2000 --dir "$dir/$port" --daemonize no \
            >"$dir/$port/redis.log" 2>&1 &
        REDIS_CLUSTER_PIDS+=("$!")
        wait_until_ready "redis-server ($mode cluster node $port)" "$!" "$dir/$port" "$ready" "$port"
        nodes+=("127.0.0.1:$port")
        urls+=("$scheme://127.0.0.1:$port")
    done
    "${cli[@]}" --cluster create "${nodes[@]}" --cluster-replicas "$replicas" --cluster-yes \
        >"$dir/create.log" 2>&1 || {
        tail -n 30 "$dir/create.log" >&2
        die "redis-cli --cluster create ($mode) failed"
    }
    local deadline=$((SECONDS + STARTUP_TIMEOUT_SECS))
    for port in "${ports[@]:0:count}"; do
        until "${cli[@]}" -h 127.0.0.1 -p "$port" cluster info 2>/dev/null | grep -q 'cluster_state:ok'; do
            ((SECONDS < deadline)) || die "the $mode Redis Cluster did not reach cluster_state:ok"
            sleep 0.2
        done
    done
    printf -v "$var" '%s' "$(
        IFS=,
        echo "${urls[*]}"
    )"
    export "${var?}"
    log "$mode redis cluster (3 masters, replicas per master: $replicas) on ${nodes[*]}"
}

# --- TLS ----------------------------------------------------------------------

# A throw-away CA, a server certificate it signs for 127.0.0.1, and a second
# CA that signed nothing (what a client with the wrong CA file trusts). They
# live in the temporary directory and last two days. The server certificate
# is also a client certificate: the nodes of a Redis Cluster over TLS present
# it to each other on the cluster bus.
make_tls_certs() {
    TLS_DIR="$TMP_DIR/tls"
    mkdir -p "$TLS_DIR"
    local ca
    for ca in ca other-ca; do
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=tenancy test $ca" \
            -keyout "$TLS_DIR/$ca.key" -out "$TLS_DIR/$ca.crt" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    done
    openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
        -keyout "$TLS_DIR/server.key" -out "$TLS_DIR/server.csr" 2>/dev/null
    printf '%s\n' "subjectAltName=IP:127.0.0.1" "basicConstraints=CA:FALSE" \
        "keyUsage=digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth,clientAuth" \
        >"$TLS_DIR/server.ext"
    openssl x509 -req -days 2 -in "$TLS_DIR/server.csr" -extfile "$TLS_DIR/server.ext" \
        -CA "$TLS_DIR/ca.crt" -CAkey "$TLS_DIR/ca.key" -CAcreateserial \
        -out "$TLS_DIR/server.crt" 2>/dev/null
    export TENANCY_TEST_TLS_CA="$TLS_DIR/ca.crt"
    export TENANCY_TEST_TLS_OTHER_CA="$TLS_DIR/other-ca.crt"
}

# --- ClickHouse ---------------------------------------------------------------

# Writes config.xml and users.xml for a private ClickHouse into $1.
#
# ClickHouse 18.16 (Debian 12's clickhouse-server) refuses to start without
# <logger>, <users_config> and <mark_cache_size>, and without a `default`
# settings profile. <path> keeps the data in the temporary directory (the
# default is /var/lib/clickhouse/); the other directories default to
# subdirectories of <path> and are only spelled out for clarity. Leaving out
# <interserver_http_port> disables replication's listener. Every user needs a
# quota and a <networks> list, or its queries fail with "Unknown quota" and
# "not allowed to connect". <remote_servers> names the cluster of two shards,
# one server each, on the native ports $5 and $6; `Distributed` tables reach
# the shards through it.
write_clickhouse_config() {
    local dir=$1 http_port=$2 tcp_port=$3 https_port=$4 shard1_tcp=$5 shard2_tcp=$6
    cat >"$dir/config.xml" <<EOF
<?xml version="1.0"?>
<yandex>
    <logger>
        <level>information</level>
        <log>$dir/clickhouse-server.log</log>
        <errorlog>$dir/clickhouse-server.err.log</errorlog>
        <size>10M</size>
        <count>1</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <http_port>$http_port</http_port>
    <tcp_port>$tcp_port</tcp_port>
    <!-- HTTPS with the throw-away certificate of make_tls_certs. -->
    <https_port>$https_port</https_port>
    <openSSL>
        <server>
            <certificateFile>$TLS_DIR/server.crt</certificateFile>
            <privateKeyFile>$TLS_DIR/server.key</privateKeyFile>
            <verificationMode>none</verificationMode>
            <loadDefaultCAFile>false</loadDefaultCAFile>
            <disableProtocols>sslv2,sslv3,tlsv1,tlsv1_1</disableProtocols>
            <preferServerCiphers>true</preferServerCiphers>
        </server>
    </openSSL>
    <path>$dir/data/</path>
    <tmp_path>$dir/data/tmp/</tmp_path>
    <user_files_path>$dir/data/user_files/</user_files_path>
    <format_schema_path>$dir/data/format_schemas/</format_schema_path>
    <!-- Relative to this file's directory. -->
    <users_config>users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <!-- Required; the packaged config uses 5 GiB. -->
    <mark_cache_size>67108864</mark_cache_size>
    <uncompressed_cache_size>67108864</uncompressed_cache_size>
    <remote_servers>
        <$CLICKHOUSE_CLUSTER>
            <shard><replica><host>127.0.0.1</host><port>$shard1_tcp</port></replica></shard>
            <shard><replica><host>127.0.0.1</host><port>$shard2_tcp</port></replica></shard>
        </$CLICKHOUSE_CLUSTER>
    </remote_servers>
</yandex>
EOF
    cat >"$dir/users.xml" <<EOF
<?xml version="1.0"?>
<yandex>
    <profiles>
        <default/>
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
        <!-- No intervals: nothing is limited. -->
        <default/>
    </quotas>
</yandex>
EOF
}

# Starts a private ClickHouse in $TMP_DIR/$1 with HTTP, native and HTTPS
# ports $2-$4 and the shards' native ports $5 and $6; its pid goes into
# CLICKHOUSE_PIDS at once, so it is stopped even when it fails to start.
run_clickhouse() {
    local name=$1 http_port=$2 tcp_port=$3 https_port=$4 dir="$TMP_DIR/$1"
    mkdir -p "$dir"
    write_clickhouse_config "$dir" "$http_port" "$tcp_port" "$https_port" "$5" "$6"
    # 18.16 runs as root or as any user owning $dir. It prints only where it
    # logs to stdout; startup errors go to the log files.
    (cd "$dir" && exec clickhouse-server --config-file="$dir/config.xml") \
        >"$dir/stdout.log" 2>&1 &
    CLICKHOUSE_PIDS+=("$!")
    wait_until_ready "clickhouse-server ($name)" "$!" "$dir" clickhouse_ready "$http_port"
    # /ping needs no user, so it answers even when users.xml is unusable; a
    # query proves that the `default` user can work.
    http_get "$http_port" "/?query=SELECT%20version()" >/dev/null ||
        die "clickhouse-server answers /ping but not queries; see $dir/clickhouse-server.err.log"
}

# Two ClickHouse servers, the two shards of $CLICKHOUSE_CLUSTER. The first
# also serves the single-server tests, over HTTP and HTTPS. $@: HTTP, native
# and HTTPS ports of each.
start_clickhouse() {
    local http1=$1 tcp1=$2 https1=$3 http2=$4 tcp2=$5 https2=$6
    run_clickhouse clickhouse "$http1" "$tcp1" "$https1" "$tcp1" "$tcp2"
    run_clickhouse clickhouse-shard2 "$http2" "$tcp2" "$https2" "$tcp1" "$tcp2"
    export TENANCY_TEST_CLICKHOUSE_URL="http://127.0.0.1:$http1"
    export TENANCY_TEST_CLICKHOUSE_TLS_URL="https://127.0.0.1:$https1"
    export TENANCY_TEST_CLICKHOUSE_CLUSTER="$CLICKHOUSE_CLUSTER"
    export TENANCY_TEST_CLICKHOUSE_SHARDS="http://127.0.0.1:$http1,http://127.0.0.1:$http2"
    log "clickhouse $(http_get "$http1" "/?query=SELECT%20version()") on $TENANCY_TEST_CLICKHOUSE_URL and $TENANCY_TEST_CLICKHOUSE_TLS_URL (pid ${CLICKHOUSE_PIDS[0]})"
    log "clickhouse cluster $CLICKHOUSE_CLUSTER of two shards: $TENANCY_TEST_CLICKHOUSE_SHARDS (pids ${CLICKHOUSE_PIDS[*]})"
}

clickhouse_ready() {
    [[ "$(http_get "$1" /ping 2>/dev/null)" == "Ok." ]]
}

# --- shutdown -----------------------------------------------------------------

# Sends SIGTERM to $1, waits for it, and kills it when it takes too long.
stop_process() {
    local pid=$1
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + SHUTDOWN_TIMEOUT_SECS))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local status=$?
    set +e
    stop_process "$REDIS_PID"
    stop_process "$REDIS_TLS_PID"
    local pid
    for pid in "${REDIS_CLUSTER_PIDS[@]}"; do
        stop_process "$pid"
    done
    for pid in "${CLICKHOUSE_PIDS[@]}"; do
        stop_process "$pid"
    done
    [[ -n $TMP_DIR ]] && rm -rf "$TMP_DIR"
    exit "$status"
}

# --- main -----------------------------------------------------------------------

# `cargo test --workspace` ignores `-p`, so it is only added when the caller
# does not pick packages.
selects_packages() {
    local arg
    for arg in "$@"; do
        case $arg in
        --) return 1 ;;
        -p* | --package | --package=* | --workspace | --all) return 0 ;;
        esac
    done
    return 1
}

main() {
    cd "$(dirname "${BASH_SOURCE[0]}")/.."
    ensure_servers_installed

    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    TMP_DIR=$(mktemp -d "${TMPDIR:-/tmp}/tenancy-test.XXXXXXXX")

    local redis_port redis_tls_port
    read -r redis_port redis_tls_port < <(free_ports 2)
    make_tls_certs
    start_redis "$redis_port"
    start_redis_tls "$redis_tls_port"
    # shellcheck disable=SC2046 # the ports are split on purpose
    start_redis_cluster plain 1 TENANCY_TEST_REDIS_CLUSTER_NODES $(free_ports 12)
    # shellcheck disable=SC2046
    start_redis_cluster tls 0 TENANCY_TEST_REDIS_TLS_CLUSTER_NODES $(free_ports 6)
    # shellcheck disable=SC2046 # six ports, split on purpose
    start_clickhouse $(free_ports 6)

    # Store tests panic instead of skipping when their server is not given.
    export TENANCY_TEST_REQUIRE_SERVICES=1

    local command=(cargo test --all-features)
    selects_packages "$@" || command+=(--workspace)
    command+=("$@")
    log "running: ${command[*]}"
    local status=0
    "${command[@]}" || status=$?
    # A run of everything also checks the published API contract against
    # the server binaries the tests built.
    if [[ $status == 0 && $# == 0 ]]; then
        scripts/contract.sh || status=$?
    fi
    exit "$status"
}

main "$@"
