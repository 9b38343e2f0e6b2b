#!/usr/bin/env bash
# Compares strata builds on the querier fan-out benchmark (issue 5), alternating them so
# that the slow drifts of a shared machine hit every build alike.
#
#   ./scripts/querier-ab.sh ROUNDS BIN [BIN ...]
#   e.g. ./scripts/querier-ab.sh 2 /tmp/strata-before ./target/release/strata
#
# For each round and each build in turn: starts a store gateway and two queriers from that
# build, as scripts/bench-querier.sh does (fan-out through the gateway, and the engine over
# the same blocks locally), then runs scripts/querier-small-ratios.py twice: the nine small
# and instant queries (21 runs each, with the CPU time per query of the gateway and of each
# querier) and five large range queries (5 runs each, with the gateway's). Each build serves
# both sides, so a change that speeds up the engine moves both. Needs
# ./target/release/examples/bench_gen (`cargo build --release -p strata-promql --examples`).
# Every server is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/lib.sh
. ./scripts/lib.sh

if [ $# -lt 2 ]; then
    sed -n '2,15p' "$0" >&2
    exit 2
fi
rounds="$1"
shift
for bin in "$@"; do
    if [ ! -x "$bin" ]; then
        echo "querier-ab: $bin is not an executable file" >&2
        exit 2
    fi
done
if [ ! -x ./target/release/examples/bench_gen ]; then
    echo "querier-ab: build bench_gen first: cargo build --release -p strata-promql --examples" >&2
    exit 2
fi

bench_workdir

echo "==> generating blocks in $work/data" >&2
./target/release/examples/bench_gen "$work/data" >/dev/null

for round in $(seq 1 "$rounds"); do
    for bin in "$@"; do
        rm -rf "$work/store" "$work"/*.log
        start_fanout_bench "$bin" "$work"
        fanout="http://127.0.0.1:$query_port"
        local_url="http://127.0.0.1:$local_port"
        echo "==> round $round: $bin"
        ./scripts/querier-small-ratios.py --gateway-pid "$store_pid" \
            --querier-pids "$query_pid,$local_pid" "$fanout" "$local_url" 21 |
            sed 's/^/    small  /'
        ./scripts/querier-small-ratios.py --large --gateway-pid "$store_pid" "$fanout" "$local_url" 5 |
            sed 's/^/    large  /'
        stop_pids
    done
done
