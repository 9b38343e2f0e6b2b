#!/usr/bin/env bash
# The store gateway's caching bucket (`--store.caching-bucket.config`) on a real
# S3-compatible server: the PromQL benchmark's blocks (`bench_gen`) uploaded to a moto S3
# bucket, six gateways over it (plain; the chunk cache IN-MEMORY; the chunk cache in a real
# memcached; both the chunk and the index cache in memcached; the same two in a real Redis;
# each remote cache a server of its own), and the same Series calls sent to each in turn (`fanout_profile`, FANOUT_ONLY=1: the select a querier
# makes, merged and converted). Prints, per selection and gateway, the median call time and
# the object storage range reads per call (the gateway's own
# `thanos_objstore_bucket_operations_total{operation="get_range"}`).
#
#   ./scripts/bench-caching-bucket.sh [REPEAT]   (default 21 calls per round, three rounds;
#                                                 NO_BUILD=1 uses the release binaries built)
#
# Every server is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/lib.sh
. ./scripts/lib.sh

repeat="${1:-21}"

bench_build -p strata-query
install_moto
install_memcached
install_redis
bench_workdir

echo "==> generating blocks in $work/data" >&2
./target/release/examples/bench_gen "$work/data" >/dev/null

moto_port="$(free_port)"
moto_server -H 127.0.0.1 -p "$moto_port" >"$work/moto.log" 2>&1 &
pids+=("$!")
for _ in $(seq 1 150); do
    if curl -fsS "http://127.0.0.1:$moto_port/" >/dev/null 2>&1; then break; fi
    sleep 0.2
done
curl -fsS -X PUT "http://127.0.0.1:$moto_port/bench" >/dev/null
objstore="$(printf 'type: S3\nconfig:\n  bucket: bench\n  endpoint: 127.0.0.1:%s\n  region: us-east-1\n  access_key: testing\n  secret_key: testing\n  insecure: true\n  bucket_lookup_type: path\n' "$moto_port")"
echo "==> uploading the blocks to moto S3 on :$moto_port" >&2
./target/release/strata tools bucket upload-blocks --objstore.config="$objstore" \
    --path="$work/data" --label='cluster="bench"' --log.level=warn >&2

printf 'type: IN-MEMORY\nconfig:\n  max_size: 1GB\n' >"$work/caching-bucket.yml"

# wait_tcp PORT: until 127.0.0.1:PORT accepts connections (at most 10 s).
wait_tcp() {
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
}

# start_memcached VAR: a 1 GiB memcached on a free port; sets VAR to its address.
start_memcached() {
    local port user=()
    port="$(free_port)"
    if [ "$(id -u)" = 0 ]; then user=(-u root); fi
    memcached -l 127.0.0.1 -U 0 -m 1024 -p "$port" "${user[@]}" >"$work/memcached-$port.log" 2>&1 &
    pids+=("$!")
    wait_tcp "$port"
    printf -v "$1" '127.0.0.1:%s' "$port"
}
start_memcached mc_chunks
start_memcached mc_all
printf 'type: MEMCACHED\nconfig:\n  addresses: [%s]\n' "$mc_chunks" >"$work/caching-bucket-mc.yml"
printf 'type: MEMCACHED\nconfig:\n  addresses: [%s]\n' "$mc_all" >"$work/caching-bucket-mc-all.yml"
printf 'type: MEMCACHED\nconfig:\n  addresses: [%s]\n' "$mc_all" >"$work/index-cache-mc-all.yml"

# start_redis VAR: a redis-server on a free port, nothing saved; sets VAR to its address.
start_redis() {
    local port
    port="$(free_port)"
    redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
        >"$work/redis-$port.log" 2>&1 &
    pids+=("$!")
    wait_tcp "$port"
    printf -v "$1" '127.0.0.1:%s' "$port"
}
start_redis redis_chunks
start_redis redis_all
printf 'type: REDIS\nconfig:\n  addr: %s\n' "$redis_chunks" >"$work/caching-bucket-redis.yml"
printf 'type: REDIS\nconfig:\n  addr: %s\n' "$redis_all" >"$work/caching-bucket-redis-all.yml"
printf 'type: REDIS\nconfig:\n  addr: %s\n' "$redis_all" >"$work/index-cache-redis-all.yml"

# start_gateway NAME [FLAGS...]: sets gw_grpc_NAME, gw_http_NAME.
start_gateway() {
    local name="$1"
    shift
    local grpc http
    grpc="$(free_port)"
    http="$(free_port)"
    ./target/release/strata store --objstore.config="$objstore" --data-dir="$work/store-$name" \
        --http-address="127.0.0.1:$http" --grpc-address="127.0.0.1:$grpc" --log.level=warn \
        "$@" >"$work/store-$name.log" 2>&1 &
    pids+=("$!")
    wait_ready_port "$http" "$work"
    printf -v "gw_grpc_$name" '%s' "$grpc"
    printf -v "gw_http_$name" '%s' "$http"
}
start_gateway plain
start_gateway cached --store.caching-bucket.config-file="$work/caching-bucket.yml"
start_gateway memcached --store.caching-bucket.config-file="$work/caching-bucket-mc.yml"
start_gateway memcached_all --store.caching-bucket.config-file="$work/caching-bucket-mc-all.yml" \
    --index-cache.config-file="$work/index-cache-mc-all.yml"
start_gateway redis --store.caching-bucket.config-file="$work/caching-bucket-redis.yml"
start_gateway redis_all --store.caching-bucket.config-file="$work/caching-bucket-redis-all.yml" \
    --index-cache.config-file="$work/index-cache-redis-all.yml"

range_reads() {
    curl -fsS "http://127.0.0.1:$1/metrics" |
        awk '/^thanos_objstore_bucket_operations_total\{.*operation="get_range"/ { n += $NF } END { print n + 0 }'
}

echo "==> machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo "| round | selection | gateway | median Series call | range reads per call |"
echo "|---:|---|---|---:|---:|"
for round in 1 2 3; do
    for sel in node_memory_bytes http_requests_total; do
        for name in plain cached memcached memcached_all redis redis_all; do
            grpc_var="gw_grpc_$name"
            http_var="gw_http_$name"
            before="$(range_reads "${!http_var}")"
            ms="$(FANOUT_ONLY=1 BATCH=64 ./target/release/examples/fanout_profile \
                "127.0.0.1:${!grpc_var}" "$sel" 1700003600000 1700043000000 "$repeat" |
                sed -n 's/.*fan-out \([0-9.]*\) ms.*/\1/p')"
            after="$(range_reads "${!http_var}")"
            reads="$(awk -v a="$before" -v b="$after" -v n="$repeat" 'BEGIN { printf "%.1f", (b - a) / n }')"
            echo "| $round | \`$sel\` | $name | $ms ms | $reads |"
        done
    done
done
