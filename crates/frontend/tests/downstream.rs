//! The frontend against a scripted querier: retries (5xx and failed connections retried up
//! to the attempt limit, 4xx not), the headers parts carry, and compressed answers. The
//! answers themselves are checked against real Prometheus in `strata/tests/query_frontend.rs`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use strata_frontend::metrics::FrontendMetrics;
use strata_frontend::{Downstream, Frontend, FrontendConfig, RangeConfig};

/// What the scripted querier saw and how it answers.
#[derive(Default)]
struct Script {
    /// Attempts per `start`.
    attempts: HashMap<String, u32>,
    /// Answer 503 to the first this many attempts of each part.
    fail_first: u32,
    /// Answer 400 to every request.
    refuse: bool,
    /// The headers of the last request.
    headers: Vec<(String, String)>,
    /// Answer as a querier whose raw data start at 7200 s and whose downsampled data reach
    /// back: `max_source_resolution=auto` gives one sample at 7200, `300` and `3600` one per
    /// step.
    downsampled: bool,
    /// `(max_source_resolution, start, end)` of every request.
    requests: Vec<(String, String, String)>,
}

async fn query_range(
    State(s): State<Arc<Mutex<Script>>>,
    headers: HeaderMap,
    Query(p): Query<HashMap<String, String>>,
) -> axum::response::Response {
    let mut s = s.lock().unwrap();
    s.headers = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let start = p["start"].clone();
    let msr = p.get("max_source_resolution").cloned().unwrap_or_default();
    s.requests
        .push((msr.clone(), start.clone(), p["end"].clone()));
    if s.downsampled {
        let (from, to, step) = (
            start.parse::<i64>().unwrap(),
            p["end"].parse::<i64>().unwrap(),
            p["step"].parse::<i64>().unwrap(),
        );
        let points: Vec<String> = (0..)
            .map(|k| from + k * step)
            .take_while(|t| *t <= to)
            .filter(|t| msr == "300" || msr == "3600" || (msr == "auto" && *t == 7200))
            .map(|t| format!(r#"[{t},"{msr}"]"#))
            .collect();
        return format!(
            r#"{{"status":"success","data":{{"resultType":"matrix","result":[{{"metric":{{"a":"1"}},"values":[{}]}}]}}}}"#,
            points.join(",")
        )
        .into_response();
    }
    let n = s.attempts.entry(start.clone()).or_default();
    *n += 1;
    let n = *n;
    if s.refuse {
        return (
            StatusCode::BAD_REQUEST,
            r#"{"status":"error","errorType":"bad_data","error":"no"}"#,
        )
            .into_response();
    }
    if n <= s.fail_first {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            r#"{"status":"error","errorType":"unavailable","error":"busy"}"#,
        )
            .into_response();
    }
    format!(
        r#"{{"status":"success","data":{{"resultType":"matrix","result":[{{"metric":{{"a":"1"}},"values":[[{start},"1"]]}}]}}}}"#
    )
    .into_response()
}

async fn serve_script(script: Arc<Mutex<Script>>) -> String {
    let app = axum::Router::new()
        .route("/api/v1/query_range", axum::routing::get(query_range))
        .with_state(script);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    format!("http://{addr}")
}

async fn serve_frontend(downstream: &str, config: FrontendConfig) -> String {
    let fe = Arc::new(Frontend {
        config,
        downstream: Downstream::new(reqwest::Client::new(), downstream),
        range_cache: None,
        labels_cache: None,
        metrics: FrontendMetrics::new(None),
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, strata_frontend::router(fe)).await });
    format!("http://{addr}")
}

fn config(max_retries: u32) -> FrontendConfig {
    FrontendConfig {
        range: RangeConfig {
            max_retries,
            split_interval: std::time::Duration::from_secs(3600),
            ..RangeConfig::default()
        },
        forward_headers: vec!["X-Grafana-User".into()],
        org_id_headers: vec!["X-Org".into()],
        ..FrontendConfig::default()
    }
}

/// Three hours at 30 min steps: three parts of one hour.
const RANGE: &str = "query=up&start=3600&end=14400&step=1800";

