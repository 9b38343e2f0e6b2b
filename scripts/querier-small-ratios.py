#!/usr/bin/env python3
"""Fan-out over local latency for the fan-out benchmark's small and instant queries.

    scripts/querier-small-ratios.py [--large | --tiny] [--absolute] [--gateway-pid PID]
                                    [--querier-pids FANOUT,LOCAL]
                                    FANOUT_URL LOCAL_URL [RUNS]

FANOUT_URL and LOCAL_URL are the two `strata query` servers that scripts/bench-querier.sh
starts (scripts/querier-ab.sh starts them per build; or start the three commands of
bench-querier.sh by hand). Each query runs RUNS times (default 41) on each server,
alternating, over keep-alive connections, so that slow drifts of this shared machine hit both
sides alike. Prints per query the ratio of medians and the ratio of the means of the fastest
tenth, then their geometric means. Wall times here include no connection set-up, unlike
bench_compare's.

--large runs five of the benchmark's range queries over all 5,000 counters instead of the
nine small and instant ones; --tiny runs selections of a single series (one block for the
instant query, all seven for the range query) and `vector(1)` (no store call), which show
the fixed cost of a fan-out query. --absolute also prints each side's median in ms. --gateway-pid adds, per query, the store gateway's CPU time per
fan-out query (user + system, from /proc/PID/stat; only fan-out queries reach the gateway).
--querier-pids adds the CPU time per query of the fan-out querier and of the local one (each
serves only its own side's queries), so that the fan-out's two processes can be set against
the local engine's one.
"""
import http.client
import math
import os
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
TINY = [
    ("vector(1)", "instant"),
    ('node_memory_bytes{instance="10.0.0.0:9100"}', "instant"),
    ('node_memory_bytes{instance="10.0.0.0:9100"}', "range"),
    ('rate(http_requests_total{instance="10.0.0.0:9100"}[5m])', "instant"),
]
LARGE = [
    ("count by (job) (http_requests_total)", "range"),
    ("sum by (job) (rate(http_requests_total[5m]))", "range"),
    ("sum(rate(http_requests_total[5m]))", "range"),
    ("max by (job, instance) (resets(http_requests_total[1h]))", "range"),
    ("avg by (method) (irate(http_requests_total[5m]))", "range"),
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


def cpu_ms(pid):
    """User + system CPU time of process `pid` so far, in milliseconds."""
    with open(f"/proc/{pid}/stat") as f:
        # The command name (field 2) may hold spaces; the fields after it are plain.
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def main():
    args = sys.argv[1:]
    queries, gateway, queriers, absolute = QUERIES, None, None, False
    while args and args[0].startswith("--"):
        flag = args.pop(0)
        if flag == "--large":
            queries = LARGE
        elif flag == "--tiny":
            queries = TINY
        elif flag == "--absolute":
            absolute = True
        elif flag == "--gateway-pid" and args:
            gateway = int(args.pop(0))
        elif flag == "--querier-pids" and args:
            queriers = [int(p) for p in args.pop(0).split(",")]
            if len(queriers) != 2:
                sys.exit(__doc__)
        else:
            sys.exit(__doc__)
    if len(args) < 2:
        sys.exit(__doc__)
    fanout, local = connect(args[0]), connect(args[1])
    runs = int(args[2]) if len(args) > 2 else 41
    medians, fastest = [], []
    for query, kind in queries:
        for _ in range(3):
            run(fanout, query, kind)
            run(local, query, kind)
        f, l = [], []
        before = cpu_ms(gateway) if gateway else 0
        q_before = [cpu_ms(p) for p in queriers] if queriers else []
        for _ in range(runs):
            f.append(run(fanout, query, kind))
            l.append(run(local, query, kind))
        cpu = f"  gateway {(cpu_ms(gateway) - before) / runs:6.2f} ms CPU" if gateway else ""
        if queriers:
            q = [(cpu_ms(p) - b) / runs for p, b in zip(queriers, q_before)]
            cpu += f"  querier {q[0]:6.2f} ms CPU, local {q[1]:6.2f} ms CPU"
        f.sort()
        l.sort()
        k = max(1, runs // 10)
        m = statistics.median(f) / statistics.median(l)
        low = statistics.mean(f[:k]) / statistics.mean(l[:k])
        medians.append(math.log(m))
        fastest.append(math.log(low))
        if absolute:
            cpu += f"  ms {statistics.median(f):6.2f} / {statistics.median(l):6.2f}"
        print(f"{m:5.2f} {low:5.2f}{cpu}  {kind:7} {query}")
    gm = math.exp(sum(medians) / len(medians))
    gl = math.exp(sum(fastest) / len(fastest))
    print(f"geometric mean: medians {gm:.3f}, fastest tenth {gl:.3f}")


if __name__ == "__main__":
    main()
