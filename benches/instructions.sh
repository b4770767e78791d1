#!/usr/bin/env bash
# Instructions per request, counted with callgrind: the same figure on a busy
# machine, so a change's effect shows without noise.
#
#   benches/instructions.sh                 # every front end and path
#   benches/instructions.sh engine off      # the engine alone, as the adapters call it
#   benches/instructions.sh axum api_key    # one front end, some paths
#
# Each path runs twice in process (src/bin/instructions.rs), with LOW and
# HIGH requests after the same warm-up; the difference divided by
# HIGH - LOW is what one request costs, start-up and warm-up cancelled out.
# "over bare" subtracts the bare route of the same front end, measured in
# the same run; "over a pass-through middleware" subtracts the same route
# behind a middleware that does nothing (`noop`), which is what any layer
# costs the framework (axum's `Router::layer` boxes and clones each
# layered route per request). Targets: API key <= 8,000 over bare, HS256 with the
# verified-token cache <= 5,000, every feature off <= 1,500.
#
# Needs valgrind; installs the Debian package when it is missing and the
# script runs as root.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

readonly LOW=200
readonly HIGH=2200
readonly FRONTS=(engine axum actix)
readonly PATHS=(noop off header api_key api_key_write hs256 hs256_uncached)

if ! command -v valgrind >/dev/null; then
    if ((EUID == 0)) && command -v apt-get >/dev/null; then
        apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends valgrind
    else
        echo "valgrind not found: sudo apt-get install valgrind" >&2
        exit 1
    fi
fi

fronts=("${FRONTS[@]}")
paths=("${PATHS[@]}")
if (($# > 0)); then
    fronts=("$1")
    shift
fi
if (($# > 0)); then
    paths=("$@")
fi

cargo build --release --quiet -p tenancy-benches --bin instructions
readonly BIN=target/release/instructions
TMP_DIR=$(mktemp -d)
trap 'rm -rf "$TMP_DIR"' EXIT

# Instructions for `$BIN front path n`.
count() {
    local out="$TMP_DIR/callgrind.out"
    valgrind --tool=callgrind --callgrind-out-file="$out" "$BIN" "$1" "$2" "$3" 2>/dev/null
    awk '/^totals:/ { print $2 }' "$out"
}

# Instructions one request of `front path` takes.
per_request() {
    local low high
    low=$(count "$1" "$2" "$LOW")
    high=$(count "$1" "$2" "$HIGH")
    echo $(((high - low) / (HIGH - LOW)))
}

printf '| front end | path | instructions per request | over bare | over a pass-through middleware |\n'
printf '|---|---|---:|---:|---:|\n'
for front in "${fronts[@]}"; do
    bare=$(per_request "$front" bare)
    noop=$(per_request "$front" noop)
    printf '| %s | bare | %d | | |\n' "$front" "$bare"
    for path in "${paths[@]}"; do
        if [[ $path == noop ]]; then
            n=$noop
        else
            n=$(per_request "$front" "$path")
        fi
        printf '| %s | %s | %d | %+d | %+d |\n' "$front" "$path" "$n" $((n - bare)) $((n - noop))
    done
done
