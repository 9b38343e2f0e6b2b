//! Shared set-up for the querier tests: blocks made by real Prometheus (promtool 2.42) in a
//! FILESYSTEM bucket, store gateways served in-process on free ports, and queriers over them.
#![allow(dead_code, unreachable_pub)]

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use strata_api::RequestOptions;
use strata_block::transfer::{UploadOptions, upload_block};
use strata_objstore::{Bucket, BucketMetrics};
use strata_promql::{Engine, EngineOptions, QueryContext, QueryOutput};
use strata_query::{EndpointSet, EndpointSetConfig, Fanout, Querier, QuerierConfig};
use strata_store::{BucketStore, StoreConfig};
use strata_testutil::prometheus::create_blocks_from_openmetrics;

/// Start of the test data (aligned to 5 minutes so downsampled windows are easy to check).
pub const T0: i64 = 1_700_000_100_000;
pub const STEP: i64 = 15_000;

/// A counter per job/instance and a gauge per room, every 15 s for `hours`, offset by
/// `shift` ms (HA replicas scrape at slightly different times). `skip` drops the samples in
/// `[skip.0, skip.1)` (a replica that was down).
pub fn openmetrics(hours: i64, shift: i64, skip: Option<(i64, i64)>) -> String {
    let mut om = String::new();
    let n = hours * 3600 * 1000 / STEP;
    let keep = |t: i64| skip.is_none_or(|(a, b)| t < a || t >= b);
    om.push_str("# TYPE http_requests counter\n");
    for job in ["api", "web"] {
        for i in 0..4 {
            for k in 0..n {
                let t = T0 + k * STEP + shift;
                if keep(t) {
                    writeln!(
                        om,
                        "http_requests_total{{job=\"{job}\",instance=\"i{i}\"}} {} {}.{:03}",
                        k * (i + 1),
                        t / 1000,
                        t % 1000
                    )
                    .unwrap();
                }
            }
        }
    }
    om.push_str("# TYPE temperature gauge\n");
    for room in ["kitchen", "hall"] {
        for k in 0..n {
            let t = T0 + k * STEP + shift;
            if keep(t) {
                let v = (k as f64 * 0.37).sin() * 10.0 + 20.0;
                writeln!(
                    om,
                    "temperature{{room=\"{room}\"}} {v} {}.{:03}",
                    t / 1000,
                    t % 1000
                )
                .unwrap();
            }
        }
    }
    om.push_str("# EOF\n");
    om
}

pub fn promtool_blocks(dir: &Path, om: &str) -> Vec<PathBuf> {
    let blocks = create_blocks_from_openmetrics(om, dir).unwrap();
    assert!(!blocks.is_empty());
    blocks
}

pub fn fs_bucket(dir: &Path) -> Bucket {
    std::fs::create_dir_all(dir).unwrap();
    let yaml = format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        dir.display()
    );
    Bucket::from_yaml(&yaml, &BucketMetrics::unregistered()).unwrap()
}

pub async fn upload(bucket: &Bucket, blocks: &[PathBuf], ext: &[(&str, &str)]) {
    let opts = UploadOptions {
        labels: ext
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        source: "sidecar".into(),
        require_labels: false,
        hash_func: Default::default(),
        file_concurrency: 0,
    };
    for b in blocks {
        upload_block(bucket, b, &opts).await.unwrap();
    }
}

