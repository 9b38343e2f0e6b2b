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

/// What a response body must be.
#[derive(Debug)]
enum Want {
    Is(&'static str),
    Has(&'static str),
    Starts(&'static str),
    Ends(&'static str),
}

/// One request of `query_api_answers_like_prometheus` and its expected answer.
struct Case {
    method: &'static str,
    path: &'static str,
    form: Option<&'static str>,
    status: u16,
    want: Want,
}

const fn get(path: &'static str, status: u16, want: Want) -> Case {
    Case {
        method: "GET",
        path,
        form: None,
        status,
        want,
    }
}

const fn post(path: &'static str, form: &'static str, status: u16, want: Want) -> Case {
    Case {
        method: "POST",
        path,
        form: Some(form),
        status,
        want,
    }
}

const CASES: &[Case] = &[
    // Go float formatting, scalar results, a timestamp with leading zero milliseconds.
    get(
        "/api/v1/query?query=1e21&time=0.010",
        200,
        Want::Is(r#"{"status":"success","data":{"resultType":"scalar","result":[0.010,"1e+21"]}}"#),
    ),
    get(
        "/api/v1/query?query=vector(%2BInf)%20or%20vector(NaN)&time=2",
        200,
        Want::Is(
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[2,"+Inf"]}]}}"#,
        ),
    ),
    get(
        "/api/v1/query?query=%22hi%22&time=2",
        200,
        Want::Is(r#"{"status":"success","data":{"resultType":"string","result":[2,"hi"]}}"#),
    ),
    // Range query over a form POST.
    post(
        "/api/v1/query_range",
        "query=temperature&start=16.001&end=46.001&step=15",
        200,
        Want::Is(
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"temperature","room":"lab"},"values":[[16.001,"1e+21"],[31.001,"2e+21"],[46.001,"3e+21"]]}]}}"#,
        ),
    ),
    // Warnings and infos.
    get(
        "/api/v1/query?query=quantile(2,up)&time=31.001",
        200,
        Want::Is(
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[31.001,"+Inf"]}]},"warnings":["PromQL warning: quantile value should be between 0 and 1, got 2"]}"#,
        ),
    ),
    get(
        "/api/v1/query?query=rate(up[1m])&time=61.001",
        200,
        Want::Ends(
            r#""infos":["PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: \"up\""]}"#,
        ),
    ),
    // Errors: bad query, bad parameters, too many points, timeouts, execution errors.
    get(
        "/api/v1/query?query=sum(up",
        400,
        Want::Is(
            r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": parse error: unclosed left parenthesis"}"#,
        ),
    ),
    get(
        "/api/v1/query?query=up&time=yesterday",
        400,
        Want::Is(
            r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"time\": cannot parse \"yesterday\" to a valid timestamp"}"#,
        ),
    ),
    get(
        "/api/v1/query_range?query=up&start=0&end=100000&step=1",
        400,
        Want::Is(
            r#"{"status":"error","errorType":"bad_data","error":"exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"}"#,
        ),
    ),
    get(
        "/api/v1/query_range?query=up&start=10&end=0&step=1",
        400,
        Want::Has("end timestamp must not be before start time"),
    ),
    get(
        "/api/v1/query_range?query=up&start=0&end=10&step=0",
        400,
        Want::Has("zero or negative query resolution step"),
    ),
    get(
        "/api/v1/query?query=big_total&time=100&timeout=0.000001",
        503,
        Want::Is(
            r#"{"status":"error","errorType":"timeout","error":"query timed out in query execution"}"#,
        ),
    ),
    get(
        "/api/v1/query?query=up%20%2B%20on()%20up&time=31.001",
        422,
        Want::Starts(
            r#"{"status":"error","errorType":"execution","error":"found duplicate series"#,
        ),
    ),
    // Metadata endpoints, GET and POST.
    get(
        "/api/v1/series?match[]=up&start=0&end=1000",
        200,
        Want::Is(
            r#"{"status":"success","data":[{"__name__":"up","instance":"a\u003c\u0026\u003e","job":"api"},{"__name__":"up","instance":"a\u003c\u0026\u003e","job":"db"}]}"#,
        ),
    ),
    post(
        "/api/v1/series",
        "match%5B%5D=temperature",
        200,
        Want::Is(r#"{"status":"success","data":[{"__name__":"temperature","room":"lab"}]}"#),
    ),
    get(
        "/api/v1/series",
        400,
        Want::Is(
            r#"{"status":"error","errorType":"bad_data","error":"no match[] parameter provided"}"#,
        ),
    ),
    get(
        "/api/v1/labels",
        200,
        Want::Is(r#"{"status":"success","data":["__name__","i","instance","job","room"]}"#),
    ),
    post(
        "/api/v1/labels",
        "match[]=up",
        200,
        Want::Is(r#"{"status":"success","data":["__name__","instance","job"]}"#),
    ),
    get(
        "/api/v1/label/job/values",
        200,
        Want::Is(r#"{"status":"success","data":["api","db"]}"#),
    ),
    get(
        "/api/v1/label/__name__/values?match[]=up",
        200,
        Want::Is(r#"{"status":"success","data":["up"]}"#),
    ),
    get(
        "/api/v1/label/nope/values",
        200,
        Want::Is(r#"{"status":"success","data":[]}"#),
    ),
    get(
        "/api/v1/metadata",
        200,
        Want::Is(r#"{"status":"success","data":{}}"#),
    ),
    // Status endpoints.
    get(
        "/api/v1/status/buildinfo",
        200,
        Want::Starts(r#"{"status":"success","data":{"version":""#),
    ),
    get(
        "/api/v1/status/buildinfo",
        200,
        Want::Has(r#""goVersion":"#),
    ),
    get(
        "/api/v1/status/flags",
        200,
        Want::Has(r#""query.max-concurrent":"2""#),
    ),
    get(
        "/api/v1/status/flags",
        200,
        Want::Has(r#""query.timeout":"2m""#),
    ),
    get(
        "/api/v1/status/runtimeinfo",
        200,
        Want::Has(r#""startTime":"#),
    ),
    get("/api/v1/status/runtimeinfo", 200, Want::Has(r#""CWD":"#)),
];

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

    // Every other answer, request by request: the status and the body (all of it, or the
    // part that does not depend on the machine).
    for c in CASES {
        let r = request(p, c.method, c.path, c.form);
        let ok = match c.want {
            Want::Is(b) => r.body == b,
            Want::Has(b) => r.body.contains(b),
            Want::Starts(b) => r.body.starts_with(b),
            Want::Ends(b) => r.body.ends_with(b),
        };
        assert!(
            r.status == c.status && ok,
            "{} {} {:?}: got {} {}, want {} {:?}",
            c.method,
            c.path,
            c.form,
            r.status,
            r.body,
            c.status,
            c.want
        );
    }

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
