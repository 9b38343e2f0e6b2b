# Shared by scripts/test.sh and scripts/quickstart.sh: installs the real components Strata is
# tested and demonstrated with, on a fresh Debian machine. Source it; do not run it.

log() { printf '\n==> %s\n' "$*" >&2; }

sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# apt_install PACKAGE WHY: installs a Debian package, trying without refreshing the package
# lists first and refreshing only if that fails.
apt_install() {
    log "installing Debian package: $1 ($2)"
    export DEBIAN_FRONTEND=noninteractive
    if ! sudo_if_needed apt-get install -y -q --no-install-recommends "$1"; then
        sudo_if_needed apt-get update -q
        sudo_if_needed apt-get install -y -q --no-install-recommends "$1"
    fi
}

# Debian's `prometheus` package: Prometheus 2.42 and promtool.
install_prometheus() {
    if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
        return 0
    fi
    apt_install prometheus "Prometheus 2.42 and promtool"
    # Where an init system runs, the package starts a Prometheus service; Strata's tests and
    # the quickstart start their own on free ports and do not need it.
}

# Debian's `chromium`: the headless browser the web UI tests drive (crates/strata/tests/ui.rs).
install_chromium() {
    if command -v chromium >/dev/null 2>&1; then return 0; fi
    apt_install chromium "headless browser for the web UI tests"
}

# `moto[server]` from PyPI: an S3-compatible server for the object storage tests.
install_moto() {
    if command -v moto_server >/dev/null 2>&1; then return 0; fi
    log "installing moto[server] (S3-compatible test server) from PyPI"
    python3 -m pip install --quiet 'moto[server]'
    # pip may put scripts outside PATH (user installs).
    command -v moto_server >/dev/null 2>&1 || export PATH="$HOME/.local/bin:$PATH"
    command -v moto_server >/dev/null 2>&1 || {
        echo "moto_server is still not on PATH after pip install" >&2
        return 1
    }
}

# `openssl`: the TLS tests make their certificates with it.
# Debian's `memcached`: the server the memcached index cache is tested against (the tests
# start their own on free ports; the package's own service is not used).
install_memcached() {
    if command -v memcached >/dev/null 2>&1 || [ -x /usr/bin/memcached ]; then return 0; fi
    apt_install memcached "the memcached index cache tests"
}

install_redis() {
    if ! command -v redis-server >/dev/null 2>&1; then
        apt_install redis-server "the Redis cache tests"
    fi
    # redis-cli assigns the slots of the Redis Cluster tests (redis-server recommends it).
    if ! command -v redis-cli >/dev/null 2>&1; then
        apt_install redis-tools "the Redis Cluster tests"
    fi
}

# Debian's `prometheus-alertmanager`: the Alertmanager the ruler's notifier is tested against
# (crates/rule/tests/notifier.rs starts its own on free ports). Where an init system runs, the
# package starts and enables an Alertmanager service on :9093; it is stopped and disabled so it
# neither takes the port nor runs for nothing.
install_alertmanager() {
    if command -v prometheus-alertmanager >/dev/null 2>&1; then return 0; fi
    apt_install prometheus-alertmanager "the ruler's Alertmanager notifier tests"
    if command -v systemctl >/dev/null 2>&1; then
        # `disable` works without a running systemd too (it only removes the enablement links).
        sudo_if_needed systemctl disable prometheus-alertmanager >/dev/null 2>&1 || true
        if [ -d /run/systemd/system ]; then
            sudo_if_needed systemctl stop prometheus-alertmanager >/dev/null 2>&1 || true
        fi
    fi
}

install_openssl() {
    if command -v openssl >/dev/null 2>&1; then return 0; fi
    apt_install openssl "certificates for the gRPC TLS tests"
}

# Kills every process in the caller's `pids` array, waits for them, and empties it.
stop_pids() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    pids=()
}

# For the benchmark scripts: sets `work` to a fresh temporary directory and `pids` to an
# empty array; on exit, every process in `pids` is stopped and `work` removed.
bench_workdir() {
    work="$(mktemp -d)"
    pids=()
    trap 'stop_pids; rm -rf "$work"' EXIT
}

# A free TCP port on 127.0.0.1.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# For the benchmark scripts: the release build of strata and the benchmark examples
# (bench_gen, bench_compare, ...) with any more cargo arguments given (`-p strata-query`),
# unless NO_BUILD is set.
bench_build() {
    if [ -z "${NO_BUILD:-}" ]; then
        log "building (release): strata and the benchmark examples"
        cargo build --release --locked -p strata -p strata-promql "$@" --examples --bins >&2
    fi
}

