//! The sidecar's Store API against a real Prometheus 2.42: blocks made by promtool are put in
//! Prometheus' data directory, Prometheus loads them at start-up, and the sidecar's answers
//! (streamed chunks and the SAMPLES fallback) must equal the Store API acceptance suite's
//! reference read from the same blocks, and Prometheus' own `/api/v1/query`.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use strata_model::{Labels, Matcher, TimeOrDuration};
use strata_runtime::Prober;
use strata_sidecar::prompb::ResponseType;
use strata_sidecar::{
    Heartbeat, HeartbeatMetrics, HttpClientConfig, Limits, PromState, PrometheusClient,
    PrometheusStore,
};
use strata_store::testing::{Reference, StoreApiClient, decode_samples, run_acceptance};
use strata_storepb::convert::matcher_from_model;
use strata_storepb::thanos::SeriesRequest;
use strata_testutil::process::{ChildGuard, free_port, http_request};
use strata_testutil::prometheus::{create_blocks_from_openmetrics, prometheus};
use tokio_util::sync::CancellationToken;

const T0: i64 = 1_700_000_123_000;

fn openmetrics() -> String {
    let mut om = String::from("# TYPE jobs counter\n");
    for job in ["api", "web", "db"] {
        for i in 0..5 {
            for k in 0..(4 * 240) {
                let t = T0 + k * 15_000;
                writeln!(
                    om,
                    "jobs_total{{job=\"{job}\",pod=\"p{i}\"}} {} {}.{:03}",
                    k * (i + 1),
                    t / 1000,
                    t % 1000
                )
                .unwrap();
            }
        }
    }
    om.push_str("# TYPE temperature gauge\n");
    for room in 0..4 {
        for k in 0..(4 * 240) {
            let t = T0 + k * 15_000;
            let v = 20.0 + (k as f64 / 7.0).sin() * (room as f64 + 0.25);
            writeln!(
                om,
                "temperature{{room=\"r{room}\"}} {v} {}.{:03}",
                t / 1000,
                t % 1000
            )
            .unwrap();
        }
    }
    // A series whose labels are a prefix of another's: with the external labels attached
    // (`cluster` sorts after `b`), `{a="1",b="2"}` comes before `{a="1"}`, the reverse of
    // Prometheus' own order.
    om.push_str("# TYPE info gauge\n");
    for k in 0..(4 * 240) {
        let t = T0 + k * 15_000;
        for (labels, v) in [(r#"a="1""#, 1), (r#"a="1",b="2""#, 2), (r#"a="2""#, 3)] {
            writeln!(om, "info{{{labels}}} {v} {}.{:03}", t / 1000, t % 1000).unwrap();
        }
    }
    // Series with their own value for an external label name (`cluster`), which the external
    // label overrides: served, `{x="1"}` sorts before `{x="2"}`, the reverse of Prometheus'
    // order (`cluster="a"` before `cluster="b"`).
    om.push_str("# TYPE clash gauge\n");
    for k in 0..(4 * 240) {
        let t = T0 + k * 15_000;
        for (labels, v) in [
            (r#"cluster="a",x="2""#, 1),
            (r#"cluster="b",x="1""#, 2),
            (r#"cluster="c",x="3""#, 3),
            (r#"cluster="d",x="0""#, 4),
        ] {
            writeln!(om, "clash{{{labels}}} {v} {}.{:03}", t / 1000, t % 1000).unwrap();
        }
    }
    om.push_str("# EOF\n");
    om
}

/// Copies a block directory (Prometheus gets its own copy; the reference reads the original).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

struct Prom {
    _guard: ChildGuard,
    url: String,
}

fn start_prometheus(dir: &Path, external_labels: &str) -> Prom {
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!("global:\n  scrape_interval: 1h\n{external_labels}"),
    )
    .unwrap();
    let port = free_port();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let mut cmd = Command::new(prometheus().unwrap());
    cmd.arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .args([
            "--storage.tsdb.min-block-duration=2h",
            "--storage.tsdb.max-block-duration=2h",
            "--storage.tsdb.retention.time=100y",
            "--web.enable-lifecycle",
        ])
        .stdout(Stdio::null())
        .stderr(log);
    let mut guard = ChildGuard::spawn("prometheus", &mut cmd).unwrap();
    let url = format!("http://127.0.0.1:{port}");
    guard
        .wait_for_http(&format!("{url}/-/ready"), Duration::from_secs(60))
        .unwrap();
    // Answering HTTP is not yet ready: wait for the TSDB to be open.
    for _ in 0..600 {
        if http_request("GET", &format!("{url}/-/ready"), b"")
            .unwrap()
            .status
            == 200
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Prom { _guard: guard, url }
}

/// Prometheus with the promtool blocks, and the reference over the same blocks.
fn setup(dir: &Path, ext: &Labels) -> (Prom, Reference) {
    let blocks = create_blocks_from_openmetrics(&openmetrics(), &dir.join("blocks")).unwrap();
    assert!(blocks.len() >= 2, "{blocks:?}");
    let mut reference = Reference::default();
    for b in &blocks {
        copy_dir(b, &dir.join("tsdb").join(b.file_name().unwrap()));
        reference.add_block(b, ext.clone()).unwrap();
    }
    let mut yaml = String::from("  external_labels:\n");
    for l in ext.iter() {
        writeln!(yaml, "    {}: {:?}", l.name, l.value).unwrap();
    }
    (start_prometheus(dir, &yaml), reference)
}

async fn sidecar(
    url: &str,
    types: Vec<ResponseType>,
) -> (StoreApiClient, CancellationToken, PrometheusStore) {
    let client = PrometheusClient::new(url, &HttpClientConfig::default())
        .unwrap()
        .with_response_types(types);
    let state = Arc::new(PromState::new(TimeOrDuration::min_time()));
    let hb = Heartbeat {
        client: client.clone(),
        state: state.clone(),
        metrics: HeartbeatMetrics::default(),
        prober: Prober::new(),
        timeout: Duration::from_secs(10),
    };
    hb.refresh().await.unwrap();
    let store = PrometheusStore::new(client, state, Limits::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    let s = store.clone();
    tokio::spawn(async move {
        strata_sidecar::grpc::serve(listener, s, None, async move { c.cancelled().await })
            .await
            .unwrap();
    });
    let client = StoreApiClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    (client, cancel, store)
}

/// With external labels that series also carry (`cluster`: streamed answers are sorted
/// whole) and with ones they do not (`region`: streamed answers pass through `Reorder`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_api_over_prometheus_passes_the_acceptance_suite_streamed_and_sampled() {
    for (ext, clash) in [
        (vec![("cluster", "eu1"), ("replica", "a")], true),
        (vec![("region", "eu1"), ("replica", "a")], false),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let ext = Labels::from_pairs(&ext);
        let (prom, reference) = setup(tmp.path(), &ext);
        for types in [
            vec![ResponseType::StreamedXorChunks, ResponseType::Samples],
            vec![ResponseType::Samples],
        ] {
            let (mut client, cancel, store) = sidecar(&prom.url, types.clone()).await;
            assert_eq!(store.state().external_names_may_clash(), clash, "{ext}");
            let report = run_acceptance(&mut client, &reference)
                .await
                .unwrap_or_else(|e| panic!("{ext} {types:?}: {e}"));
            assert!(report.cases > 30, "{report:?}");
            // Stripping a series' own label (`b`, not external): `{a="1",b="2"}` becomes
            // `{a="1"}` and joins it, chunks of both.
            let (min, max) = reference.time_range();
            let got = client
                .series(SeriesRequest {
                    min_time: min,
                    max_time: max,
                    matchers: vec![matcher_from_model(&Matcher::equal("__name__", "info"))],
                    without_replica_labels: vec!["b".into()],
                    ..Default::default()
                })
                .await
                .unwrap();
            let labels: Vec<String> = got.series.iter().map(|s| s.0.to_string()).collect();
            let tail = ext.iter().map(|l| format!(", {}=\"{}\"", l.name, l.value));
            let tail: String = tail.collect();
            assert_eq!(
                labels,
                [
                    format!("{{__name__=\"info\", a=\"1\"{tail}}}"),
                    format!("{{__name__=\"info\", a=\"2\"{tail}}}"),
                ],
                "{types:?}"
            );
            let chunks = |i: usize| got.series[i].1.len();
            assert_eq!(chunks(0), 2 * chunks(1), "{types:?}");
            cancel.cancel();
        }
    }
}

/// Prometheus' instant query at a sample's timestamp returns that sample: the sidecar's series
/// (minus external labels) and values must be the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_equal_prometheus_own_query_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let ext = Labels::from_pairs(&[("cluster", "eu1"), ("replica", "b")]);
    let (prom, _reference) = setup(tmp.path(), &ext);
    let (mut client, cancel, _) = sidecar(
        &prom.url,
        vec![ResponseType::StreamedXorChunks, ResponseType::Samples],
    )
    .await;
    for (query, k) in [
        ("jobs_total", 17),
        ("temperature", 480),
        ("{job=\"db\"}", 959),
    ] {
        let t = T0 + k * 15_000;
        let url = format!(
            "{}/api/v1/query?query={}&time={}.{:03}",
            prom.url,
            query
                .replace('{', "%7B")
                .replace('}', "%7D")
                .replace('"', "%22")
                .replace('=', "%3D"),
            t / 1000,
            t % 1000
        );
        let resp = http_request("GET", &url, b"").unwrap();
        assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
        let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
        let mut want: Vec<(Labels, f64)> = v["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let labels: Vec<(String, String)> = r["metric"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect();
                let value: f64 = r["value"][1].as_str().unwrap().parse().unwrap();
                (Labels::from_pairs(&labels), value)
            })
            .collect();
        want.sort_by(|a, b| a.0.cmp(&b.0));
        assert!(!want.is_empty(), "{query}");

        let matchers: Vec<Matcher> = if query.starts_with('{') {
            vec![Matcher::equal("job", "db")]
        } else {
            vec![Matcher::equal("__name__", query)]
        };
        let got = client
            .series(SeriesRequest {
                min_time: t,
                max_time: t,
                matchers: matchers.iter().map(matcher_from_model).collect(),
                ..Default::default()
            })
            .await
            .unwrap();
        let got: Vec<(Labels, f64)> = got
            .series
            .iter()
            .map(|(labels, chunks)| {
                assert_eq!(labels.get("cluster"), Some("eu1"));
                assert_eq!(labels.get("replica"), Some("b"));
                let stripped = Labels::new(
                    labels
                        .iter()
                        .filter(|l| l.name != "cluster" && l.name != "replica")
                        .cloned(),
                );
                let samples = decode_samples(chunks, t, t).unwrap();
                assert_eq!(samples.len(), 1, "{labels}");
                (stripped, samples[0].1)
            })
            .collect();
        let got_labels: Vec<&Labels> = got.iter().map(|g| &g.0).collect();
        let want_labels: Vec<&Labels> = want.iter().map(|w| &w.0).collect();
        assert_eq!(got_labels, want_labels, "{query}");
        for ((l, a), (_, b)) in got.iter().zip(&want) {
            // Prometheus prints shortest round-trip floats: parsing them back is exact.
            assert_eq!(a.to_bits(), b.to_bits(), "{query} {l}: {a} vs {b}");
        }
    }
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_and_bad_requests_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let ext = Labels::from_pairs(&[("cluster", "eu1")]);
    let (prom, reference) = setup(tmp.path(), &ext);
    let client = PrometheusClient::new(&prom.url, &HttpClientConfig::default()).unwrap();
    let state = Arc::new(PromState::new(TimeOrDuration::min_time()));

    // Before the external labels are known, nothing is served.
    let store = PrometheusStore::new(client.clone(), state.clone(), Limits::default());
    let (tx, _rx) = tokio::sync::mpsc::channel(4);
    let err = store
        .series(SeriesRequest::default(), &tx)
        .await
        .unwrap_err();
    assert_eq!(err.to_status().code(), tonic::Code::Unavailable, "{err}");

    state.set_external_labels(ext.clone());
    let (min, max) = reference.time_range();
    let all = vec![matcher_from_model(
        &Matcher::new(strata_model::MatchOp::RegexMatch, "__name__", ".+").unwrap(),
    )];
    for (limits, want) in [
        (
            Limits {
                series: 3,
                samples: 0,
            },
            "--store.limits.request-series",
        ),
        (
            Limits {
                series: 0,
                samples: 500,
            },
            "--store.limits.request-samples",
        ),
    ] {
        let store = PrometheusStore::new(client.clone(), state.clone(), limits);
        let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
        let err = store
            .series(
                SeriesRequest {
                    min_time: min,
                    max_time: max,
                    matchers: all.clone(),
                    ..Default::default()
                },
                &tx,
            )
            .await
            .unwrap_err();
        let status = err.to_status();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{err}");
        assert!(status.message().contains(want), "{status}");
        rx.close();
    }

    // Prometheus down: Unavailable, naming the URL.
    drop(prom);
    let store = PrometheusStore::new(client, state, Limits::default());
    let (tx, _rx) = tokio::sync::mpsc::channel(4);
    let err = store
        .series(
            SeriesRequest {
                min_time: min,
                max_time: max,
                matchers: all,
                ..Default::default()
            },
            &tx,
        )
        .await
        .unwrap_err();
    let status = err.to_status();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{err}");
    assert!(status.message().contains("/api/v1/read"), "{status}");
}
