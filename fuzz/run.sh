#!/usr/bin/env bash
# Builds the codec fuzz targets and runs each for a bounded time, starting from a
# copy of the committed seeds (fuzz/seeds/<target>/ is never written to).
#
# Usage: fuzz/run.sh [seconds-per-target]   (default 30)
# Needs the nightly toolchain; installs cargo-fuzz if it is missing.
set -euo pipefail

secs="${1:-30}"
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
cargo +nightly fuzz build

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
status=0
for target in $(cargo +nightly fuzz list); do
    corpus="$work/corpus/$target"
    artifacts="$work/artifacts/$target/"
    mkdir -p "$corpus" "$artifacts"
    if [ -d "seeds/$target" ]; then
        cp -R "seeds/$target/." "$corpus/"
    fi
    log="$work/$target.log"
    echo "== fuzz $target for ${secs}s"
    if cargo +nightly fuzz run "$target" "$corpus" -- \
        -max_total_time="$secs" -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$artifacts" >"$log" 2>&1; then
        runs="$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}')"
        echo "   ok: ${runs:-?} executions, corpus $(ls "$corpus" | wc -l) inputs"
    else
        status=1
        echo "   FAILED: $target"
        tail -n 60 "$log"
        for f in "$artifacts"*; do
            [ -e "$f" ] || continue
            echo "   crash input $(basename "$f"): $(od -An -tx1 -v "$f" | tr -s ' \n' ' ' | head -c 2000)"
        done
    fi
done
exit "$status"
