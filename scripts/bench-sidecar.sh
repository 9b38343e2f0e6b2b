#!/usr/bin/env bash
# The sidecar's memory for a large Series answer (issue 6): Prometheus 2.42 over the PromQL
# benchmark's blocks (`bench_gen`: 6,100 series, 12 h), `strata sidecar` next to it, and bare
# Series calls for `http_requests_total` over 11 h (5,000 series, about 34 MB of frames) with
# `fanout_profile` (`HOPS=1`: frames received, nothing decoded). Run twice: with external
# labels no series carries (answers streamed through the sidecar's `Reorder`) and with one
# every series carries (`job`: answers held whole and sorted, as Thanos' sidecar does for
# every answer). Prints, per run, the frame timings and the sidecar's peak RSS.
#
#   ./scripts/bench-sidecar.sh        (NO_BUILD=1 uses the release binaries already built)
#
# Every process is stopped on exit. Needs Debian's `prometheus` package (installed if
# missing).
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/lib.sh
. ./scripts/lib.sh

install_prometheus
bench_build -p strata-query

bench_workdir

log "generating blocks in $work/data"
./target/release/examples/bench_gen "$work/data" >/dev/null

peak_mib() { awk '/VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }

# run NAME EXTERNAL_LABELS_YAML
run() {
    local name="$1" ext="$2" dir="$work/$1"
    mkdir -p "$dir"
    cp -r "$work/data" "$dir/tsdb"
    printf 'global:\n  scrape_interval: 1h\n  external_labels:\n%s\n' "$ext" >"$dir/prometheus.yml"
    local prom_port sidecar_grpc sidecar_http prom sidecar
    prom_port="$(free_port)"
    sidecar_grpc="$(free_port)"
    sidecar_http="$(free_port)"
    prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/tsdb" \
        --storage.tsdb.retention.time=100y --web.listen-address="127.0.0.1:$prom_port" \
        --log.level=warn >"$dir/prometheus.log" 2>&1 &
    prom="$!"
    pids+=("$prom")
    ./target/release/strata sidecar --prometheus.url="http://127.0.0.1:$prom_port" \
        --tsdb.path="$dir/tsdb" --grpc-address="127.0.0.1:$sidecar_grpc" \
        --http-address="127.0.0.1:$sidecar_http" --log.level=warn >"$dir/sidecar.log" 2>&1 &
    sidecar="$!"
    pids+=("$sidecar")
    wait_ready_port "$sidecar_http" "$dir" 300
    log "$name: sidecar idle RSS $(awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$sidecar/status") MiB"
    BATCH=64 HOPS=1 ./target/release/examples/fanout_profile "127.0.0.1:$sidecar_grpc" \
        http_requests_total 1700003600000 1700043000000 3 | tail -1
    echo "$name: sidecar peak RSS $(peak_mib "$sidecar") MiB, Prometheus peak RSS $(peak_mib "$prom") MiB"
    kill "$sidecar" "$prom"
    wait "$sidecar" "$prom" 2>/dev/null || true
}

echo "==> machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), load $(cut -d' ' -f1-3 /proc/loadavg)"
run streamed "$(printf '    region: eu1\n    replica: a')"
run whole "$(printf '    job: overridden\n    replica: a')"
