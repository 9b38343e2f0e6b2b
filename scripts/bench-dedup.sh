#!/usr/bin/env bash
# Querier deduplication over two HA replicas (issue 5): the PromQL benchmark data written
# twice by `bench_gen`, replica b scraping 5 s after replica a (BENCH_GEN_SHIFT_MS=5000),
# the blocks of both in one FILESYSTEM bucket with external labels {replica="a"|"b"}, behind
# one `strata store`. Two queriers with --query.replica-label=replica, built from A_BIN and
# B_BIN, answer the benchmark suite; `bench_compare` checks that every answer is identical
# and reports A's latency over B's, then the two queriers' peak RSS.
#
#   A_BIN=path B_BIN=path ./scripts/bench-dedup.sh [REPEAT]   (default REPEAT=5; both
#                                   default to ./target/release/strata; NO_BUILD=1 skips
#                                   the release build)
#
# Every server is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/lib.sh
. ./scripts/lib.sh

repeat="${1:-5}"
bench_build
a_bin="${A_BIN:-./target/release/strata}"
b_bin="${B_BIN:-./target/release/strata}"

bench_workdir
mkdir -p "$work/data"
for r in a b; do
    shift_ms=0
    if [ "$r" = b ]; then shift_ms=5000; fi
    echo "==> replica $r: blocks shifted by $shift_ms ms" >&2
    BENCH_GEN_SHIFT_MS=$shift_ms ./target/release/examples/bench_gen "$work/$r" 2>/dev/null
    for d in "$work/$r"/*/; do
        python3 - "$d/meta.json" "$r" <<'PY'
import json, sys
path, replica = sys.argv[1], sys.argv[2]
meta = json.load(open(path))
meta["thanos"] = {"labels": {"replica": replica}, "downsample": {"resolution": 0}, "source": "sidecar"}
json.dump(meta, open(path, "w"))
PY
        mv "$d" "$work/data/"
    done
done

start_bench_store "$b_bin" "$work"
start_bench_querier "$a_bin" "$work" query-a --endpoint="127.0.0.1:$store_grpc" \
    --query.replica-label=replica
a_port="$querier_port"
a_pid="$querier_pid"
start_bench_querier "$b_bin" "$work" query-b --endpoint="127.0.0.1:$store_grpc" \
    --query.replica-label=replica
b_port="$querier_port"
b_pid="$querier_pid"
wait_ready_port "$store_http" "$work" 600
wait_ready_port "$a_port" "$work" 600
wait_ready_port "$b_port" "$work" 600
wait_querier_store "$a_port"
wait_querier_store "$b_port"

echo "==> machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo "==> the Strata column is A ($a_bin), the Prometheus column B ($b_bin)" >&2
./target/release/examples/bench_compare "http://127.0.0.1:$a_port" \
    "http://127.0.0.1:$b_port" 1700003600 1700043000 "$repeat"
echo "peak RSS: A $(awk '/VmHWM/ {print $2}' "/proc/$a_pid/status") kB, B $(awk '/VmHWM/ {print $2}' "/proc/$b_pid/status") kB"
