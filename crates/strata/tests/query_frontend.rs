//! `strata query-frontend` in front of real queriers: Prometheus 2.42 (Debian's) and
//! `strata query`, both over the same blocks made by `promtool tsdb create-blocks-from
//! openmetrics` (three days and two hours of data at one-minute intervals, with series that
//! start and end part way through).
//!
//! 1. Range queries cut into days and joined answer byte for byte as the querier answers the
//!    whole request, for steps that divide a day and steps that do not.
//! 2. With a results cache, repeated and overlapping queries are answered from it: with the
//!    querier stopped, cached days still answer identically, and a day not cached fails
//!    naming the querier.
//! 3. Metadata requests (labels, label values, series) cut into days answer as the whole.
//! 4. Errors: the frontend's own checks answer 400 with Prometheus' words; the querier's
//!    errors reach the client as the querier wrote them; everything else is proxied.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use strata_testutil::process::{
    HttpResponse, LoggedProcess as Proc, free_port, http_request, http_request_with_headers,
    url_encode, wait_until,
};
use strata_testutil::prometheus::{create_blocks_from_openmetrics, prometheus};

/// Start of the data, Unix seconds.
const T0: i64 = 1_700_000_000;
const DAY: i64 = 86_400;
/// End of the data (exclusive), Unix seconds.
const T_END: i64 = T0 + 3 * DAY + 7_200;

/// Counters `c_total{i}` (i=4 ends after two days) and gauges `g{i}` (i=0 starts after a
/// day), one sample a minute.
fn write_blocks(dir: &Path) {
    let mut om = String::from("# TYPE c counter\n");
    for i in 0..5i64 {
        let mut v = 0i64;
        for t in (T0..T_END).step_by(60) {
            if i == 4 && t > T0 + 2 * DAY {
                break;
            }
            v += ((t - T0) / 60 * 7 + i * 13) % 11;
            writeln!(om, "c_total{{i=\"{i}\"}} {v} {t}").unwrap();
        }
    }
    om.push_str("# TYPE g gauge\n");
    for i in 0..5i64 {
        for t in (T0..T_END).step_by(60) {
            if i == 0 && t < T0 + DAY {
                continue;
            }
            let v = ((t - T0) * 31 + i) % 97;
            writeln!(om, "g{{i=\"{i}\",job=\"j{}\"}} {}.25 {t}", i % 2, v).unwrap();
        }
    }
    om.push_str("# EOF\n");
    create_blocks_from_openmetrics(&om, dir).unwrap();
}

fn strata() -> Command {
    Command::new(env!("CARGO_BIN_EXE_strata"))
}

fn ready(port: u16) -> bool {
    http_request("GET", &format!("http://127.0.0.1:{port}/-/ready"), b"")
        .is_ok_and(|r| r.status == 200)
}

/// Real Prometheus over the blocks in `dir/data`.
fn start_prometheus(dir: &Path) -> (Proc, u16) {
    let port = free_port();
    let config = dir.join("prometheus.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 1h\n").unwrap();
    let mut cmd = Command::new(prometheus().unwrap());
    cmd.arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg("--storage.tsdb.retention.time=100y")
        .arg(format!("--web.listen-address=127.0.0.1:{port}"));
    let p = Proc::start(dir, &format!("prometheus-{port}"), &mut cmd);
    wait_until("Prometheus ready", Duration::from_secs(60), || ready(port));
    (p, port)
}

/// `strata query` evaluating over the same blocks.
fn start_querier(dir: &Path) -> (Proc, u16) {
    let (http, grpc) = (free_port(), free_port());
    let mut cmd = strata();
    cmd.args([
        "query",
        &format!("--http-address=127.0.0.1:{http}"),
        &format!("--grpc-address=127.0.0.1:{grpc}"),
        &format!("--debug.blocks-dir={}", dir.join("data").display()),
    ]);
    let p = Proc::start(dir, &format!("query-{http}"), &mut cmd);
    wait_until("querier ready", Duration::from_secs(60), || ready(http));
    (p, http)
}

fn start_frontend(dir: &Path, downstream: u16, extra: &[&str]) -> (Proc, u16) {
    let port = free_port();
    let mut cmd = strata();
    cmd.args([
        "query-frontend",
        &format!("--http-address=127.0.0.1:{port}"),
        &format!("--query-frontend.downstream-url=http://127.0.0.1:{downstream}"),
    ])
    .args(extra);
    let p = Proc::start(dir, &format!("query-frontend-{port}"), &mut cmd);
    wait_until("query frontend ready", Duration::from_secs(30), || {
        ready(port)
    });
    (p, port)
}

