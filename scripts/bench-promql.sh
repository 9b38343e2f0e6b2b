#!/usr/bin/env bash
# Side-by-side PromQL benchmark: Strata's query API against real Prometheus 2.42, over the
# same TSDB blocks, comparing every result (floats within 1e-9 relative) and the latency.
#
#   ./scripts/bench-promql.sh [REPEAT]        (default REPEAT=5)
#
# Writes the data set (6,100 series, 12 h at 15 s, samples off whole seconds) with
# `bench_gen`, starts `prometheus --storage.tsdb.path=<blocks>` and
# `strata query --debug.blocks-dir=<blocks>` on free local ports, runs `bench_compare`, and
# prints a Markdown table with the geometric mean of Strata's latency over Prometheus'.
# Both servers are stopped on exit. Needs Debian's `prometheus` package (installed if
# missing).
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/lib.sh
. ./scripts/lib.sh

repeat="${1:-5}"
install_prometheus

log "building (release): strata, bench_gen, bench_compare"
cargo build --release --locked -p strata -p strata-promql --examples --bins >&2

bench_workdir

log "generating blocks in $work/data"
./target/release/examples/bench_gen "$work/data"

prom_port="$(free_port)"
strata_port="$(free_port)"
printf 'global:\n  scrape_interval: 1h\n' >"$work/prometheus.yml"

log "starting Prometheus $(prometheus --version 2>&1 | head -1 | awk '{print $3}') on :$prom_port"
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/data" \
    --web.listen-address="127.0.0.1:$prom_port" --storage.tsdb.retention.time=100y \
    --query.max-samples=500000000 --log.level=warn >"$work/prometheus.log" 2>&1 &
pids+=("$!")

log "starting strata query on :$strata_port"
./target/release/strata query --debug.blocks-dir="$work/data" \
    --http-address="127.0.0.1:$strata_port" --grpc-address=127.0.0.1:0 \
    --log.level=warn >"$work/strata.log" 2>&1 &
pids+=("$!")

wait_ready_port "$prom_port" "$work" 300
wait_ready_port "$strata_port" "$work" 300

# The data starts at 1700000000 s and spans 12 h; query the last 11 h so that every
# window (up to 1 h) is full.
start=1700003600
end=1700043000

log "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
./target/release/examples/bench_compare "http://127.0.0.1:$strata_port" \
    "http://127.0.0.1:$prom_port" "$start" "$end" "$repeat"
