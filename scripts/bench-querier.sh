#!/usr/bin/env bash
# Querier fan-out overhead (issue 5): the PromQL benchmark suite through
# `strata query --endpoint=<store gateway>` → `strata store` (FILESYSTEM bucket) versus
# `strata query --debug.blocks-dir` evaluating over the same blocks locally. Every result
# must be identical; the table's ratio column is fan-out latency over local latency.
#
#   ./scripts/bench-querier.sh [REPEAT]        (default REPEAT=5; NO_BUILD=1 uses the
#                                               release binaries already built)
#
# Uses the data set of scripts/bench-promql.sh (`bench_gen`: 6,100 series, 12 h at 15 s) and
# its comparison tool (`bench_compare`), whose "Strata" column is the fan-out querier and
# whose "Prometheus" column is the local engine here. Every server is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/lib.sh
. ./scripts/lib.sh

repeat="${1:-5}"

if [ -z "${NO_BUILD:-}" ]; then
    echo "==> building (release): strata, bench_gen, bench_compare" >&2
    cargo build --release --locked -p strata -p strata-promql --examples --bins >&2
fi

work="$(mktemp -d)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

echo "==> generating blocks in $work/data" >&2
./target/release/examples/bench_gen "$work/data"

local_port="$(free_port)"
store_http="$(free_port)"
store_grpc="$(free_port)"
query_port="$(free_port)"
query_grpc="$(free_port)"

# The block directory is the bucket: a FILESYSTEM bucket's keys are <ULID>/<file>.
./target/release/strata store --objstore.config="$(printf 'type: FILESYSTEM\nconfig:\n  directory: %s\n' "$work/data")" \
    --data-dir="$work/store" --http-address="127.0.0.1:$store_http" \
    --grpc-address="127.0.0.1:$store_grpc" --log.level=warn >"$work/store.log" 2>&1 &
pids+=("$!")
./target/release/strata query --endpoint="127.0.0.1:$store_grpc" \
    --http-address="127.0.0.1:$query_port" --grpc-address="127.0.0.1:$query_grpc" \
    --log.level=warn >"$work/query.log" 2>&1 &
pids+=("$!")
./target/release/strata query --debug.blocks-dir="$work/data" \
    --http-address="127.0.0.1:$local_port" --grpc-address=127.0.0.1:0 \
    --log.level=warn >"$work/local.log" 2>&1 &
pids+=("$!")

wait_ready_port "$store_http" "$work" 600
wait_ready_port "$query_port" "$work" 600
wait_ready_port "$local_port" "$work" 600
wait_querier_store "$query_port"

start=1700003600
end=1700043000
echo "==> machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
./target/release/examples/bench_compare "http://127.0.0.1:$query_port" \
    "http://127.0.0.1:$local_port" "$start" "$end" "$repeat"
