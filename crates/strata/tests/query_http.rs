//! `strata query --debug.blocks-dir`: the HTTP API against the running binary, with the
//! exact bytes Prometheus would answer.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use strata_model::Labels;
use strata_testutil::process::{ChildGuard, free_port, http_request_with_headers};
use strata_tsdb::{BlockWriter, BlockWriterOptions};

struct Resp {
    status: u16,
    headers: String,
    body: String,
}

/// An HTTP/1.1 request to the server on `port`; a `form` is sent as a urlencoded body.
fn request(port: u16, method: &str, path: &str, form: Option<&str>) -> Resp {
    let headers: &[(&str, &str)] = match form {
        Some(_) => &[("Content-Type", "application/x-www-form-urlencoded")],
        None => &[],
    };
    let r = http_request_with_headers(
        method,
        &format!("http://127.0.0.1:{port}{path}"),
        headers,
        form.unwrap_or("").as_bytes(),
    )
    .unwrap();
    Resp {
        status: r.status,
        headers: r.headers,
        body: String::from_utf8(r.body).unwrap(),
    }
}

fn write_blocks(dir: &Path) {
    let mut w = BlockWriter::new(dir, BlockWriterOptions::default()).unwrap();
    let mut series: Vec<(Labels, Vec<(i64, f64)>)> = Vec::new();
    // Samples at 1.001 s, 16.001 s, ... (off whole seconds).
    for job in ["api", "db"] {
        let l = Labels::from_pairs(&[("__name__", "up"), ("job", job), ("instance", "a<&>")]);
        series.push((l, (0..40).map(|i| (1001 + i * 15_000, 1.0)).collect()));
    }
    let l = Labels::from_pairs(&[("__name__", "temperature"), ("room", "lab")]);
    series.push((
        l,
        (0..40)
            .map(|i| (1001 + i * 15_000, 1e21 * i as f64))
            .collect(),
    ));
    // Many series for a large, streamed response.
    for i in 0..3000 {
        let l = Labels::from_pairs(&[("__name__", "big_total"), ("i", &format!("{i:05}"))]);
        series.push((
            l,
            (0..40)
                .map(|k| (1001 + k * 15_000, (k * i) as f64))
                .collect(),
        ));
    }
    series.sort_by(|a, b| a.0.cmp(&b.0));
    for (l, s) in &series {
        w.add_series(l, s).unwrap();
    }
    w.finish().unwrap();
}

struct Server {
    _guard: ChildGuard,
    port: u16,
}

fn start(dir: &Path, extra: &[&str]) -> Server {
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
    cmd.arg("query")
        .arg(format!("--debug.blocks-dir={}", dir.display()))
        .arg(format!("--http-address=127.0.0.1:{port}"))
        .args(extra);
    let mut guard = ChildGuard::spawn("strata query", &mut cmd).unwrap();
    guard
        .wait_for_http(
            &format!("http://127.0.0.1:{port}/-/ready"),
            Duration::from_secs(30),
        )
        .unwrap();
    Server {
        _guard: guard,
        port,
    }
}

