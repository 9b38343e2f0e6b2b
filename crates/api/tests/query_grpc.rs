//! The Query API over gRPC (`strata_api::grpc`), served on a local port and called with the
//! generated client, as Thanos' ruler and distributed engine call a querier: its answers are
//! the engine's (the same the HTTP API gives), and every request field the wire defines
//! reaches the storage options, the engine or an error.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use strata_api::{ApiConfig, MaxSourceResolution, RequestOptions, StorageProvider};
use strata_model::{Labels, Matcher};
use strata_promql::{
    Engine, EngineOptions, MemStorage, QueryContext, SelectHints, SelectResult, Storage,
    StorageError, Value,
};
use strata_storepb::convert::label_matcher;
use strata_storepb::thanos::label_matcher::Type;
use strata_storepb::thanos::query_client::QueryClient;
use strata_storepb::thanos::query_server::QueryServer;
use strata_storepb::thanos::{
    QueryRangeRequest, QueryRequest, ShardInfo, StoreMatchers, query_range_response, query_response,
};
use tonic::transport::Channel;

/// Series `up{job="a|b", instance="i<n>"}` every 15 s over [0, 1h], value = the minute.
fn data() -> MemStorage {
    let mut m = MemStorage::new();
    for job in ["a", "b"] {
        for i in 0..3 {
            let l = Labels::from_pairs(&[
                ("__name__", "up"),
                ("job", job),
                ("instance", &format!("i{i}")),
            ]);
            for t in (0..=3_600_000).step_by(15_000) {
                m.add(&l, t, (t / 60_000) as f64 + i as f64);
            }
        }
    }
    // One sample 6 minutes before 1h: seen with a 10m lookback, not with the default 5m.
    m.add(&Labels::from_pairs(&[("__name__", "old")]), 3_240_000, 7.0);
    m
}

/// A storage that fails every selection.
#[derive(Debug)]
struct Failing;

impl Storage for Failing {
    fn select(&self, _: &[Matcher], _: &SelectHints) -> Result<SelectResult, StorageError> {
        Err(down())
    }

    fn label_names(&self, _: &[Vec<Matcher>], _: i64, _: i64) -> Result<Vec<String>, StorageError> {
        Err(down())
    }

    fn label_values(
        &self,
        _: &str,
        _: &[Vec<Matcher>],
        _: i64,
        _: i64,
    ) -> Result<Vec<String>, StorageError> {
        Err(down())
    }

    fn series_labels(
        &self,
        _: &[Vec<Matcher>],
        _: i64,
        _: i64,
    ) -> Result<Vec<Labels>, StorageError> {
        Err(down())
    }
}

fn down() -> StorageError {
    StorageError::new("store 10.0.0.1:10901 is down")
}

/// Hands out the data (or a failing storage for the tenant "broken"), recording each
/// request's options.
#[derive(Debug)]
struct Recording {
    data: Arc<MemStorage>,
    seen: Mutex<Vec<RequestOptions>>,
}

impl StorageProvider for Recording {
    /// The tenant "downsampled" stands for a request reading downsampled data: a querier
    /// looks back 10 minutes for it.
    fn lookback_delta_ms(&self, opts: &RequestOptions, _: i64, lookback_ms: i64) -> i64 {
        if opts.tenant == "downsampled" {
            600_000
        } else {
            lookback_ms
        }
    }

    fn storage(&self, opts: &RequestOptions) -> Arc<dyn Storage> {
        self.seen.lock().unwrap().push(opts.clone());
        if opts.tenant == "broken" {
            Arc::new(Failing)
        } else {
            self.data.clone()
        }
    }
}

