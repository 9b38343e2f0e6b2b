#!/usr/bin/env bash
# Builds Strata and runs it against a local FILESYSTEM bucket, on a fresh Debian machine.
#
#   ./scripts/quickstart.sh           build, make demo blocks, upload, list, inspect, verify
#   QUICKSTART_DIR=/tmp/x ./scripts/quickstart.sh
#
# What it runs today: real Prometheus 2.42 (`promtool`) writes 12 hours of demo metrics as TSDB
# blocks; `strata tools bucket upload-blocks` ships them to a bucket on local disk the way a
# Thanos sidecar would; `ls`, `inspect` and `verify` read them back; `strata compact` compacts
# them. The other long-running components (store gateway, querier, sidecar) are being built; as
# each lands, this script starts it too. Re-running is safe: everything lives under $QUICKSTART_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"

# shellcheck source=scripts/lib.sh
. ./scripts/lib.sh

work="${QUICKSTART_DIR:-$repo/.strata-quickstart}"

install_prometheus

log "building strata (release; the first build takes a few minutes)"
cargo build --release --locked -p strata
strata="$repo/target/release/strata"

rm -rf "$work"
mkdir -p "$work/bucket" "$work/prometheus"
cat > "$work/objstore.yml" <<YAML
type: FILESYSTEM
config:
  directory: $work/bucket
YAML

log "writing 12h of demo metrics with promtool (3 instances, counters and gauges, 15s scrapes)"
start=$(( $(date +%s) - 13 * 3600 ))
awk -v start="$start" 'BEGIN {
    print "# HELP demo_http_requests Requests served.";
    print "# TYPE demo_http_requests counter";
    for (i = 0; i < 3; i++) for (c = 0; c < 3; c++) {
        code = (c == 0 ? 200 : (c == 1 ? 404 : 500)); v = 0;
        for (k = 0; k < 2880; k++) {
            v += (k * 7 + i * 13 + c) % 11;
            printf "demo_http_requests_total{instance=\"demo-%d:9100\",code=\"%d\"} %d %d.%03d\n", i, code, v, start + k * 15, (i * 97) % 1000;
        }
    }
    print "# HELP demo_temperature_celsius A gauge.";
    print "# TYPE demo_temperature_celsius gauge";
    for (i = 0; i < 3; i++) for (k = 0; k < 2880; k++)
        printf "demo_temperature_celsius{instance=\"demo-%d:9100\"} %.2f %d.%03d\n", i, 20 + 5 * sin(k / 200.0 + i), start + k * 15, (i * 97) % 1000;
    print "# EOF";
}' > "$work/demo.om"
promtool tsdb create-blocks-from openmetrics "$work/demo.om" "$work/prometheus" >/dev/null
rm -f "$work/demo.om"

run() { printf '\n$ strata %s\n' "$*"; "$strata" "$@"; }

log "uploading the blocks to the bucket (chunks, then index, then meta.json last)"
run tools bucket upload-blocks --objstore.config-file="$work/objstore.yml" \
    --path="$work/prometheus" --label='cluster="quickstart"' --label='replica="0"'

log "what the bucket holds"
run tools bucket ls -o wide --objstore.config-file="$work/objstore.yml"
run tools bucket inspect --objstore.config-file="$work/objstore.yml"

log "verifying every block (CRCs, series order, chunk references, overlaps)"
run tools bucket verify --objstore.config-file="$work/objstore.yml"

log "compacting: complete 8h windows of 2h blocks become one block; the sources are deleted"
run compact --objstore.config-file="$work/objstore.yml" --data-dir="$work/compact" \
    --http-address=127.0.0.1:0 --consistency-delay=0s --delete-delay=0s
run tools bucket inspect --objstore.config-file="$work/objstore.yml"
run tools bucket verify --objstore.config-file="$work/objstore.yml"

cat <<EOF

Done. The bucket is at $work/bucket, its config at $work/objstore.yml.
Try:  $strata tools bucket inspect --objstore.config-file=$work/objstore.yml --output=json
      $strata --help
EOF