# Starts `BIN store` over the FILESYSTEM bucket WORK/data (its keys are <ULID>/<file>), its
# cache in WORK/store and its log in WORK/store.log; appends its pid to the caller's `pids`.
# An OTLP/HTTP sink on a free port (`otlp_port`): answers every POST with an empty protobuf
# body, as a collector does. For measuring what exporting spans costs, not for looking at
# them: the bytes received are only counted, in $work/otlp.log at exit. Also writes
# WORK/tracing.yml, a `--tracing.config` exporting to it with roots sampled at RATIO, and sets
# `tracing_flag` to the flag that reads it.
start_otlp_sink() {
    local work="$1" ratio="$2"
    otlp_port="$(free_port)"
    python3 - "$otlp_port" >"$work/otlp.log" 2>&1 <<'PY' &
import http.server, signal, sys
port = int(sys.argv[1])
total = 0
class Sink(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        global total
        total += len(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
def stop(*_):
    print(f"received {total} bytes of spans", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
http.server.ThreadingHTTPServer(("127.0.0.1", port), Sink).serve_forever()
PY
    pids+=("$!")
    cat >"$work/tracing.yml" <<EOF
type: OTLP
config:
  client_type: http
  endpoint: 127.0.0.1:$otlp_port
  insecure: true
  sampler_type: traceidratiobased
  sampler_param: "$ratio"
EOF
    tracing_flag="--tracing.config-file=$work/tracing.yml"
}

# Sets `store_http`, `store_grpc` and `store_pid`; does not wait for it. NAME (third
# argument, default `store`) names its data directory and log under WORK. STORE_FLAGS: more
# flags for the store (word-split), for example
# --store.caching-bucket.config-file=<file with "type: IN-MEMORY">.
start_bench_store() {
    local bin="$1" work="$2" name="${3:-store}"
    store_http="$(free_port)"
    store_grpc="$(free_port)"
    # shellcheck disable=SC2086
    "$bin" store --objstore.config="$(printf 'type: FILESYSTEM\nconfig:\n  directory: %s\n' "$work/data")" \
        --data-dir="$work/$name" --http-address="127.0.0.1:$store_http" \
        --grpc-address="127.0.0.1:$store_grpc" --log.level=warn ${STORE_FLAGS:-} \
        >"$work/$name.log" 2>&1 &
    store_pid="$!"
    pids+=("$store_pid")
}

# Starts `BIN query` with FLAGS... on free ports, its log in WORK/NAME.log; appends its pid to
# the caller's `pids`. Sets `querier_port` (HTTP), `querier_grpc` and `querier_pid`; does not
# wait for it.
start_bench_querier() {
    local bin="$1" work="$2" name="$3"
    shift 3
    querier_port="$(free_port)"
    querier_grpc="$(free_port)"
    "$bin" query --http-address="127.0.0.1:$querier_port" \
        --grpc-address="127.0.0.1:$querier_grpc" --log.level=warn "$@" >"$work/$name.log" 2>&1 &
    querier_pid="$!"
    pids+=("$querier_pid")
}

# Starts the querier fan-out benchmark's three servers from the strata binary BIN over the
# blocks in WORK/data: a store gateway, a querier fanning out to it, and a querier evaluating
# the same blocks locally (--debug.blocks-dir). Logs go to WORK/*.log; the pids are appended
# to the caller's `pids` array. Sets `store_pid`, `query_pid`, `local_pid`, `query_port`
# (fan-out), `query_grpc` and `local_port`, and returns once all three are ready and the
# fan-out querier has found the gateway. QUERY_FLAGS: more flags for the fan-out querier
# (word-split), for example --query.replica-label=replica to measure the deduplicating path.
start_fanout_bench() {
    local bin="$1" work="$2"
    start_bench_store "$bin" "$work"
    # shellcheck disable=SC2086
    start_bench_querier "$bin" "$work" query --endpoint="127.0.0.1:$store_grpc" ${QUERY_FLAGS:-}
    query_port="$querier_port"
    query_grpc="$querier_grpc"
    query_pid="$querier_pid"
    start_bench_querier "$bin" "$work" local --debug.blocks-dir="$work/data"
    local_port="$querier_port"
    local_pid="$querier_pid"
    wait_ready_port "$store_http" "$work" 600
    wait_ready_port "$query_port" "$work" 600
    wait_ready_port "$local_port" "$work" 600
    wait_querier_store "$query_port"
}

# Waits until the querier on PORT lists a store in /api/v1/stores: it is ready after its
# first probe round, which may not have reached the store yet. At most 60 s, then fails.
wait_querier_store() {
    local port="$1"
    for _ in $(seq 1 300); do
        if curl -fsS "http://127.0.0.1:$port/api/v1/stores" | grep -q '"store"'; then return 0; fi
        sleep 0.2
    done
    echo "querier on :$port found no store in 60 s" >&2
    return 1
}

# Waits until http://127.0.0.1:PORT/-/ready answers, at most TRIES × 0.2 s (default 600);
# otherwise prints the *.log files of LOGDIR and fails.
wait_ready_port() {
    local port="$1" logs="$2" tries="${3:-600}"
    for _ in $(seq 1 "$tries"); do
        if curl -fsS "http://127.0.0.1:$port/-/ready" >/dev/null 2>&1; then return 0; fi
        sleep 0.2
    done
    echo "server on :$port did not become ready" >&2
    cat "$logs"/*.log >&2
    return 1
}
