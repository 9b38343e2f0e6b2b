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
