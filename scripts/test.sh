#!/usr/bin/env bash
# Installs what Strata's tests need on a fresh Debian machine, then runs every test.
#
#   ./scripts/test.sh            everything: fmt, clippy, doc links, unit, integration and e2e
#                                tests, fuzz smoke
#   FUZZ_SECONDS=0 ./scripts/test.sh   skip the fuzz smoke run
#
# Tests use real components, installed here:
#   - Debian's `prometheus` package: Prometheus 2.42 and promtool (block cross-checks)
#   - `moto[server]` from PyPI: an S3-compatible server (object storage tests)
#   - Debian's `chromium`: headless browser for the web UI tests (STRATA_REQUIRE_CHROMIUM=1 makes
#     them fail instead of skipping when it is missing)
#   - Debian's `openssl`: certificates for the gRPC TLS tests
#   - Debian's `memcached`: the memcached index cache tests
#   - Debian's `redis-server` (with `redis-cli` from `redis-tools`): the Redis cache tests,
#     TLS, Sentinel and Cluster included
#   - Debian's `prometheus-alertmanager`: the ruler's notifier tests
#   - cargo-fuzz (fuzz smoke run; scripts/fuzz.sh installs it)
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/lib.sh
. ./scripts/lib.sh

install_prometheus
install_moto
install_chromium
install_openssl
install_memcached
install_redis
install_alertmanager
# The web UI tests skip without chromium unless this is set; here they must run.
export STRATA_REQUIRE_CHROMIUM=1

# A CI run builds once from scratch: incremental compilation only adds gigabytes of cache that
# is never reused, and CI machines have run out of disk with it.
export CARGO_INCREMENTAL=0

log "toolchain: $(cargo --version), $(rustc --version)"
log "disk: $(df -h . | tail -1 | awk '{print $4 " free of " $2}')"
log "promtool: $(promtool --version 2>&1 | head -1)"
log "chromium: $(chromium --version 2>/dev/null | head -1)"
log "memcached: $(/usr/bin/memcached -V 2>/dev/null || memcached -V)"
log "redis: $(redis-server --version | head -1)"

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy (-D warnings)"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "cargo doc (-D warnings: broken doc links fail)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace --locked

log "cargo test (unit, integration, e2e)"
cargo test --workspace --locked

fuzz_seconds="${FUZZ_SECONDS:-15}"
if [ "$fuzz_seconds" != "0" ]; then
    log "fuzz smoke run (${fuzz_seconds}s per target)"
    ./scripts/fuzz.sh "$fuzz_seconds"
fi

log "all tests passed"