struct Server {
    client: QueryClient<Channel>,
    provider: Arc<Recording>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl Server {
    fn last_options(&self) -> RequestOptions {
        self.provider.seen.lock().unwrap().last().cloned().unwrap()
    }
}

async fn serve() -> Server {
    let provider = Arc::new(Recording {
        data: Arc::new(data()),
        seen: Mutex::new(Vec::new()),
    });
    let cfg = ApiConfig {
        engine: Engine::new(EngineOptions::default()),
        storage: provider.clone(),
        query_timeout: Duration::from_secs(30),
        max_concurrent: 4,
        flags: Default::default(),
        build: Default::default(),
        start_time_ms: 0,
        cors: false,
        tenancy: Default::default(),
        metadata_default_range: Duration::ZERO,
        active_queries: None,
    };
    let (_, grpc) = strata_api::router_and_grpc(cfg);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(QueryServer::new(grpc))
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                async move {
                    let _ = rx.await;
                },
            ),
    );
    let client = QueryClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    Server {
        client,
        provider,
        _shutdown: tx,
    }
}

fn instant(query: &str, time_seconds: i64) -> QueryRequest {
    QueryRequest {
        query: query.into(),
        time_seconds,
        enable_dedup: true,
        ..Default::default()
    }
}

/// An instant call's answer: warnings, then `(labels, t, v)` per series.
async fn call(
    s: &mut Server,
    r: QueryRequest,
) -> Result<(Vec<String>, Vec<(Labels, i64, f64)>), tonic::Status> {
    let mut stream = s.client.query(r).await?.into_inner();
    let (mut warnings, mut series) = (Vec::new(), Vec::new());
    while let Some(m) = stream.message().await? {
        match m.result {
            Some(query_response::Result::Warnings(w)) => warnings.push(w),
            Some(query_response::Result::Timeseries(ts)) => {
                assert_eq!(
                    ts.samples.len(),
                    1,
                    "an instant answer has one sample a series"
                );
                assert!(ts.histograms.is_empty());
                let labels = strata_storepb::convert::labels_to_model(ts.labels);
                series.push((labels, ts.samples[0].timestamp, ts.samples[0].value));
            }
            None => panic!("a message without a result"),
        }
    }
    Ok((warnings, series))
}

fn local_instant(query: &str, t: i64, lookback_ms: i64) -> Vec<(Labels, i64, f64)> {
    local_instant_annotated(query, t, lookback_ms).1
}

/// The local engine's answer: its warnings and infos, and its vector.
fn local_instant_annotated(
    query: &str,
    t: i64,
    lookback_ms: i64,
) -> (Vec<String>, Vec<(Labels, i64, f64)>) {
    let engine = Engine::new(EngineOptions {
        lookback_delta_ms: lookback_ms,
        ..EngineOptions::default()
    });
    let out = engine
        .instant(&data(), query, t, &QueryContext::new())
        .unwrap();
    let a = &out.annotations;
    let notes = a.warnings.iter().chain(&a.infos).cloned().collect();
    (
        notes,
        match out.value {
            Value::Vector(v) => v.into_iter().map(|s| (s.labels, s.t, s.v)).collect(),
            Value::Scalar { t, v } => vec![(Labels::empty(), t, v)],
            other => panic!("not a vector: {other:?}"),
        },
    )
}

#[tokio::test]
async fn instant_queries_answer_what_the_engine_gives() {
    let mut s = serve().await;
    for q in [
        "up",
        "sum by (job) (rate(up[5m]))",
        "topk(2, up)",
        "up{job=\"b\"} * 2",
        "scalar(sum(up))",
        "vector(1)",
        "absent(nope)",
    ] {
        let got = call(&mut s, instant(q, 1800)).await.unwrap();
        // Infos too (`rate` over a name without `_total`), as Thanos sends them.
        assert_eq!(got, local_instant_annotated(q, 1_800_000, 300_000), "{q}");
        assert!(!got.1.is_empty(), "{q}");
    }
    // A scalar is one series without labels, stamped with the evaluation time.
    let (_, got) = call(&mut s, instant("1 + 2", 600)).await.unwrap();
    assert_eq!(got, vec![(Labels::empty(), 600_000, 3.0)]);
}