fn post(port: u16, path: &str, form: &str) -> HttpResponse {
    http_request_with_headers(
        "POST",
        &format!("http://127.0.0.1:{port}{path}"),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        form.as_bytes(),
    )
    .unwrap_or_else(|e| panic!("{path}: {e:#}"))
}

fn body(r: &HttpResponse) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

fn range_form(query: &str, start: i64, end: i64, step: i64) -> String {
    format!(
        "query={}&start={start}&end={end}&step={step}",
        url_encode(query)
    )
}

/// A counter of the frontend's `/metrics`.
fn metric(port: u16, name: &str) -> f64 {
    let r = http_request("GET", &format!("http://127.0.0.1:{port}/metrics"), b"").unwrap();
    body(&r)
        .lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

const QUERIES: &[&str] = &[
    "g",
    "sum by (i) (rate(c_total[5m]))",
    "count(g) by (job)",
    "max_over_time(g[2h:5m])",
    "increase(c_total[1h]) / on(i) group_left g",
    "g @ start()",
    "timestamp(c_total offset 1h)",
];

#[test]
fn split_range_queries_answer_as_the_whole_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    write_blocks(&tmp.path().join("data"));
    let (_prom, prom) = start_prometheus(tmp.path());
    let (_q, querier) = start_querier(tmp.path());
    for downstream in [prom, querier] {
        let (_fe, fe) = start_frontend(tmp.path(), downstream, &[]);
        for step in [60, 420, 3_600, 7 * 3_600] {
            // Aligned to the step, as the frontend aligns it by default: the answers are
            // then for the same steps.
            let (start, end) = (T0 / step * step, T_END / step * step);
            for q in QUERIES {
                let form = range_form(q, start, end, step);
                let direct = post(downstream, "/api/v1/query_range", &form);
                let through = post(fe, "/api/v1/query_range", &form);
                assert_eq!(direct.status, 200, "{q}: {}", body(&direct));
                assert_eq!(
                    body(&through),
                    body(&direct),
                    "{q} step {step} through the frontend (downstream {downstream})"
                );
            }
        }
        // Every multi-day query was cut into days: 4 steps × 7 queries, each over 3–4 days
        // (one query whose answer depends on its range is sent whole).
        let parts = metric(fe, "thanos_frontend_split_queries_total");
        assert!(parts >= (4 * 6 * 4 + 4) as f64, "{parts} parts");
    }
}

#[test]
fn the_results_cache_answers_what_it_holds_even_with_the_querier_down() {
    cache_answers_with_the_querier_down(
        "--query-range.response-cache-config=type: IN-MEMORY\nconfig:\n  max_size: 64MB",
    );
}

#[test]
fn a_memcached_results_cache_answers_with_the_querier_down() {
    let memcached = strata_testutil::memcached::MemcachedServer::start().unwrap();
    cache_answers_with_the_querier_down(&format!(
        "--query-range.response-cache-config=type: MEMCACHED\nconfig:\n  addresses: [{}]",
        memcached.address()
    ));
}

#[test]
fn a_redis_results_cache_answers_with_the_querier_down() {
    let redis = strata_testutil::redis::RedisServer::start().unwrap();
    cache_answers_with_the_querier_down(&format!(
        "--query-range.response-cache-config=type: REDIS\nconfig:\n  addr: {}",
        redis.address()
    ));
}