/// A store gateway over `bucket`, synced, serving gRPC on a free port until dropped.
pub struct Served {
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Served {
    pub async fn start(bucket: Bucket, data: &Path) -> Served {
        let store = Arc::new(BucketStore::new(bucket, StoreConfig::new(data), None).unwrap());
        store.sync_blocks().await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            strata_store::grpc::serve(listener, store, None, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Served {
            addr,
            shutdown: Some(tx),
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// An endpoint set over `addrs`, probed once.
pub async fn fanout(addrs: &[String], response_timeout: Option<Duration>) -> Fanout {
    let set = EndpointSet::new(EndpointSetConfig {
        endpoints: addrs.to_vec(),
        ..Default::default()
    })
    .unwrap();
    set.update().await;
    Fanout {
        endpoints: set,
        response_timeout,
        max_wait: Duration::from_secs(60),
        limits: Default::default(),
        selector: Default::default(),
    }
}

pub fn querier(fanout: Fanout, replica_labels: &[&str]) -> Querier {
    Querier::new(
        fanout,
        QuerierConfig {
            replica_labels: replica_labels.iter().map(|s| s.to_string()).collect(),
            partial_response: true,
            ..Default::default()
        },
        tokio::runtime::Handle::current(),
    )
}

/// Runs an instant query on a blocking thread, as the HTTP API does.
pub async fn instant(
    q: &Querier,
    opts: RequestOptions,
    query: &str,
    t: i64,
) -> Result<QueryOutput, strata_promql::Error> {
    let storage = q.storage_for(&opts);
    let query = query.to_string();
    tokio::task::spawn_blocking(move || {
        Engine::new(EngineOptions::default()).instant(&storage, &query, t, &QueryContext::new())
    })
    .await
    .unwrap()
}

/// Runs a range query on a blocking thread.
pub async fn range(
    q: &Querier,
    opts: RequestOptions,
    query: &str,
    start: i64,
    end: i64,
    step: i64,
) -> Result<QueryOutput, strata_promql::Error> {
    let storage = q.storage_for(&opts);
    let query = query.to_string();
    tokio::task::spawn_blocking(move || {
        Engine::new(EngineOptions::default()).range(
            &storage,
            &query,
            start,
            end,
            step,
            &QueryContext::new(),
        )
    })
    .await
    .unwrap()
}

/// A store gateway like [`Served`], but speaking TLS with `cert`/`key` (PEM files).
pub async fn served_tls(bucket: Bucket, data: &Path, cert: &Path, key: &Path) -> Served {
    let store = Arc::new(BucketStore::new(bucket, StoreConfig::new(data), None).unwrap());
    store.sync_blocks().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tls = strata_storepb::server::TlsFiles {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        client_ca: None,
        min_version: Default::default(),
    };
    tokio::spawn(async move {
        strata_store::grpc::serve(listener, store, Some(tls), async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    Served {
        addr,
        shutdown: Some(tx),
    }
}

/// A Store API double that answers Info (type `store`, all time, no labels) and answers every
/// Series call with `frames` (none unless set) after `delay`, then ends the call (or, with
/// `hang`, keeps it open without sending more), counting how many Series calls are in flight
/// at once: for `--query.max-concurrent-select`, for stores that break the protocol's rules,
/// and for stores that stall halfway.
#[derive(Debug, Clone)]
pub struct CountingStore {
    pub delay: Duration,
    pub frames: Vec<strata_storepb::thanos::SeriesResponse>,
    pub hang: bool,
    /// What its Info says of `without_replica_labels` (it never strips anything).
    pub claims_to_strip: bool,
    in_flight: Arc<std::sync::atomic::AtomicUsize>,
    max_in_flight: Arc<std::sync::atomic::AtomicUsize>,
    calls: Arc<std::sync::atomic::AtomicUsize>,
}

impl CountingStore {
    pub fn new(delay: Duration) -> Self {
        CountingStore {
            delay,
            frames: Vec::new(),
            hang: false,
            claims_to_strip: false,
            in_flight: Arc::default(),
            max_in_flight: Arc::default(),
            calls: Arc::default(),
        }
    }

    /// The most Series calls seen in flight at once since the last reset.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Series calls received since the last reset.
    pub fn calls(&self) -> usize {
        self.calls.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn reset(&self) {
        self.max_in_flight
            .store(0, std::sync::atomic::Ordering::SeqCst);
        self.calls.store(0, std::sync::atomic::Ordering::SeqCst);
    }

    /// Serves it on a free 127.0.0.1 port until the returned sender is dropped or fired.
    pub async fn start(&self) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let svc = self.clone();
        tokio::spawn(async move {
            let _ = strata_storepb::server::serve(listener, svc, None, async {
                let _ = rx.await;
            })
            .await;
        });
        (addr, tx)
    }
}

/// Decrements the in-flight count when a Series call ends, however it ends.
struct InFlight(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tonic::async_trait]
impl strata_storepb::thanos::store_server::Store for CountingStore {
    type SeriesStream = futures::stream::BoxStream<
        'static,
        Result<strata_storepb::thanos::SeriesResponse, tonic::Status>,
    >;

    async fn series(
        &self,
        _: tonic::Request<strata_storepb::thanos::SeriesRequest>,
    ) -> Result<tonic::Response<Self::SeriesStream>, tonic::Status> {
        use std::sync::atomic::Ordering::SeqCst;
        self.calls.fetch_add(1, SeqCst);
        let now = self.in_flight.fetch_add(1, SeqCst) + 1;
        let _guard = InFlight(self.in_flight.clone());
        self.max_in_flight.fetch_max(now, SeqCst);
        tokio::time::sleep(self.delay).await;
        use futures::StreamExt;
        let frames: Vec<_> = self.frames.iter().cloned().map(Ok).collect();
        let frames = futures::stream::iter(frames);
        Ok(tonic::Response::new(if self.hang {
            frames.chain(futures::stream::pending()).boxed()
        } else {
            frames.boxed()
        }))
    }

    async fn label_names(
        &self,
        _: tonic::Request<strata_storepb::thanos::LabelNamesRequest>,
    ) -> Result<tonic::Response<strata_storepb::thanos::LabelNamesResponse>, tonic::Status> {
        Ok(tonic::Response::new(Default::default()))
    }

    async fn label_values(
        &self,
        _: tonic::Request<strata_storepb::thanos::LabelValuesRequest>,
    ) -> Result<tonic::Response<strata_storepb::thanos::LabelValuesResponse>, tonic::Status> {
        Ok(tonic::Response::new(Default::default()))
    }
}

#[tonic::async_trait]
impl strata_storepb::thanos::info::info_server::Info for CountingStore {
    async fn info(
        &self,
        _: tonic::Request<strata_storepb::thanos::info::InfoRequest>,
    ) -> Result<tonic::Response<strata_storepb::thanos::info::InfoResponse>, tonic::Status> {
        use strata_storepb::thanos::info::{InfoResponse, StoreInfo};
        Ok(tonic::Response::new(InfoResponse {
            component_type: "store".into(),
            store: Some(StoreInfo {
                min_time: i64::MIN,
                max_time: i64::MAX,
                supports_without_replica_labels: self.claims_to_strip,
                ..Default::default()
            }),
            ..Default::default()
        }))
    }
}

/// Two store gateways over promtool blocks of different clusters and replicas (5 h and 3 h),
/// and the reference answers for both: the fixture of the acceptance runs through queriers.
pub async fn two_gateways(dir: &Path) -> (strata_store::testing::Reference, Vec<Served>) {
    let mut reference = strata_store::testing::Reference::default();
    let mut served = Vec::new();
    for (name, hours, ext) in [
        ("a", 5, [("cluster", "eu1"), ("replica", "0")]),
        ("b", 3, [("cluster", "us1"), ("replica", "1")]),
    ] {
        let blocks = promtool_blocks(&dir.join(name), &openmetrics(hours, 0, None));
        let bucket = fs_bucket(&dir.join(format!("bucket-{name}")));
        upload(&bucket, &blocks, &ext).await;
        for b in &blocks {
            reference
                .add_block(b, strata_model::Labels::from_pairs(&ext))
                .unwrap();
        }
        served.push(Served::start(bucket, &dir.join(format!("data-{name}"))).await);
    }
    (reference, served)
}

/// The series of a query answer with their points, for comparing answers.
pub fn series_of(out: &strata_promql::Value) -> Vec<(strata_model::Labels, Vec<(i64, f64)>)> {
    use strata_promql::Value;
    match out {
        Value::Matrix(m) => m
            .iter()
            .map(|s| (s.labels.clone(), s.points.clone()))
            .collect(),
        Value::Vector(v) => v
            .iter()
            .map(|s| (s.labels.clone(), vec![(s.t, s.v)]))
            .collect(),
        other => panic!("unexpected {other:?}"),
    }
}

/// Asserts that `a` and `b` answer each range query over the fixture's first three hours
/// with the same, non-empty series and that `a` adds no warning.
pub async fn assert_same_range_answers(a: &Querier, b: &Querier, queries: &[&str]) {
    let (start, end, step) = (T0 + 600_000, T0 + 3 * 3_600_000 - 600_000, 60_000);
    for q in queries {
        let x = range(a, RequestOptions::default(), q, start, end, step)
            .await
            .unwrap();
        let y = range(b, RequestOptions::default(), q, start, end, step)
            .await
            .unwrap();
        assert!(!series_of(&y.value).is_empty(), "{q}");
        assert_eq!(series_of(&x.value), series_of(&y.value), "{q}");
        assert!(
            x.annotations.warnings.is_empty(),
            "{q}: {:?}",
            x.annotations
        );
    }
}

/// Serves the querier's Store API on a free port.
pub async fn serve_querier(
    f: strata_query::Fanout,
) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        strata_storepb::server::serve(
            listener,
            strata_query::QueryStoreService::new(f),
            None,
            async {
                let _ = rx.await;
            },
        )
        .await
        .unwrap();
    });
    (addr, tx)
}

/// A DNS server on a free local UDP port answering every SRV question with one record per
/// port, each with the host name `target`, and every other question with no answer: enough
/// for the resolver's SRV lookups (`dnssrv+`, `dnssrvnoa+`).
pub async fn srv_server(ports: Vec<u16>, target: &str) -> SocketAddr {
    // The target as DNS labels: each dot-separated part prefixed by its length.
    let mut name = Vec::new();
    for part in target.split('.') {
        name.push(part.len() as u8);
        name.extend_from_slice(part.as_bytes());
    }
    name.push(0);
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        loop {
            let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
                return;
            };
            let q = &buf[..n];
            if n < 12 {
                continue;
            }
            // Question: labels up to the zero byte, then type and class.
            let mut i = 12;
            while i < n && q[i] != 0 {
                i += 1 + q[i] as usize;
            }
            if i + 5 > n {
                continue;
            }
            let qtype = u16::from_be_bytes([q[i + 1], q[i + 2]]);
            let question = &q[12..i + 5];
            let answers: &[u16] = if qtype == 33 { &ports } else { &[] };
            let mut r = Vec::new();
            r.extend_from_slice(&q[..2]); // id
            r.extend_from_slice(&[0x85, 0x80]); // response, authoritative, RD, RA
            r.extend_from_slice(&1u16.to_be_bytes());
            r.extend_from_slice(&(answers.len() as u16).to_be_bytes());
            r.extend_from_slice(&[0, 0, 0, 0]);
            r.extend_from_slice(question);
            for port in answers {
                r.extend_from_slice(&[0xC0, 0x0C]); // the question's name
                r.extend_from_slice(&33u16.to_be_bytes());
                r.extend_from_slice(&1u16.to_be_bytes());
                r.extend_from_slice(&1u32.to_be_bytes());
                r.extend_from_slice(&((6 + name.len()) as u16).to_be_bytes());
                r.extend_from_slice(&[0, 1, 0, 1]); // priority, weight
                r.extend_from_slice(&port.to_be_bytes());
                r.extend_from_slice(&name);
            }
            let _ = sock.send_to(&r, peer).await;
        }
    });
    addr
}
