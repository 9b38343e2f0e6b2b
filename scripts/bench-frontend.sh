#!/usr/bin/env bash
# Query frontend: the PromQL benchmark suite through `strata query-frontend` in front of a
# querier versus the same querier asked directly. Every answer must be identical; the
# table's ratio column is the frontend's latency over the querier's.
#
#   ./scripts/bench-frontend.sh [REPEAT]     (default REPEAT=5; NO_BUILD=1 uses the release
#                                             binaries already built)
#
# Three frontends over one querier (`strata query --debug.blocks-dir` over the data set of
# scripts/bench-promql.sh: 6,100 series, 12 h at 15 s), run one after the other:
#   1. `--query-range.split-interval=24h`, no cache: the 11 h range queries are one part, so
#      this is the cost of the extra HTTP hop (the querier's answer is passed on as it came);
#   2. `--query-range.split-interval=1h`, no cache: each range query is cut into 12 parts,
#      run 14 at once and joined (parsing and writing the JSON of every part);
#   3. the same with an IN-MEMORY results cache: after bench_compare's warm-up run every
#      part is answered from the cache.
# Prints each run's table and the frontend's peak RSS. Every server is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/lib.sh
. ./scripts/lib.sh

repeat="${1:-5}"
bench_build
bench_workdir
strata=./target/release/strata

echo "==> generating blocks in $work/data" >&2
./target/release/examples/bench_gen "$work/data"

start_bench_querier "$strata" "$work" local --debug.blocks-dir="$work/data"
local_port="$querier_port"
wait_ready_port "$local_port" "$work" 600

# Aligned to the suite's 60 s step, so that the frontend's step alignment changes nothing.
start=1700003580
end=1700043000
cache='type: IN-MEMORY
config:
  max_size: 512MB'

# Starts a frontend over the querier with the flags given; sets fe_port and fe_pid.
start_frontend() {
    fe_port="$(free_port)"
    "$strata" query-frontend --http-address="127.0.0.1:$fe_port" --log.level=warn \
        --query-frontend.downstream-url="http://127.0.0.1:$local_port" "$@" \
        >"$work/frontend-$fe_port.log" 2>&1 &
    fe_pid="$!"
    pids+=("$fe_pid")
    wait_ready_port "$fe_port" "$work" 300
}

for run in 1 2 3; do
    case "$run" in
        1) what="one part per query (split 24h), no cache"
           start_frontend --query-range.split-interval=24h ;;
        2) what="12 parts per query (split 1h), no cache"
           start_frontend --query-range.split-interval=1h ;;
        3) what="12 parts per query (split 1h), in-memory results cache"
           start_frontend --query-range.split-interval=1h --query-range.response-cache-config="$cache" ;;
    esac
    echo "==> run $run: $what" >&2
    echo "==> machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
    ./target/release/examples/bench_compare "http://127.0.0.1:$fe_port" \
        "http://127.0.0.1:$local_port" "$start" "$end" "$repeat"
    echo "frontend peak RSS: $(awk '/VmHWM/ {printf "%.1f MiB", $2 / 1024}' "/proc/$fe_pid/status")"
    kill "$fe_pid" 2>/dev/null || true
    wait "$fe_pid" 2>/dev/null || true
done
