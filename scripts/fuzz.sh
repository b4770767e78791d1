#!/usr/bin/env bash
# Runs every fuzz target (cargo-fuzz, libFuzzer) for a given time each:
#
#   scripts/fuzz.sh                 # 300 seconds per target
#   scripts/fuzz.sh 60              # 60 seconds per target
#   scripts/fuzz.sh 600 jwt api_key # only these targets
#
# The seed corpora are in fuzz/corpus/<target>/; what a run adds stays in a
# temporary copy, so the committed seeds change only by hand. A crash stops
# the script with the failing input under fuzz/artifacts/<target>/.
# Installs cargo-fuzz with cargo when it is missing; builds with the
# machine's stable toolchain (RUSTC_BOOTSTRAP lets it take libFuzzer's
# nightly flags).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds=${1:-300}
shift || true
targets=("$@")
if ((${#targets[@]} == 0)); then
    mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^tenancy-fuzz$')
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "scripts/fuzz.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for target in "${targets[@]}"; do
    echo "==> $target: ${seconds}s" >&2
    mkdir -p "$work/$target"
    cp -r "fuzz/corpus/$target/." "$work/$target/"
    status=0
    cargo fuzz run --fuzz-dir fuzz "$target" "$work/$target" -- \
        -max_total_time="$seconds" -max_len=16384 -print_final_stats=1 \
        >"$work/$target.log" 2>&1 || status=$?
    grep -E '^(#[0-9]+ *DONE|stat::number_of_executed_units|stat::peak_rss_mb|SUMMARY)' \
        "$work/$target.log" >&2 || true
    if ((status != 0)); then
        tail -n 40 "$work/$target.log" >&2
        echo "scripts/fuzz.sh: $target failed (exit $status); inputs in fuzz/artifacts/$target/" >&2
        exit 1
    fi
done
echo "scripts/fuzz.sh: ${#targets[@]} targets, ${seconds}s each, no crash" >&2