#[tokio::test]
async fn time_zero_is_now_and_the_lookback_is_the_requests() {
    let mut s = serve().await;
    // The data ends at 1h in 1970: now, nothing is in the lookback window.
    let (_, got) = call(&mut s, instant("up", 0)).await.unwrap();
    assert!(got.is_empty(), "{got:?}");

    let (_, got) = call(&mut s, instant("old", 3600)).await.unwrap();
    assert!(
        got.is_empty(),
        "6 minutes old, outside the default 5m lookback: {got:?}"
    );
    let mut r = instant("old", 3600);
    r.lookback_delta_seconds = 600;
    let (_, got) = call(&mut s, r).await.unwrap();
    assert_eq!(got, local_instant("old", 3_600_000, 600_000));
    assert_eq!(got.len(), 1);
}

#[tokio::test]
async fn the_providers_lookback_applies_unless_the_request_gives_one() {
    let mut s = serve().await;
    let request = |lookback_s: i64| {
        let mut r = instant("old", 3600);
        r.lookback_delta_seconds = lookback_s;
        let mut req = tonic::Request::new(r);
        req.metadata_mut()
            .insert("thanos-tenant", "downsampled".parse().unwrap());
        req
    };
    let count = |resp: Vec<query_response::Result>| {
        resp.into_iter()
            .filter(|r| matches!(r, query_response::Result::Timeseries(_)))
            .count()
    };
    let mut got = Vec::new();
    let mut stream = s.client.query(request(0)).await.unwrap().into_inner();
    while let Some(m) = stream.message().await.unwrap() {
        got.extend(m.result);
    }
    assert_eq!(
        count(got),
        1,
        "the provider's 10m lookback sees the 6m old sample"
    );
    let mut got = Vec::new();
    let mut stream = s.client.query(request(60)).await.unwrap().into_inner();
    while let Some(m) = stream.message().await.unwrap() {
        got.extend(m.result);
    }
    assert_eq!(count(got), 0, "a 1m lookback asked for does not");
}