/// Repeated and overlapping queries through a frontend with the cache `flag`: answered as
/// the querier answers, mostly from the cache, and still answered with the querier stopped.
fn cache_answers_with_the_querier_down(flag: &str) {
    let tmp = tempfile::tempdir().unwrap();
    write_blocks(&tmp.path().join("data"));
    let (mut prom_proc, prom) = start_prometheus(tmp.path());
    let (_fe, fe) = start_frontend(tmp.path(), prom, &[flag, "--cache-compression-type=snappy"]);
    let step = 300;
    let a = (T0 / step * step, (T0 + 2 * DAY) / step * step);
    let b = ((T0 + DAY + 3_600) / step * step, T_END / step * step);
    let q = "sum by (i) (rate(c_total[5m]))";
    let mut want = Vec::new();
    for (start, end) in [a, b, a, b] {
        let form = range_form(q, start, end, step);
        let direct = post(prom, "/api/v1/query_range", &form);
        let through = post(fe, "/api/v1/query_range", &form);
        assert_eq!(body(&through), body(&direct), "[{start}, {end}]");
        want.push(body(&direct));
    }
    // Remote caches store in the background: a moment for the sets to land.
    std::thread::sleep(Duration::from_millis(300));
    let r = post(fe, "/api/v1/query_range", &range_form(q, a.0, a.1, step));
    assert_eq!(body(&r), want[0]);
    let cached = metric(fe, "strata_frontend_cached_steps_total");
    let fetched = metric(fe, "strata_frontend_fetched_steps_total");
    // The second query overlaps the first by most of a day; the last two are cached whole.
    assert!(cached > fetched, "cached {cached} steps, fetched {fetched}");

    prom_proc.guard.kill();
    wait_until("Prometheus gone", Duration::from_secs(10), || !ready(prom));
    for (i, (start, end)) in [a, b].into_iter().enumerate() {
        let r = post(fe, "/api/v1/query_range", &range_form(q, start, end, step));
        assert_eq!(r.status, 200, "{}", body(&r));
        assert_eq!(body(&r), want[i], "answered from the cache");
    }
    // A step never asked for is not in the cache: the querier's absence is the answer.
    let r = post(fe, "/api/v1/query_range", &range_form(q, a.0, a.1, 600));
    assert_eq!(r.status, 502, "{}", body(&r));
    assert!(
        body(&r).contains(&format!("127.0.0.1:{prom}")),
        "{}",
        body(&r)
    );
}

/// The answer's `data` as a set of JSON texts (metadata answers are sets).
fn data_set(r: &HttpResponse) -> BTreeSet<String> {
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["status"], "success", "{v}");
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(Value::to_string)
        .collect()
}

#[test]
fn metadata_requests_are_split_by_day_and_joined() {
    let tmp = tempfile::tempdir().unwrap();
    write_blocks(&tmp.path().join("data"));
    let (_prom, prom) = start_prometheus(tmp.path());
    let (_fe, fe) = start_frontend(
        tmp.path(),
        prom,
        &["--labels.response-cache-config=type: IN-MEMORY"],
    );
    let range = format!("start={T0}&end={T_END}");
    for (path, form) in [
        ("/api/v1/labels", range.clone()),
        ("/api/v1/labels", format!("{range}&match[]=c_total")),
        (
            "/api/v1/series",
            format!("{range}&match[]={}", url_encode("{__name__=~\".+\"}")),
        ),
        (
            "/api/v1/series",
            format!("{range}&match[]=g&match[]=c_total"),
        ),
        // Only the second and third days: c_total{i="4"} ends after the second.
        (
            "/api/v1/series",
            format!("start={}&end={}&match[]=c_total", T0 + 2 * DAY + 600, T_END),
        ),
    ] {
        let direct = post(prom, path, &form);
        let through = post(fe, path, &form);
        assert_eq!(through.status, 200, "{path}?{form}: {}", body(&through));
        assert_eq!(data_set(&through), data_set(&direct), "{path}?{form}");
    }
    // Four requests over four days each, one over two: every one was cut by day.
    let parts = metric(fe, "thanos_frontend_split_queries_total");
    assert!(parts >= 18.0, "{parts} parts");
    // Asked again, the whole days come from the labels cache.
    let form = format!("{range}&match[]=g&match[]=c_total");
    let again = post(fe, "/api/v1/series", &form);
    assert_eq!(
        data_set(&again),
        data_set(&post(prom, "/api/v1/series", &form))
    );
    let hits = metric(fe, "strata_frontend_cache_hits_total");
    assert!(hits >= 2.0, "{hits} cache hits");
    for name in ["i", "job", "__name__"] {
        let path = format!("/api/v1/label/{name}/values?{range}");
        let direct = http_request("GET", &format!("http://127.0.0.1:{prom}{path}"), b"").unwrap();
        let through = http_request("GET", &format!("http://127.0.0.1:{fe}{path}"), b"").unwrap();
        assert_eq!(body(&through), body(&direct), "{path}");
    }
}

