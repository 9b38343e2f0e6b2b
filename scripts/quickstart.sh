#!/usr/bin/env bash
# Builds Strata and runs a whole local stack on a FILESYSTEM bucket, on a fresh Debian machine.
#
#   ./scripts/quickstart.sh                 build, start the stack, show it working, keep it up
#   QUICKSTART_EXIT=1 ./scripts/quickstart.sh   the same, then stop everything and exit
#   QUICKSTART_DIR=/tmp/x ./scripts/quickstart.sh
#
# The stack, all on 127.0.0.1:
#   Prometheus 2.42 (Debian package)  :19090  12h of demo history (written by promtool) plus
#                                             live scrapes of itself and of every Strata process
#   strata sidecar                    :10911 gRPC, :10912 HTTP  Store API over Prometheus, ships
#                                             its 2h blocks to the bucket
#   strata store                      :10921 gRPC, :10922 HTTP  the bucket, through the Store API
#   strata compact --wait             :10932 HTTP               compacts and downsamples the bucket
#   strata query                      :10901 gRPC, :10902 HTTP  the global view (point Grafana here)
#   strata rule                       :10941 gRPC, :10942 HTTP  rules over the querier (stateless:
#                                             recorded series written back to Prometheus)
#   strata query-frontend             :10952 HTTP               range queries split by day, cached
# Re-running is safe: everything lives under $QUICKSTART_DIR and is replaced.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"

# shellcheck source=scripts/lib.sh
. ./scripts/lib.sh

work="${QUICKSTART_DIR:-$repo/.strata-quickstart}"

install_prometheus
for cmd in curl python3; do
    command -v "$cmd" >/dev/null 2>&1 || apt_install "$cmd" "used to show the stack at work"
done

for port in 19090 10901 10902 10911 10912 10921 10922 10932 10942 10952; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "port $port is in use on 127.0.0.1; stop what uses it (a previous quickstart?) and retry" >&2
        exit 1
    fi
done

log "building strata (release; the first build takes a few minutes)"
cargo build --release --locked -p strata
strata="$repo/target/release/strata"

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

rm -rf "$work"
mkdir -p "$work/bucket" "$work/prometheus" "$work/logs"
cat > "$work/objstore.yml" <<YAML
type: FILESYSTEM
config:
  directory: $work/bucket
YAML

log "writing 12h of demo history with promtool (3 instances, a counter and a gauge, 15s scrapes)"
start=$(( $(date +%s) - 13 * 3600 ))
awk -v start="$start" 'BEGIN {
    print "# HELP demo_http_requests Requests served.";
    print "# TYPE demo_http_requests counter";
    for (i = 0; i < 3; i++) for (c = 0; c < 3; c++) {
        code = (c == 0 ? 200 : (c == 1 ? 404 : 500)); v = 0;
        for (k = 0; k < 2880; k++) {
            v += (k * 7 + i * 13 + c) % 11;
            printf "demo_http_requests_total{job=\"demo\",instance=\"demo-%d:9100\",code=\"%d\"} %d %d.%03d\n", i, code, v, start + k * 15, (i * 97) % 1000;
        }
    }
    print "# HELP demo_temperature_celsius A gauge.";
    print "# TYPE demo_temperature_celsius gauge";
    for (i = 0; i < 3; i++) for (k = 0; k < 2880; k++)
        printf "demo_temperature_celsius{job=\"demo\",instance=\"demo-%d:9100\"} %.2f %d.%03d\n", i, 20 + 5 * sin(k / 200.0 + i), start + k * 15, (i * 97) % 1000;
    print "# EOF";
}' > "$work/demo.om"
# Into Prometheus' own data directory: Prometheus serves them, and the sidecar ships them.
promtool tsdb create-blocks-from openmetrics "$work/demo.om" "$work/prometheus" >/dev/null
rm -f "$work/demo.om"

