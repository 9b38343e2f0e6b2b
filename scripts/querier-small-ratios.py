#!/usr/bin/env python3
"""Fan-out over local latency for the fan-out benchmark's small and instant queries.

    scripts/querier-small-ratios.py FANOUT_URL LOCAL_URL [RUNS]

FANOUT_URL and LOCAL_URL are the two `strata query` servers that scripts/bench-querier.sh
starts (keep them running, for example by starting the three commands of that script by
hand). Each query runs RUNS times (default 41) on each server, alternating, over keep-alive
connections, so that slow drifts of this shared machine hit both sides alike. Prints per
query the ratio of medians and the ratio of the means of the fastest tenth, then their
geometric means. Wall times here include no connection set-up, unlike bench_compare's.
"""
import http.client
import math
import statistics
import sys
import time
import urllib.parse

START, END, STEP, AT = 1700003600, 1700043000, 60, 1700043000
QUERIES = [
    ("quantile(0.5, node_memory_bytes)", "range"),
    ("stddev by (job) (node_memory_bytes)", "range"),
    ("max by (job) (max_over_time(node_memory_bytes[30m]))", "range"),
    ("delta(node_memory_bytes[10m])", "range"),
    ("avg_over_time(node_memory_bytes[10m])", "range"),
    ("histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))", "range"),
    ("sum by (job) (rate(http_requests_total[5m]))", "instant"),
    ("topk(10, rate(http_requests_total[5m]))", "instant"),
    ("histogram_quantile(0.5, rate(http_request_duration_seconds_bucket[10m]))", "instant"),
]


def connect(url):
    u = urllib.parse.urlsplit(url)
    return http.client.HTTPConnection(u.hostname, u.port)


def run(conn, query, kind):
    if kind == "instant":
        path = "/api/v1/query?" + urllib.parse.urlencode({"query": query, "time": AT})
    else:
        path = "/api/v1/query_range?" + urllib.parse.urlencode(
            {"query": query, "start": START, "end": END, "step": STEP}
        )
    t = time.perf_counter()
    conn.request("GET", path)
    r = conn.getresponse()
    r.read()
    if r.status != 200:
        sys.exit(f"{query}: HTTP {r.status}")
    return (time.perf_counter() - t) * 1000


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    fanout, local = connect(sys.argv[1]), connect(sys.argv[2])
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 41
    medians, fastest = [], []
    for query, kind in QUERIES:
        for _ in range(3):
            run(fanout, query, kind)
            run(local, query, kind)
        f, l = [], []
        for _ in range(runs):
            f.append(run(fanout, query, kind))
            l.append(run(local, query, kind))
        f.sort()
        l.sort()
        k = max(1, runs // 10)
        m = statistics.median(f) / statistics.median(l)
        low = statistics.mean(f[:k]) / statistics.mean(l[:k])
        medians.append(math.log(m))
        fastest.append(math.log(low))
        print(f"{m:5.2f} {low:5.2f}  {kind:7} {query}")
    gm = math.exp(sum(medians) / len(medians))
    gl = math.exp(sum(fastest) / len(fastest))
    print(f"geometric mean: medians {gm:.3f}, fastest tenth {gl:.3f}")


if __name__ == "__main__":
    main()
