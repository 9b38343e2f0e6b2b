#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a short while, one after the other.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]     (default 15)
#
# Installs cargo-fuzz if missing, (re)writes the seed corpora, builds all targets once, then
# fuzzes each target for the given time. Exits non-zero if any target crashes (a panic, a
# sanitizer report, a timeout or an out-of-memory), after printing the target, the crash
# artifact to reproduce it with, and the end of the fuzzer's log.
#
# Safe to run repeatedly: corpora grow across runs (fuzz/corpus, git-ignored) and builds are
# incremental (fuzz/target). Needs a nightly toolchain for the sanitizer flags; without one,
# stable is used with RUSTC_BOOTSTRAP=1. Runs one fuzzer at a time, so two cores are enough.
set -euo pipefail

secs="${1:-15}"
if ! [[ "$secs" =~ ^[0-9]+$ ]] || [ "$secs" -eq 0 ]; then
    echo "usage: $0 [seconds-per-target]" >&2
    exit 2
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if command -v rustup >/dev/null 2>&1 && rustup run nightly rustc --version >/dev/null 2>&1; then
    cargo=(cargo +nightly)
else
    # cargo-fuzz passes -Z flags (sanitizers, coverage passes) that only nightly accepts.
    export RUSTC_BOOTSTRAP=1
    cargo=(cargo)
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

echo "fuzz.sh: writing seed corpora"
"${cargo[@]}" run --quiet --manifest-path fuzz/Cargo.toml --features seedgen --bin seeds \
    -- fuzz/corpus

echo "fuzz.sh: building fuzz targets"
"${cargo[@]}" fuzz build

logs="fuzz/target/fuzz-logs"
mkdir -p "$logs"
failed=()
for src in fuzz/fuzz_targets/*.rs; do
    target="$(basename "$src" .rs)"
    args=(-max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1)
    case "$target" in
        # A flags byte and at most 32 four-byte edits (see fuzz/src/mutate.rs); longer inputs
        # are ignored past that point, so letting them grow only wastes executions.
        *_mutate) args+=(-max_len=129) ;;
    esac
    if [ -f "fuzz/dicts/$target.dict" ]; then
        args+=(-dict="fuzz/dicts/$target.dict")
    fi
    mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target"
    marker="$logs/$target.start"
    touch "$marker"
    log="$logs/$target.log"
    if "${cargo[@]}" fuzz run "$target" "fuzz/corpus/$target" -- "${args[@]}" >"$log" 2>&1; then
        # "#123 DONE cov: 1 ft: 2 corp: 3/4b lim: 5 exec/s: 6 rss: 7Mb"
        stats="$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n1 |
            sed -E 's/^#([0-9]+)[[:space:]]+DONE[[:space:]]+/\1 runs, /')"
        printf 'fuzz.sh: %-22s ok   %s\n' "$target" "${stats:-(no stats)}"
    else
        failed+=("$target")
        printf 'fuzz.sh: %-22s FAILED\n' "$target"
        artifacts="$(find "fuzz/artifacts/$target" -type f -newer "$marker" 2>/dev/null || true)"
        if [ -n "$artifacts" ]; then
            echo "  crash artifact(s):"
            echo "$artifacts" | sed 's/^/    /'
            echo "  reproduce: cargo +nightly fuzz run $target <artifact>"
        fi
        # The panic message and the top of its backtrace, or the sanitizer's / libFuzzer's
        # report (timeouts, out-of-memory); the whole output stays in the log.
        echo "  report (full output in $log):"
        { grep -m1 -A24 -E "panicked at|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)" "$log" ||
            tail -n 30 "$log"; } | grep -vE '^[[:space:]]+at /rustc/' | head -n 24 | sed 's/^/    /'
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz.sh: crashes in: ${failed[*]}"
    exit 1
fi
echo "fuzz.sh: all targets ran ${secs}s without a crash"