#[tokio::test]
async fn range_queries_answer_the_engines_matrix() {
    let mut s = serve().await;
    for q in ["up", "sum by (job) (rate(up[5m]))", "time()"] {
        let r = QueryRangeRequest {
            query: q.into(),
            start_time_seconds: 600,
            end_time_seconds: 1800,
            interval_seconds: 60,
            enable_dedup: true,
            ..Default::default()
        };
        let mut stream = s.client.query_range(r).await.unwrap().into_inner();
        let (mut notes, mut got) = (Vec::new(), Vec::new());
        while let Some(m) = stream.message().await.unwrap() {
            match m.result {
                Some(query_range_response::Result::Warnings(w)) => {
                    assert!(got.is_empty(), "{q}: warnings come first");
                    notes.push(w);
                }
                Some(query_range_response::Result::Timeseries(ts)) => got.push((
                    strata_storepb::convert::labels_to_model(ts.labels),
                    ts.samples
                        .iter()
                        .map(|p| (p.timestamp, p.value))
                        .collect::<Vec<_>>(),
                )),
                other => panic!("{q}: unexpected {other:?}"),
            }
        }
        let out = Engine::default()
            .range(&data(), q, 600_000, 1_800_000, 60_000, &QueryContext::new())
            .unwrap();
        let a = &out.annotations;
        let want_notes: Vec<String> = a.warnings.iter().chain(&a.infos).cloned().collect();
        assert_eq!(notes, want_notes, "{q}");
        let want = match out.value {
            Value::Matrix(m) => m
                .into_iter()
                .map(|s| (s.labels, s.points))
                .collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        assert!(!want.is_empty());
        assert_eq!(got, want, "{q}");
        assert_eq!(got[0].1.len(), 21, "{q}: every minute from 10 to 30");
    }
}

#[tokio::test]
async fn request_fields_reach_the_storage_options() {
    let mut s = serve().await;
    let mut r = instant("up", 1800);
    r.replica_labels = vec!["replica".into(), "rule_replica".into()];
    r.enable_partial_response = true;
    r.max_resolution_seconds = 300;
    r.store_matchers = vec![StoreMatchers {
        label_matchers: vec![label_matcher(Type::Re, "__address__", "store-.*")],
    }];
    let mut req = tonic::Request::new(r);
    req.metadata_mut()
        .insert("thanos-tenant", "team-a".parse().unwrap());
    s.client.query(req).await.unwrap();
    let o = s.last_options();
    assert!(o.dedup);
    assert_eq!(
        o.replica_labels,
        Some(vec!["replica".to_string(), "rule_replica".to_string()])
    );
    assert_eq!(o.partial_response, Some(true));
    assert_eq!(
        o.max_source_resolution,
        Some(MaxSourceResolution::Millis(300_000))
    );
    assert_eq!(o.store_matchers.len(), 1);
    assert_eq!(o.store_matchers[0][0].name(), "__address__");
    assert_eq!(o.tenant, "team-a");

    // The defaults: the querier's replica labels and resolution, partial response off.
    let mut r = instant("up", 1800);
    r.enable_dedup = false;
    s.client.query(r).await.unwrap();
    let o = s.last_options();
    assert!(!o.dedup);
    assert_eq!(o.replica_labels, None);
    assert_eq!(o.partial_response, Some(false));
    assert_eq!(o.max_source_resolution, None);
    assert_eq!(o.tenant, strata_api::DEFAULT_TENANT);
}

#[tokio::test]
async fn failures_are_errors_or_with_partial_response_warnings() {
    let mut s = serve().await;
    let broken = |partial: bool| {
        let mut r = instant("up", 1800);
        r.enable_partial_response = partial;
        let mut req = tonic::Request::new(r);
        req.metadata_mut()
            .insert("thanos-tenant", "broken".parse().unwrap());
        req
    };
    let e = s.client.query(broken(false)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Aborted, "{e:?}");
    assert!(e.message().contains("10.0.0.1:10901"), "{e:?}");

    let mut stream = s.client.query(broken(true)).await.unwrap().into_inner();
    let m = stream.message().await.unwrap().unwrap();
    match m.result {
        Some(query_response::Result::Warnings(w)) => assert!(w.contains("10.0.0.1:10901"), "{w}"),
        other => panic!("{other:?}"),
    }
    assert!(stream.message().await.unwrap().is_none());

    // The engine's own warnings come first.
    let (warnings, got) = call(&mut s, instant("quantile(2, up)", 1800))
        .await
        .unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("quantile"), "{warnings:?}");
    assert_eq!(got.len(), 1);
}

#[tokio::test]
async fn bad_requests_are_invalid_arguments() {
    let mut s = serve().await;
    let code = |r: Result<_, tonic::Status>| r.map(|_| ()).unwrap_err().code();
    assert_eq!(
        code(call(&mut s, instant("sum(", 1800)).await),
        tonic::Code::InvalidArgument
    );
    // A range vector is no instant answer.
    assert_eq!(
        code(call(&mut s, instant("up[5m]", 1800)).await),
        tonic::Code::InvalidArgument
    );
    let mut r = instant("up", 1800);
    r.engine = 7;
    assert_eq!(code(call(&mut s, r).await), tonic::Code::InvalidArgument);
    let mut r = instant("up", 1800);
    r.shard_info = Some(ShardInfo {
        shard_index: 0,
        total_shards: 2,
        by: true,
        labels: vec!["job".into()],
    });
    assert_eq!(code(call(&mut s, r).await), tonic::Code::Unimplemented);
    for (start, end, step) in [(1800, 600, 60), (600, 1800, 0), (0, 86_400 * 30, 60)] {
        let r = QueryRangeRequest {
            query: "up".into(),
            start_time_seconds: start,
            end_time_seconds: end,
            interval_seconds: step,
            ..Default::default()
        };
        let e = s.client.query_range(r).await.unwrap_err();
        assert_eq!(
            e.code(),
            tonic::Code::InvalidArgument,
            "{start} {end} {step}: {e:?}"
        );
    }
}
