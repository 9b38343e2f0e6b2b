#!/usr/bin/env bash
# What `--tracing.config` costs: two fan-out stacks over the same blocks (the data set of
# scripts/bench-querier.sh), one store gateway and querier exporting spans over OTLP/HTTP to a
# sink, the other without tracing. The fan-out benchmark's small and instant queries, where
# a fixed cost per query shows most, alternate between the two queriers
# (scripts/querier-small-ratios.py), twice, each time with the CPU per query of both queriers
# and of one of the gateways.
#
#   ./scripts/bench-tracing.sh [RUNS]     (default RUNS=41; TRACING=<ratio>, default 1: the
#                                          share of traces sampled, 1 exporting every
#                                          query's spans, 0 sampling none; NO_BUILD=1 uses
#                                          the release binaries already built)
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/lib.sh
. ./scripts/lib.sh

runs="${1:-41}"
ratio="${TRACING:-1}"
bin=./target/release/strata

bench_build
bench_workdir

echo "==> generating blocks in $work/data" >&2
./target/release/examples/bench_gen "$work/data"

start_otlp_sink "$work" "$ratio"

STORE_FLAGS="$tracing_flag" start_bench_store "$bin" "$work" store-on
on_store_pid="$store_pid" on_store_http="$store_http" on_store_grpc="$store_grpc"
STORE_FLAGS="" start_bench_store "$bin" "$work" store-off
off_store_pid="$store_pid" off_store_http="$store_http" off_store_grpc="$store_grpc"
start_bench_querier "$bin" "$work" query-on --endpoint="127.0.0.1:$on_store_grpc" "$tracing_flag"
on_port="$querier_port" on_pid="$querier_pid"
start_bench_querier "$bin" "$work" query-off --endpoint="127.0.0.1:$off_store_grpc"
off_port="$querier_port" off_pid="$querier_pid"
for p in "$on_store_http" "$off_store_http" "$on_port" "$off_port"; do
    wait_ready_port "$p" "$work" 600
done
wait_querier_store "$on_port"
wait_querier_store "$off_port"

echo "==> machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo "==> traced (sampled ratio $ratio) over untraced; CPU: the traced stack's gateway" >&2
python3 scripts/querier-small-ratios.py --absolute --gateway-pid "$on_store_pid" \
    --querier-pids "$on_pid,$off_pid" \
    "http://127.0.0.1:$on_port" "http://127.0.0.1:$off_port" "$runs"
echo "==> untraced over traced; CPU: the untraced stack's gateway" >&2
python3 scripts/querier-small-ratios.py --absolute --gateway-pid "$off_store_pid" \
    --querier-pids "$off_pid,$on_pid" \
    "http://127.0.0.1:$off_port" "http://127.0.0.1:$on_port" "$runs"