# A rule file, so that the querier's /api/v1/rules and /api/v1/alerts have something to show
# (Prometheus evaluates it; the sidecar serves it through the Rules API).
cat > "$work/rules.yml" <<YAML
groups:
  - name: quickstart
    rules:
      - record: job:up:sum
        expr: sum by (job) (up)
      - alert: StrataComponentDown
        expr: up{job="strata"} == 0
        for: 1m
        labels:
          severity: page
        annotations:
          summary: "{{ \$labels.instance }} is down"
YAML

# The ruler's own rules, evaluated over the querier's global view; what they record is
# remote-written back to Prometheus.
cat > "$work/ruler-rules.yml" <<YAML
groups:
  - name: quickstart-ruler
    rules:
      - record: job:up:count
        expr: count by (job) (up)
      - alert: StrataQuickstartRulerUp
        expr: vector(1)
        labels:
          severity: none
        annotations:
          summary: "the ruler evaluates rules over {{ \$externalURL }}"
YAML
cat > "$work/remote-write.yml" <<YAML
remote_write:
  - url: http://127.0.0.1:19090/api/v1/write
    name: quickstart-prometheus
YAML

cat > "$work/prometheus.yml" <<YAML
global:
  scrape_interval: 15s
  evaluation_interval: 15s
  external_labels:
    cluster: quickstart
    replica: "0"
rule_files: ["$work/rules.yml"]
scrape_configs:
  - job_name: prometheus
    static_configs: [{targets: ["127.0.0.1:19090"]}]
  - job_name: strata
    static_configs:
      - targets: ["127.0.0.1:10912", "127.0.0.1:10922", "127.0.0.1:10932", "127.0.0.1:10902", "127.0.0.1:10942"]
YAML

spawn() {
    local name="$1"; shift
    "$@" >"$work/logs/$name.log" 2>&1 &
    pids+=("$!")
}

wait_ready() {
    local name="$1" url="$2"
    for _ in $(seq 1 120); do
        if curl -fsS -o /dev/null "$url" 2>/dev/null; then return 0; fi
        sleep 0.5
    done
    echo "$name did not become ready at $url; its log:" >&2
    tail -n 30 "$work/logs/$name.log" >&2
    exit 1
}

log "starting Prometheus (:19090)"
spawn prometheus prometheus --config.file="$work/prometheus.yml" \
    --storage.tsdb.path="$work/prometheus" --storage.tsdb.retention.time=15d \
    --storage.tsdb.min-block-duration=2h --storage.tsdb.max-block-duration=2h \
    --web.listen-address=127.0.0.1:19090 --web.enable-lifecycle \
    --web.enable-remote-write-receiver
wait_ready prometheus http://127.0.0.1:19090/-/ready

log "starting strata sidecar (:10911 gRPC, :10912 HTTP)"
spawn sidecar "$strata" sidecar --prometheus.url=http://127.0.0.1:19090 \
    --tsdb.path="$work/prometheus" --objstore.config-file="$work/objstore.yml" \
    --grpc-address=127.0.0.1:10911 --http-address=127.0.0.1:10912
wait_ready sidecar http://127.0.0.1:10912/-/ready

log "waiting for the sidecar to ship the demo blocks"
for _ in $(seq 1 120); do
    n=$(find "$work/bucket" -name meta.json 2>/dev/null | wc -l)
    [ "$n" -ge 6 ] && break
    sleep 0.5
done

log "starting strata store (:10921 gRPC, :10922 HTTP)"
spawn store "$strata" store --objstore.config-file="$work/objstore.yml" \
    --data-dir="$work/store" --sync-block-duration=30s --consistency-delay=0s \
    --grpc-address=127.0.0.1:10921 --http-address=127.0.0.1:10922
wait_ready store http://127.0.0.1:10922/-/ready

log "starting strata compact --wait (:10932 HTTP)"
spawn compact "$strata" compact --wait --wait-interval=1m \
    --objstore.config-file="$work/objstore.yml" --data-dir="$work/compact" \
    --consistency-delay=0s --http-address=127.0.0.1:10932