#[tokio::test]
async fn server_errors_are_retried_up_to_the_attempt_limit() {
    let script = Arc::new(Mutex::new(Script {
        fail_first: 2,
        ..Script::default()
    }));
    let down = serve_script(script.clone()).await;
    let client = reqwest::Client::new();

    let fe = serve_frontend(&down, config(3)).await;
    let r = client
        .get(format!("{fe}/api/v1/query_range?{RANGE}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    assert_eq!(
        body,
        r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":"1"},"values":[[3600,"1"],[7200,"1"],[10800,"1"]]}]}}"#
    );
    let attempts = script.lock().unwrap().attempts.clone();
    assert_eq!(attempts.len(), 3, "{attempts:?}");
    assert!(attempts.values().all(|&n| n == 3), "{attempts:?}");

    // Two attempts are not enough: the querier's last answer is the client's.
    script.lock().unwrap().attempts.clear();
    let fe = serve_frontend(&down, config(2)).await;
    let r = client
        .get(format!("{fe}/api/v1/query_range?{RANGE}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.text().await.unwrap().contains("busy"));

    // A 4xx is the querier's final word: asked once.
    {
        let mut s = script.lock().unwrap();
        s.attempts.clear();
        s.refuse = true;
    }
    let r = client
        .get(format!(
            "{fe}/api/v1/query_range?query=up&start=3600&end=3600&step=60"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let attempts = script.lock().unwrap().attempts.clone();
    assert_eq!(
        attempts.into_iter().collect::<Vec<_>>(),
        vec![("3600".to_string(), 1)]
    );
}

#[tokio::test]
async fn parts_carry_the_tenant_and_only_the_forwarded_headers() {
    let script = Arc::new(Mutex::new(Script::default()));
    let down = serve_script(script.clone()).await;
    let fe = serve_frontend(&down, config(1)).await;
    let r = reqwest::Client::new()
        .get(format!("{fe}/api/v1/query_range?{RANGE}"))
        .header("X-Grafana-User", "alice")
        .header("X-Org", "team-a")
        .header("Authorization", "Bearer secret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let headers = script.lock().unwrap().headers.clone();
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(get("x-grafana-user"), Some("alice"));
    assert_eq!(get("thanos-tenant"), Some("default-tenant"));
    assert_eq!(get("x-scope-orgid"), Some("team-a"));
    assert_eq!(
        get("authorization"),
        None,
        "not listed in --query-frontend.forward-header"
    );
    assert_eq!(get("x-org"), None);
}

#[tokio::test]
async fn answers_are_compressed_when_asked_and_allowed() {
    let script = Arc::new(Mutex::new(Script::default()));
    let down = serve_script(script).await;
    let mut c = config(1);
    c.compress_responses = true;
    let fe = serve_frontend(&down, c).await;
    let client = reqwest::Client::new();
    let r = client
        .get(format!("{fe}/api/v1/query_range?{RANGE}"))
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-encoding"], "gzip");
    let gz = r.bytes().await.unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut text).unwrap();
    assert!(text.starts_with(r#"{"status":"success""#), "{text}");
    let r = client
        .get(format!("{fe}/api/v1/query_range?{RANGE}"))
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("content-encoding").is_none());
}

#[tokio::test]
async fn an_auto_resolution_answer_that_starts_late_is_completed_from_coarser_data() {
    let script = Arc::new(Mutex::new(Script {
        downsampled: true,
        ..Script::default()
    }));
    let down = serve_script(script.clone()).await;
    let mut c = config(1);
    c.range.split_interval = std::time::Duration::from_secs(86_400);
    let fe = serve_frontend(&down, c).await;
    let r = reqwest::Client::new()
        .get(format!(
            "{fe}/api/v1/query_range?{RANGE}&max_source_resolution=auto"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.text().await.unwrap(),
        r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":"1"},"values":[[3600,"3600"],[5400,"3600"],[7200,"auto"]]}]}}"#
    );
    let requests = script.lock().unwrap().requests.clone();
    let s = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
    assert_eq!(
        requests,
        vec![s("auto", "3600", "14400"), s("3600", "3600", "5400")],
        "the auto answer first (at 30m steps, 6m data: 5m is not coarser), then 1h data up \
         to a step before its first sample"
    );
}

#[tokio::test]
async fn cors_headers_unless_disabled() {
    let script = Arc::new(Mutex::new(Script::default()));
    let down = serve_script(script).await;
    let client = reqwest::Client::new();
    for disable in [false, true] {
        let mut c = config(1);
        c.disable_cors = disable;
        let fe = serve_frontend(&down, c).await;
        let r = client
            .get(format!("{fe}/api/v1/query_range?{RANGE}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()
                .get("access-control-allow-origin")
                .map(|v| v.to_str().unwrap().to_string()),
            (!disable).then(|| "*".to_string()),
            "--web.disable-cors={disable}"
        );
    }
}
