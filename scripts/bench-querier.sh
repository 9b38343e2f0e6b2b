#!/usr/bin/env bash
# Querier fan-out overhead (issue 5): the PromQL benchmark suite through
# `strata query --endpoint=<store gateway>` → `strata store` (FILESYSTEM bucket) versus
# `strata query --debug.blocks-dir` evaluating over the same blocks locally. Every result
# must be identical; the table's ratio column is fan-out latency over local latency.
#
#   ./scripts/bench-querier.sh [REPEAT]        (default REPEAT=5; NO_BUILD=1 uses the
#                                               release binaries already built;
#                                               STRATA_BIN=path serves both sides with
#                                               another build of strata, to compare builds;
#                                               TRACING=<ratio> runs the fan-out querier and
#                                               the gateway with --tracing.config exporting
#                                               over OTLP/HTTP to a sink, roots sampled with
#                                               that ratio, to measure what tracing costs)
#
# Uses the data set of scripts/bench-promql.sh (`bench_gen`: 6,100 series, 12 h at 15 s) and
# its comparison tool (`bench_compare`), whose "Strata" column is the fan-out querier and
# whose "Prometheus" column is the local engine here. Every server is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/lib.sh
. ./scripts/lib.sh

repeat="${1:-5}"

bench_build

bench_workdir

echo "==> generating blocks in $work/data" >&2
./target/release/examples/bench_gen "$work/data"

if [ -n "${TRACING:-}" ]; then
    start_otlp_sink "$work" "$TRACING"
    STORE_FLAGS="${STORE_FLAGS:-} $tracing_flag"
    QUERY_FLAGS="${QUERY_FLAGS:-} $tracing_flag"
fi
start_fanout_bench "${STRATA_BIN:-./target/release/strata}" "$work"

start=1700003600
end=1700043000
echo "==> machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
./target/release/examples/bench_compare "http://127.0.0.1:$query_port" \
    "http://127.0.0.1:$local_port" "$start" "$end" "$repeat"