#[test]
fn errors_reach_the_client_and_other_paths_are_proxied() {
    let tmp = tempfile::tempdir().unwrap();
    write_blocks(&tmp.path().join("data"));
    let (_prom, prom) = start_prometheus(tmp.path());
    let (fe_proc, fe) = start_frontend(
        tmp.path(),
        prom,
        &[
            "--query-range.max-query-length=2d",
            // Negative: every query is logged as slow.
            "--query-frontend.log-queries-longer-than=-1ms",
        ],
    );
    let frontend_says = |form: &str, want: &str| {
        let r = post(fe, "/api/v1/query_range", form);
        assert_eq!(r.status, 400, "{form}: {}", body(&r));
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["errorType"], "bad_data", "{v}");
        assert!(v["error"].as_str().unwrap().contains(want), "{form}: {v}");
    };
    frontend_says(
        "query=up&start=10&end=5&step=1",
        "end timestamp must not be before start time",
    );
    frontend_says(
        "query=up&start=0&end=5&step=-1",
        "zero or negative query resolution",
    );
    frontend_says(
        "query=up&start=x&end=5&step=1",
        "cannot parse \"x\" to a valid timestamp",
    );
    frontend_says(
        &range_form("up", T0, T0 + 3 * DAY, 3_600),
        "the query time range exceeds the limit (query length: 72h0m0s, limit: 48h0m0s)",
    );
    // A bad query is the querier's to refuse, in its words.
    let form = range_form("sum(", T0, T0 + DAY + 7_200, 60);
    let direct = post(prom, "/api/v1/query_range", &form);
    let through = post(fe, "/api/v1/query_range", &form);
    assert_eq!(direct.status, 400);
    assert_eq!(
        (through.status, body(&through)),
        (direct.status, body(&direct))
    );

    // Instant queries, the status API and the UI go through.
    for path in [
        format!(
            "/api/v1/query?query={}&time={}",
            url_encode("sum(g)"),
            T0 + DAY
        ),
        "/api/v1/status/buildinfo".to_string(),
        "/api/v1/query?query=sum(".to_string(),
    ] {
        let direct = http_request("GET", &format!("http://127.0.0.1:{prom}{path}"), b"").unwrap();
        let through = http_request("GET", &format!("http://127.0.0.1:{fe}{path}"), b"").unwrap();
        assert_eq!(
            (through.status, body(&through)),
            (direct.status, body(&direct)),
            "{path}"
        );
    }
    let r = http_request("GET", &format!("http://127.0.0.1:{fe}/graph"), b"").unwrap();
    assert_eq!(r.status, 200);
    assert!(
        body(&r).contains("Prometheus"),
        "Prometheus' UI through the frontend"
    );
    assert!(
        r.headers
            .to_ascii_lowercase()
            .contains("access-control-allow-origin: *"),
        "CORS headers: {}",
        r.headers
    );
    // The slow query log names the query and its parameters, as Thanos' does.
    let log = fe_proc.log();
    assert!(
        log.contains("slow query detected") && log.contains("param_query=sum(g)"),
        "{log}"
    );

    // No querier: a clear error naming it, not a hang or a panic.
    let gone = free_port();
    let (_fe2, fe2) = start_frontend(
        tmp.path(),
        gone,
        &["--query-range.max-retries-per-request=2"],
    );
    let r = post(
        fe2,
        "/api/v1/query_range",
        &range_form("up", T0, T0 + 2 * DAY, 3_600),
    );
    assert_eq!(r.status, 502, "{}", body(&r));
    assert!(
        body(&r).contains(&format!("127.0.0.1:{gone}")),
        "{}",
        body(&r)
    );
    assert!(
        body(&r).contains("refused"),
        "the cause is named: {}",
        body(&r)
    );
}

#[test]
fn bad_flags_fail_start_up_with_thanos_words() {
    for (args, want) in [
        (
            vec![
                "--query-range.split-interval=0",
                "--query-range.response-cache-config=type: IN-MEMORY",
            ],
            "split queries or split threshold interval should be greater than 0 when caching is enabled",
        ),
        (
            vec!["--query-range.max-split-interval=1d"],
            "split queries interval and dynamic query split interval cannot be set at the same time",
        ),
        (
            vec!["--query-range.response-cache-config=type: FILE"],
            "initializing the query range cache config",
        ),
        (
            vec!["--labels.default-time-range=0"],
            "labels.default-time-range cannot be set to 0",
        ),
        (
            vec!["--cache-compression-type=zstd"],
            "unsupported compression type: zstd",
        ),
        (
            vec!["--query-frontend.downstream-url=ftp://x"],
            "scheme must be http or https",
        ),
        (vec!["--query-frontend.bogus"], "--query-frontend.bogus"),
        // Kingpin's negations of the flags that default to false are accepted too.
        (
            vec![
                "--no-query-frontend.compress-responses",
                "--no-web.disable-cors",
                "--no-query-frontend.enable-x-functions",
                "--no-query-frontend.force-query-stats",
                "--labels.default-time-range=0",
            ],
            "labels.default-time-range cannot be set to 0",
        ),
    ] {
        let out = strata()
            .arg("query-frontend")
            .arg("--http-address=127.0.0.1:0")
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} started");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}
