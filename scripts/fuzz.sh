#!/usr/bin/env bash
# Builds the fuzz targets (fuzz/, cargo-fuzz) and runs each for a while.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]    default: 30 s, every target
#
# Each target starts from its committed seeds (fuzz/corpus/TARGET) and the
# inputs earlier runs kept (fuzz/target/corpus/TARGET, not committed). A
# failing input lands in fuzz/artifacts/TARGET/; minimise it with
# `cargo fuzz tmin TARGET FILE`, fix the bug, and commit the input to
# fuzz/regressions/TARGET/, which `cargo test` replays (see docs/fuzzing.md).
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`) and a nightly toolchain;
# without one, the stable compiler is told to allow nightly features
# (RUSTC_BOOTSTRAP=1). FUZZ_SANITIZER picks the sanitizer (default none:
# the fuzzed crates forbid unsafe code, and an address-sanitised build of
# wasmtime, which the gateway links, costs minutes for nothing).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-30}
shift || true
sanitizer=${FUZZ_SANITIZER:-none}

if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    cargo=(cargo +nightly)
else
    export RUSTC_BOOTSTRAP=1
    cargo=(cargo)
fi
if ! "${cargo[@]}" fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is missing: cargo install cargo-fuzz" >&2
    exit 2
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <("${cargo[@]}" fuzz list)
fi

started=$(date +%s)
if [ ${#targets[@]} -eq 1 ]; then
    "${cargo[@]}" fuzz build --sanitizer "$sanitizer" "${targets[0]}"
else
    "${cargo[@]}" fuzz build --sanitizer "$sanitizer"
fi
built=$(date +%s)
echo "built in $((built - started)) s"

mkdir -p fuzz/target/logs
failed=()
for target in "${targets[@]}"; do
    mkdir -p "fuzz/target/corpus/$target" "fuzz/artifacts/$target"
    extra=()
    if [ -f "fuzz/dict/$target.dict" ]; then
        extra+=("-dict=fuzz/dict/$target.dict")
    fi
    log="fuzz/target/logs/$target.log"
    # The first folder receives new inputs; the seeds stay as committed.
    if "${cargo[@]}" fuzz run --sanitizer "$sanitizer" "$target" \
        "fuzz/target/corpus/$target" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 \
        -artifact_prefix="fuzz/artifacts/$target/" "${extra[@]}" >"$log" 2>&1; then
        status=ok
    else
        status=FAILED
        failed+=("$target")
    fi
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    corpus=$(find "fuzz/target/corpus/$target" "fuzz/corpus/$target" -type f | wc -l)
    printf '%-12s %-6s %12s execs  %6s inputs in corpus\n' "$target" "$status" "${execs:-?}" "$corpus"
done
echo "total $(( $(date +%s) - started )) s (build $((built - started)) s)"
if [ ${#failed[@]} -gt 0 ]; then
    echo "failed: ${failed[*]}; logs in fuzz/target/logs/, inputs in fuzz/artifacts/" >&2
    exit 1
fi