wait_ready compact http://127.0.0.1:10932/-/ready

log "starting strata query (:10901 gRPC, :10902 HTTP)"
spawn query "$strata" query --endpoint=127.0.0.1:10911 --endpoint=127.0.0.1:10921 \
    --endpoint=127.0.0.1:10941 \
    --query.replica-label=replica \
    --grpc-address=127.0.0.1:10901 --http-address=127.0.0.1:10902
wait_ready query http://127.0.0.1:10902/-/ready

log "starting strata rule (:10941 gRPC, :10942 HTTP)"
spawn rule "$strata" rule --query=127.0.0.1:10902 --rule-file="$work/ruler-rules.yml" \
    --remote-write.config-file="$work/remote-write.yml" --eval-interval=15s \
    --label='ruler="quickstart"' --alert.query-url=http://127.0.0.1:10902 \
    --data-dir="$work/rule" --grpc-address=127.0.0.1:10941 --http-address=127.0.0.1:10942
wait_ready rule http://127.0.0.1:10942/-/ready

log "starting strata query-frontend (:10952 HTTP) in front of the querier"
spawn query-frontend "$strata" query-frontend --query-frontend.downstream-url=http://127.0.0.1:10902 \
    --query-range.split-interval=1h \
    --query-range.response-cache-config='type: IN-MEMORY
config:
  max_size: 256MB' \
    --http-address=127.0.0.1:10952
wait_ready query-frontend http://127.0.0.1:10952/-/ready

show() {
    printf '\n$ curl %s\n' "$1"
    local out
    out=$(curl -fsS "$1" | python3 -m json.tool)
    # Cut without a pipe: `head` closing it early would fail the script under pipefail.
    head -n "${2:-40}" <<<"$out"
}

log "the stores the querier sees"
sleep 6 # one endpoint probe round
show "http://127.0.0.1:10902/api/v1/stores" 60

log "a query over the whole history: requests per second by code, deduplicated"
now=$(date +%s)
show "http://127.0.0.1:10902/api/v1/query?query=sum+by+(code)+(rate(demo_http_requests_total%5B5m%5D))&time=$((now - 3600))"

log "the same history through the query frontend: 12 hourly parts, joined (then cached)"
show "http://127.0.0.1:10952/api/v1/query_range?query=sum+by+(code)+(rate(demo_http_requests_total%5B5m%5D))&start=$((now - 12 * 3600))&end=$((now - 3600))&step=3600" 24

log "the rules Prometheus and the ruler evaluate, through their Rules APIs"
show "http://127.0.0.1:10902/api/v1/rules" 30

log "the ruler's recorded series, written back to Prometheus and read through the querier"
for _ in $(seq 1 60); do
    curl -fsS "http://127.0.0.1:10902/api/v1/query?query=job:up:count" \
        | grep -q '"result":\[{' && break
    sleep 1
done
show "http://127.0.0.1:10902/api/v1/query?query=job:up:count" 30

log "what the bucket holds"
"$strata" tools bucket inspect --objstore.config-file="$work/objstore.yml"

cat <<EOF

The stack is up (logs in $work/logs):
  Prometheus     http://127.0.0.1:19090
  Strata query   http://127.0.0.1:10902   web UI and Prometheus HTTP API (add it to Grafana as a
                                          Prometheus data source); Store API on 127.0.0.1:10901
  Store gateway  http://127.0.0.1:10922   block viewer of the blocks it serves
  Compactor      http://127.0.0.1:10932   block viewer of the bucket
  Ruler          http://127.0.0.1:10942   its alerts and rules pages (stateless mode: what it records
                                          is written back to Prometheus)
  Query frontend http://127.0.0.1:10952   the querier's API and UI with range queries split by hour
                                          and cached (point Grafana here for long dashboards)
EOF

if [ -n "${QUICKSTART_EXIT:-}" ]; then
    log "QUICKSTART_EXIT is set: stopping the stack"
    exit 0
fi
echo "Press Ctrl-C to stop everything."
wait