#[test]
fn query_api_answers_like_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    write_blocks(dir.path());
    let srv = start(dir.path(), &["--query.max-concurrent=2"]);
    let p = srv.port;

    // Instant query: envelope, label escaping, timestamps with milliseconds.
    let r = request(p, "GET", "/api/v1/query?query=up&time=31.001", None);
    assert_eq!(r.status, 200);
    assert!(r.headers.contains("application/json"), "{}", r.headers);
    assert!(
        r.headers
            .to_ascii_lowercase()
            .contains("access-control-allow-origin: *"),
        "{}",
        r.headers
    );
    assert_eq!(
        r.body,
        r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"up","instance":"a\u003c\u0026\u003e","job":"api"},"value":[31.001,"1"]},{"metric":{"__name__":"up","instance":"a\u003c\u0026\u003e","job":"db"},"value":[31.001,"1"]}]}}"#
    );

    // Go float formatting, scalar results, a timestamp with leading zero milliseconds.
    let r = request(p, "GET", "/api/v1/query?query=1e21&time=0.010", None);
    assert_eq!(
        r.body,
        r#"{"status":"success","data":{"resultType":"scalar","result":[0.010,"1e+21"]}}"#
    );
    let r = request(
        p,
        "GET",
        "/api/v1/query?query=vector(%2BInf)%20or%20vector(NaN)&time=2",
        None,
    );
    assert_eq!(
        r.body,
        r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[2,"+Inf"]}]}}"#
    );
    let r = request(p, "GET", "/api/v1/query?query=%22hi%22&time=2", None);
    assert_eq!(
        r.body,
        r#"{"status":"success","data":{"resultType":"string","result":[2,"hi"]}}"#
    );

    // Range query over a form POST.
    let r = request(
        p,
        "POST",
        "/api/v1/query_range",
        Some("query=temperature&start=16.001&end=46.001&step=15"),
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body,
        r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"temperature","room":"lab"},"values":[[16.001,"1e+21"],[31.001,"2e+21"],[46.001,"3e+21"]]}]}}"#
    );

    // Warnings and infos.
    let r = request(
        p,
        "GET",
        "/api/v1/query?query=quantile(2,up)&time=31.001",
        None,
    );
    assert_eq!(
        r.body,
        r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[31.001,"+Inf"]}]},"warnings":["PromQL warning: quantile value should be between 0 and 1, got 2"]}"#
    );
    let r = request(
        p,
        "GET",
        "/api/v1/query?query=rate(up[1m])&time=61.001",
        None,
    );
    assert!(
        r.body.ends_with(r#""infos":["PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: \"up\""]}"#),
        "{}",
        r.body
    );

    // Errors: bad query, bad parameters, too many points, timeouts, execution errors.
    let r = request(p, "GET", "/api/v1/query?query=sum(up", None);
    assert_eq!(r.status, 400);
    assert_eq!(
        r.body,
        r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": parse error: unclosed left parenthesis"}"#
    );
    let r = request(p, "GET", "/api/v1/query?query=up&time=yesterday", None);
    assert_eq!(r.status, 400);
    assert_eq!(
        r.body,
        r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"time\": cannot parse \"yesterday\" to a valid timestamp"}"#
    );
    let r = request(
        p,
        "GET",
        "/api/v1/query_range?query=up&start=0&end=100000&step=1",
        None,
    );
    assert_eq!(r.status, 400);
    assert_eq!(
        r.body,
        r#"{"status":"error","errorType":"bad_data","error":"exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"}"#
    );
    let r = request(
        p,
        "GET",
        "/api/v1/query_range?query=up&start=10&end=0&step=1",
        None,
    );
    assert_eq!(r.status, 400);
    assert!(
        r.body
            .contains("end timestamp must not be before start time"),
        "{}",
        r.body
    );
    let r = request(
        p,
        "GET",
        "/api/v1/query_range?query=up&start=0&end=10&step=0",
        None,
    );
    assert_eq!(r.status, 400);
    assert!(
        r.body.contains("zero or negative query resolution step"),
        "{}",
        r.body
    );
    let r = request(
        p,
        "GET",
        "/api/v1/query?query=big_total&time=100&timeout=0.000001",
        None,
    );
    assert_eq!(r.status, 503);
    assert_eq!(
        r.body,
        r#"{"status":"error","errorType":"timeout","error":"query timed out in query execution"}"#
    );
    let r = request(
        p,
        "GET",
        "/api/v1/query?query=up%20%2B%20on()%20up&time=31.001",
        None,
    );
    assert_eq!(r.status, 422);
    assert!(
        r.body.starts_with(
            r#"{"status":"error","errorType":"execution","error":"found duplicate series"#
        ),
        "{}",
        r.body
    );

    // A large response is streamed in chunks and is still valid.
    let r = request(
        p,
        "GET",
        "/api/v1/query_range?query=big_total&start=1.001&end=586.001&step=15",
        None,
    );
    assert_eq!(r.status, 200);
    assert!(
        r.headers
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{}",
        r.headers
    );
    assert!(r.body.len() > 1_000_000, "{}", r.body.len());
    assert!(r.body.starts_with(r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"big_total","i":"00000"},"values":[[1.001,"0"],[16.001,"0"]"#));
    assert!(
        r.body.ends_with(r#"[586.001,"116961"]]}]}}"#),
        "{}",
        &r.body[r.body.len() - 100..]
    );
    assert_eq!(r.body.matches("\"metric\"").count(), 3000);

    // Metadata endpoints, GET and POST.
    let r = request(p, "GET", "/api/v1/series?match[]=up&start=0&end=1000", None);
    assert_eq!(
        r.body,
        r#"{"status":"success","data":[{"__name__":"up","instance":"a\u003c\u0026\u003e","job":"api"},{"__name__":"up","instance":"a\u003c\u0026\u003e","job":"db"}]}"#
    );
    let r = request(p, "POST", "/api/v1/series", Some("match%5B%5D=temperature"));
    assert_eq!(
        r.body,
        r#"{"status":"success","data":[{"__name__":"temperature","room":"lab"}]}"#
    );
    let r = request(p, "GET", "/api/v1/series", None);
    assert_eq!(r.status, 400);
    assert_eq!(
        r.body,
        r#"{"status":"error","errorType":"bad_data","error":"no match[] parameter provided"}"#
    );
    let r = request(p, "GET", "/api/v1/labels", None);
    assert_eq!(
        r.body,
        r#"{"status":"success","data":["__name__","i","instance","job","room"]}"#
    );
    let r = request(p, "POST", "/api/v1/labels", Some("match[]=up"));
    assert_eq!(
        r.body,
        r#"{"status":"success","data":["__name__","instance","job"]}"#
    );
    let r = request(p, "GET", "/api/v1/label/job/values", None);
    assert_eq!(r.body, r#"{"status":"success","data":["api","db"]}"#);
    let r = request(p, "GET", "/api/v1/label/__name__/values?match[]=up", None);
    assert_eq!(r.body, r#"{"status":"success","data":["up"]}"#);
    let r = request(p, "GET", "/api/v1/label/nope/values", None);
    assert_eq!(r.body, r#"{"status":"success","data":[]}"#);
    let r = request(p, "GET", "/api/v1/metadata", None);
    assert_eq!(r.body, r#"{"status":"success","data":{}}"#);

    // Status endpoints and probes.
    let r = request(p, "GET", "/api/v1/status/buildinfo", None);
    assert!(
        r.body
            .starts_with(r#"{"status":"success","data":{"version":""#),
        "{}",
        r.body
    );
    assert!(r.body.contains(r#""goVersion":"#), "{}", r.body);
    let r = request(p, "GET", "/api/v1/status/flags", None);
    assert!(
        r.body.contains(r#""query.max-concurrent":"2""#),
        "{}",
        r.body
    );
    assert!(r.body.contains(r#""query.timeout":"2m""#), "{}", r.body);
    let r = request(p, "GET", "/api/v1/status/runtimeinfo", None);
    assert!(
        r.body.contains(r#""startTime":"#) && r.body.contains(r#""CWD":"#),
        "{}",
        r.body
    );
    assert_eq!(request(p, "GET", "/-/healthy", None).status, 200);
    assert_eq!(request(p, "GET", "/-/ready", None).status, 200);
    assert_eq!(request(p, "GET", "/metrics", None).status, 200);
}

#[test]
fn concurrent_queries_wait_for_a_slot() {
    let dir = tempfile::tempdir().unwrap();
    write_blocks(dir.path());
    let srv = start(
        dir.path(),
        &["--query.max-concurrent=1", "--web.route-prefix=/prom"],
    );
    let p = srv.port;
    let handles: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                request(
                    p,
                    "GET",
                    "/prom/api/v1/query?query=sum(rate(big_total[5m]))&time=500",
                    None,
                )
            })
        })
        .collect();
    for h in handles {
        let r = h.join().unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.body.starts_with(r#"{"status":"success""#));
    }
    assert_eq!(
        request(p, "GET", "/api/v1/query?query=up", None).status,
        404
    );
}

#[test]
fn query_without_stores_answers_empty_results() {
    // As Thanos' querier does: no stores is a valid (if useless) configuration.
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
    cmd.arg("query")
        .arg(format!("--http-address=127.0.0.1:{port}"))
        .arg(format!("--grpc-address=127.0.0.1:{}", free_port()));
    let mut guard = ChildGuard::spawn("strata query", &mut cmd).unwrap();
    guard
        .wait_for_http(
            &format!("http://127.0.0.1:{port}/-/ready"),
            Duration::from_secs(30),
        )
        .unwrap();
    let r = request(port, "GET", "/api/v1/query?query=up&time=10", None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body,
        r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#
    );
    let help = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["query", "--help"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&help.stdout).contains("debug.blocks-dir"));
}
